package registry

import "net/http"

// Confluent Schema Registry error codes. The HTTP status is the code's
// first three digits (409 is its own status).
const (
	ErrSubjectNotFound                        = 40401
	ErrVersionNotFound                        = 40402
	ErrSchemaNotFound                         = 40403
	ErrSubjectSoftDeleted                     = 40404
	ErrSubjectNotSoftDeleted                  = 40405
	ErrVersionSoftDeleted                     = 40406
	ErrVersionNotSoftDeleted                  = 40407
	ErrSubjectLevelCompatibilityNotConfigured = 40408
	ErrSubjectLevelModeNotConfigured          = 40409
	ErrContextNotFound                        = 40410
	ErrNotFound                               = 404 // an unknown path
	ErrIncompatible                           = 409
	ErrInvalidSchema                          = 42201
	ErrInvalidVersion                         = 42202
	ErrInvalidCompatibilityLevel              = 42203
	ErrInvalidMode                            = 42204
	ErrOperationNotPermitted                  = 42205
	ErrReferenceExists                        = 42206
	ErrIDDoesNotMatch                         = 42207
	ErrInvalidSubject                         = 42208
	ErrSchemaTooLarge                         = 42209
	ErrContextNotEmpty                        = 42211
	ErrUnprocessable                          = 422 // a body that is not the JSON expected
	ErrStore                                  = 50001
)

// Error is an error the API answers with, as {"error_code","message"}.
type Error struct {
	Code    int
	Message string
	// Messages are the compatibility check's reasons (409 only).
	Messages []string
}

func (e *Error) Error() string { return e.Message }

// Status is the HTTP status of the error.
func (e *Error) Status() int {
	switch {
	case e.Code >= 10000:
		return e.Code / 100
	case e.Code >= 100 && e.Code < 600:
		return e.Code
	}
	return http.StatusInternalServerError
}
