// Package httpjson holds the JSON conventions every Herald HTTP API shares:
// one error shape, {"error":{"code","message","field"}}, with the status
// that fits it, and request decoding that names what was wrong and the
// limit it broke.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Error codes, in the style of Google APIs' canonical codes, each with the
// HTTP status it is sent with (see Status).
const (
	CodeInvalidArgument    = "INVALID_ARGUMENT"
	CodeNotFound           = "NOT_FOUND"
	CodeAlreadyExists      = "ALREADY_EXISTS"
	CodeFailedPrecondition = "FAILED_PRECONDITION"
	CodeAborted            = "ABORTED"
	CodeResourceExhausted  = "RESOURCE_EXHAUSTED"
	CodePayloadTooLarge    = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMedia   = "UNSUPPORTED_MEDIA_TYPE"
	CodeUnprocessable      = "UNPROCESSABLE_ENTITY"
	CodeUnavailable        = "UNAVAILABLE"
	CodeDeadlineExceeded   = "DEADLINE_EXCEEDED"
	CodeInternal           = "INTERNAL"
	CodeMethodNotAllowed   = "METHOD_NOT_ALLOWED"
	CodeUnauthenticated    = "UNAUTHENTICATED"
)

// Status is the HTTP status a code is sent with.
func Status(code string) int {
	switch code {
	case CodeInvalidArgument:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeAlreadyExists, CodeAborted:
		return http.StatusConflict
	case CodeFailedPrecondition:
		return http.StatusPreconditionFailed
	case CodeResourceExhausted:
		return http.StatusTooManyRequests
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case CodeUnprocessable:
		return http.StatusUnprocessableEntity
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// Error is an API error: a code, a message for people, and the request
// field it concerns ("" when none). It is an error, so handlers can return
// it through layers and Write sends it with its status.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Errorf makes an *Error of code about field.
func Errorf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Invalid is Errorf(CodeInvalidArgument, ...), the most common error.
func Invalid(field, format string, args ...any) *Error {
	return Errorf(CodeInvalidArgument, field, format, args...)
}

// WriteJSON sends v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client may be gone; nothing to do about it
}

// WriteError sends err in the error shape. An *Error (anywhere in err's
// chain) keeps its code and field; anything else is INTERNAL with err's
// text, since handlers turn expected failures into *Error themselves.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInternal, Message: err.Error()}
	}
	WriteJSON(w, Status(e.Code), struct {
		Error *Error `json:"error"`
	}{e})
}

// Decode reads a JSON request body of at most limit bytes into v. Unknown
// fields, trailing data, an empty body, a body over the limit and a value
// of the wrong type are refused with an *Error naming the field and the
// limit.
func Decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err, limit)
		}
		return Invalid("", "request body has data after the JSON value")
	}
	return nil
}

func decodeError(err error, limit int64) error {
	var (
		tooBig *http.MaxBytesError
		syn    *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return Errorf(CodePayloadTooLarge, "", "request body is larger than the limit of %d bytes", limit)
	case errors.Is(err, io.EOF):
		return Invalid("", "request body is empty; want a JSON value")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Invalid("", "request body is truncated JSON")
	case errors.As(err, &syn):
		return Invalid("", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return Invalid(typ.Field, "want a JSON %s, got %s", typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return Invalid(f, "unknown field")
	}
	return Invalid("", "bad JSON: %v", err)
}
