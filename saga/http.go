package saga

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/httpjson"
)

// Request body limits of the HTTP API.
const (
	maxBodyBytes       = 1 << 20
	maxDefinitionBytes = 1 << 20
)

// Routes mounts the saga API under /v1/sagas on h (an *http.ServeMux):
//
//	GET  /v1/sagas?status=&definition=&limit=  list instances, latest first
//	POST /v1/sagas                              start {"definition","id","input"}
//	GET  /v1/sagas/{id}                         one instance: state, current step, history
//	POST /v1/sagas/{id}/retry                   {"step"}: retry a parked compensation
//	POST /v1/sagas/{id}/abort                   {"reason"}: compensate a running saga
//	GET  /v1/sagas/definitions                  the latest version of each definition
//	POST /v1/sagas/definitions                  register a definition (JSON, or YAML with a yaml Content-Type)
//
// Errors use the shape of internal/httpjson.
func (e *Engine) Routes(h interface{ Handle(string, http.Handler) }) {
	h.Handle("GET /v1/sagas", http.HandlerFunc(e.httpList))
	h.Handle("POST /v1/sagas", http.HandlerFunc(e.httpStart))
	h.Handle("GET /v1/sagas/definitions", http.HandlerFunc(e.httpDefinitions))
	h.Handle("POST /v1/sagas/definitions", http.HandlerFunc(e.httpRegister))
	h.Handle("GET /v1/sagas/{id}", http.HandlerFunc(e.httpGet))
	h.Handle("POST /v1/sagas/{id}/retry", http.HandlerFunc(e.httpRetry))
	h.Handle("POST /v1/sagas/{id}/abort", http.HandlerFunc(e.httpAbort))
}

// InstanceView is an instance as the API shows it: the state plus the
// step it waits on.
type InstanceView struct {
	*Instance
	CurrentStep string `json:"currentStep,omitempty"`
}

// Summary is an instance in a list.
type Summary struct {
	ID          string    `json:"id"`
	Definition  string    `json:"definition"`
	Version     int       `json:"version"`
	Status      Status    `json:"status"`
	CurrentStep string    `json:"currentStep,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

func apiError(err error) error {
	var de *DefinitionError
	switch {
	case errors.As(err, &de):
		return httpjson.Invalid(de.Field, "%v", err)
	case errors.Is(err, ErrNotFound):
		return httpjson.Errorf(httpjson.CodeNotFound, "", "%v", err)
	case errors.Is(err, ErrConflict):
		return httpjson.Errorf(httpjson.CodeFailedPrecondition, "", "%v", err)
	case errors.Is(err, ErrInvalid):
		return httpjson.Invalid("", "%v", err)
	case errors.Is(err, ErrClosed):
		return httpjson.Errorf(httpjson.CodeUnavailable, "", "%v", err)
	}
	return err
}

func (e *Engine) httpList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := Filter{Status: Status(q.Get("status")), Definition: q.Get("definition")}
	switch f.Status {
	case "", StatusRunning, StatusCompensating, StatusCompleted, StatusCompensated, StatusParked:
	default:
		httpjson.WriteError(w, httpjson.Invalid("status", "%q: want running, compensating, completed, compensated or parked", f.Status))
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			httpjson.WriteError(w, httpjson.Invalid("limit", "%q: want an integer from 1 to 10000", s))
			return
		}
		f.Limit = n
	}
	list := e.List(f)
	out := make([]Summary, 0, len(list))
	for _, in := range list {
		out = append(out, Summary{ID: in.ID, Definition: in.Definition, Version: in.Version, Status: in.Status,
			CurrentStep: in.CurrentStep(), Reason: in.Reason, Created: in.Created, Updated: in.Updated})
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"sagas": out})
}

func (e *Engine) httpGet(w http.ResponseWriter, r *http.Request) {
	in, err := e.Get(r.PathValue("id"))
	if err != nil {
		httpjson.WriteError(w, apiError(err))
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, InstanceView{Instance: in, CurrentStep: in.CurrentStep()})
}

func (e *Engine) httpStart(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Definition string          `json:"definition"`
		ID         string          `json:"id"`
		Input      json.RawMessage `json:"input"`
	}
	if err := httpjson.Decode(w, r, maxBodyBytes, &req); err != nil {
		httpjson.WriteError(w, err)
		return
	}
	if req.Definition == "" {
		httpjson.WriteError(w, httpjson.Invalid("definition", "required"))
		return
	}
	if err := checkID(req.ID); err != nil {
		httpjson.WriteError(w, httpjson.Invalid("id", "%v", err))
		return
	}
	if err := e.StartSaga(requestTrace(r), req.Definition, req.ID, req.Input); err != nil {
		httpjson.WriteError(w, apiError(err))
		return
	}
	httpjson.WriteJSON(w, http.StatusAccepted, map[string]string{"id": req.ID})
}

func (e *Engine) httpRetry(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Step string `json:"step"`
	}
	if err := httpjson.Decode(w, r, maxBodyBytes, &req); err != nil {
		httpjson.WriteError(w, err)
		return
	}
	if req.Step == "" {
		httpjson.WriteError(w, httpjson.Invalid("step", "required"))
		return
	}
	if err := e.Retry(r.Context(), r.PathValue("id"), req.Step); err != nil {
		httpjson.WriteError(w, apiError(err))
		return
	}
	httpjson.WriteJSON(w, http.StatusAccepted, map[string]string{"id": r.PathValue("id"), "step": req.Step})
}

func (e *Engine) httpAbort(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	// An empty body is an abort without a reason.
	if r.ContentLength != 0 {
		if err := httpjson.Decode(w, r, maxBodyBytes, &req); err != nil && !isEmptyBody(err) {
			httpjson.WriteError(w, err)
			return
		}
	}
	if err := e.Abort(r.Context(), r.PathValue("id"), req.Reason); err != nil {
		httpjson.WriteError(w, apiError(err))
		return
	}
	httpjson.WriteJSON(w, http.StatusAccepted, map[string]string{"id": r.PathValue("id")})
}

func isEmptyBody(err error) bool {
	var e *httpjson.Error
	return errors.As(err, &e) && strings.Contains(e.Message, "empty")
}

func (e *Engine) httpDefinitions(w http.ResponseWriter, _ *http.Request) {
	defs := e.Definitions()
	slices.SortFunc(defs, func(a, b *Definition) int { return strings.Compare(a.Name, b.Name) })
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"definitions": defs})
}

func (e *Engine) httpRegister(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDefinitionBytes))
	if err != nil {
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodePayloadTooLarge, "", "definition is larger than the limit of %d bytes", maxDefinitionBytes))
		return
	}
	var d *Definition
	switch ct := r.Header.Get("Content-Type"); {
	case strings.Contains(ct, "yaml"):
		d, err = ParseDefinitionYAML(b, nil)
	default:
		d, err = ParseDefinition(b, nil)
	}
	if err != nil {
		httpjson.WriteError(w, apiError(err))
		return
	}
	reg, err := e.Register(r.Context(), d)
	if err != nil {
		httpjson.WriteError(w, apiError(err))
		return
	}
	httpjson.WriteJSON(w, http.StatusCreated, reg)
}
