package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/schema"
)

// ContentType is the registry API's media type.
const ContentType = "application/vnd.schemaregistry.v1+json"

// maxBody bounds a request body.
const maxBody = 8 << 20

// generalHandler is the API with every request routed by a ServeMux: the
// reference the fast path must agree with.
func (r *Registry) generalHandler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(w http.ResponseWriter, q *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, q *http.Request) {
			if err := f(w, q); err != nil {
				r.writeError(w, err)
			}
		})
	}
	h("GET /{$}", func(w http.ResponseWriter, q *http.Request) error { return reply(w, 200, struct{}{}) })
	h("GET /schemas/types", func(w http.ResponseWriter, q *http.Request) error { return reply(w, 200, schema.Types) })
	h("GET /schemas", r.getSchemas)
	h("GET /schemas/ids/{id}", r.getSchemaByID)
	h("GET /schemas/ids/{id}/schema", r.getSchemaTextByID)
	h("GET /schemas/ids/{id}/subjects", r.getSubjectsByID)
	h("GET /schemas/ids/{id}/versions", r.getVersionsByID)
	h("GET /schemas/guids/{guid}", r.getSchemaByGUID)
	h("GET /schemas/guids/{guid}/ids", r.getIDsByGUID)
	h("GET /subjects", r.getSubjects)
	h("POST /subjects/{subject}", r.lookup)
	h("DELETE /subjects/{subject}", r.deleteSubject)
	h("GET /subjects/{subject}/versions", r.getVersions)
	h("POST /subjects/{subject}/versions", r.register)
	h("GET /subjects/{subject}/versions/{version}", r.getVersion)
	h("GET /subjects/{subject}/versions/{version}/schema", r.getVersionText)
	h("GET /subjects/{subject}/versions/{version}/referencedby", r.getReferencedBy)
	h("DELETE /subjects/{subject}/versions/{version}", r.deleteVersion)
	h("POST /compatibility/subjects/{subject}/versions/{version}", r.compat)
	h("POST /compatibility/subjects/{subject}/versions", r.compat)
	h("GET /config", r.getConfig)
	h("PUT /config", r.putConfig)
	h("DELETE /config", r.deleteConfig)
	h("GET /config/{subject}", r.getConfig)
	h("PUT /config/{subject}", r.putConfig)
	h("DELETE /config/{subject}", r.deleteConfig)
	h("GET /mode", r.getMode)
	h("PUT /mode", r.putMode)
	h("DELETE /mode", r.deleteMode)
	h("GET /mode/{subject}", r.getMode)
	h("PUT /mode/{subject}", r.putMode)
	h("DELETE /mode/{subject}", r.deleteMode)
	h("GET /contexts", func(w http.ResponseWriter, q *http.Request) error { return reply(w, 200, []string{"."}) })
	h("DELETE /contexts/{context}", r.deleteContext)
	h("DELETE /contexts", r.deleteContext) // "/contexts/." after path cleaning
	h("/", func(w http.ResponseWriter, q *http.Request) error {
		return &Error{Code: ErrNotFound, Message: fmt.Sprintf("HTTP %d Not Found: %s %s", 404, q.Method, q.URL.Path)}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: 200}
		mux.ServeHTTP(sw, q)
		r.m.status(sw.code)
	})
}

// Handler returns the Confluent Schema Registry REST API over r. Mount it
// at the root of its own listener, or under a prefix with
// http.StripPrefix. The lookups clients make most (fastpath.go) are
// answered from pre-rendered responses before any routing; for a
// listener of its own, NewServer is cheaper still.
func (r *Registry) Handler() http.Handler {
	general := r.generalHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		if !r.serveFast(w, q) {
			general.ServeHTTP(w, q)
		}
	})
}

// contentTypeHeader is shared by every response (net/http only reads it).
var contentTypeHeader = []string{ContentType}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func reply(w http.ResponseWriter, code int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return replyRaw(w, code, b)
}

func replyRaw(w http.ResponseWriter, code int, b []byte) error {
	h := w.Header()
	h["Content-Type"] = contentTypeHeader
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(code)
	w.Write(b)
	return nil
}

func (r *Registry) writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: ErrStore, Message: err.Error()}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			e.Code, e.Message = 50002, "Operation timed out: "+err.Error()
		}
		r.logger.Error("schema registry: request failed", "err", err)
	}
	reply(w, e.Status(), struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}{e.Code, e.Message})
}

// decode reads a JSON body into v.
func decode(q *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, q.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return &Error{Code: ErrSchemaTooLarge, Message: fmt.Sprintf("Request body over %d bytes", maxBody)}
		}
		return &Error{Code: ErrUnprocessable, Message: "Reading the request body: " + err.Error()}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &Error{Code: ErrUnprocessable, Message: fmt.Sprintf("Unrecognized field or bad value: field %q: want %s", te.Field, te.Type)}
		}
		return &Error{Code: ErrUnprocessable, Message: "Request body is not JSON: " + err.Error()}
	}
	return nil
}

func boolParam(q *http.Request, name string) bool {
	v, _ := strconv.ParseBool(q.URL.Query().Get(name))
	return v
}

func idParam(q *http.Request) (int, error) {
	id, err := strconv.Atoi(q.PathValue("id"))
	if err != nil || id <= 0 {
		return 0, &Error{Code: ErrSchemaNotFound, Message: fmt.Sprintf("Schema %q not found: ids are positive integers", q.PathValue("id"))}
	}
	return id, nil
}

// versionParam parses a version: a positive integer, "latest" or -1
// (both return -1).
func versionParam(q *http.Request) (int, error) {
	s := q.PathValue("version")
	if s == "latest" || s == "-1" {
		return -1, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 || v > 1<<31-1 {
		return 0, &Error{Code: ErrInvalidVersion, Message: fmt.Sprintf("The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", s)}
	}
	return v, nil
}

// schemaParam is the schema the path's {id} names.
func (r *Registry) schemaParam(q *http.Request) (*schemaRec, error) {
	id, err := idParam(q)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	s, ok := r.st.ids[id]
	r.mu.RUnlock()
	if !ok {
		return nil, schemaNotFound(id)
	}
	return s, nil
}

func schemaNotFound(id int) error {
	return &Error{Code: ErrSchemaNotFound, Message: fmt.Sprintf("Schema %d not found", id)}
}

func (r *Registry) getSchemaByID(w http.ResponseWriter, q *http.Request) error {
	s, err := r.schemaParam(q)
	if err != nil {
		return err
	}
	if boolParam(q, "fetchMaxId") {
		r.mu.RLock()
		maxID := r.st.maxID
		r.mu.RUnlock()
		return reply(w, 200, SchemaJSON{GUID: s.guid, SchemaType: typeField(s.typ), References: s.refs, Schema: s.text, MaxID: maxID})
	}
	return replyRaw(w, 200, s.byID.body())
}

func (r *Registry) getSchemaTextByID(w http.ResponseWriter, q *http.Request) error {
	s, err := r.schemaParam(q)
	if err != nil {
		return err
	}
	return replyRaw(w, 200, s.textResp.body())
}

type subjectVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

func (r *Registry) usages(id int, deleted bool) []subjectVersion {
	out := []subjectVersion{}
	for s, vs := range r.st.subjects {
		for _, v := range vs {
			if v.id == id && (deleted || !v.deleted) {
				out = append(out, subjectVersion{s, v.version})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Subject < out[j].Subject || out[i].Subject == out[j].Subject && out[i].Version < out[j].Version
	})
	return out
}

// usagesParam is the subject versions that use the schema the path's
// {id} names (?deleted=true: deleted versions too).
func (r *Registry) usagesParam(q *http.Request) ([]subjectVersion, error) {
	id, err := idParam(q)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	_, ok := r.st.ids[id]
	us := r.usages(id, boolParam(q, "deleted"))
	r.mu.RUnlock()
	if !ok {
		return nil, schemaNotFound(id)
	}
	return us, nil
}

func (r *Registry) getSubjectsByID(w http.ResponseWriter, q *http.Request) error {
	us, err := r.usagesParam(q)
	if err != nil {
		return err
	}
	out := []string{}
	for _, u := range us {
		if len(out) == 0 || out[len(out)-1] != u.Subject {
			out = append(out, u.Subject)
		}
	}
	return reply(w, 200, out)
}

func (r *Registry) getVersionsByID(w http.ResponseWriter, q *http.Request) error {
	us, err := r.usagesParam(q)
	if err != nil {
		return err
	}
	return reply(w, 200, us)
}

func (r *Registry) getSchemaByGUID(w http.ResponseWriter, q *http.Request) error {
	r.mu.RLock()
	id, ok := r.st.byGUID[q.PathValue("guid")]
	var s *schemaRec
	if ok {
		s = r.st.ids[id]
	}
	r.mu.RUnlock()
	if !ok {
		return &Error{Code: ErrSchemaNotFound, Message: fmt.Sprintf("Schema %s not found", q.PathValue("guid"))}
	}
	return reply(w, 200, SchemaJSON{ID: id, GUID: s.guid, SchemaType: typeField(s.typ), References: s.refs, Schema: s.text})
}

func (r *Registry) getIDsByGUID(w http.ResponseWriter, q *http.Request) error {
	r.mu.RLock()
	id, ok := r.st.byGUID[q.PathValue("guid")]
	r.mu.RUnlock()
	if !ok {
		return &Error{Code: ErrSchemaNotFound, Message: fmt.Sprintf("Schema %s not found", q.PathValue("guid"))}
	}
	return reply(w, 200, []struct {
		Context string `json:"context"`
		ID      int    `json:"id"`
	}{{".", id}})
}

func (r *Registry) getSchemas(w http.ResponseWriter, q *http.Request) error {
	prefix, deleted, latestOnly := q.URL.Query().Get("subjectPrefix"), boolParam(q, "deleted"), boolParam(q, "latestOnly")
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []SchemaJSON{}
	names := make([]string, 0, len(r.st.subjects))
	for s := range r.st.subjects {
		if strings.HasPrefix(s, prefix) {
			names = append(names, s)
		}
	}
	sort.Strings(names)
	for _, s := range names {
		var vs []*version
		for _, v := range r.st.subjects[s] {
			if deleted || !v.deleted {
				vs = append(vs, v)
			}
		}
		if latestOnly && len(vs) > 0 {
			vs = vs[len(vs)-1:]
		}
		for _, v := range vs {
			out = append(out, r.st.subjectSchema(s, v))
		}
	}
	return reply(w, 200, out)
}

func (r *Registry) getSubjects(w http.ResponseWriter, q *http.Request) error {
	return reply(w, 200, r.Subjects(q.URL.Query().Get("subjectPrefix"), boolParam(q, "deleted"), boolParam(q, "deletedOnly")))
}

func (r *Registry) getVersions(w http.ResponseWriter, q *http.Request) error {
	subject := q.PathValue("subject")
	deleted, deletedOnly := boolParam(q, "deleted"), boolParam(q, "deletedOnly")
	r.mu.RLock()
	vs := r.st.subjects[subject]
	out := []int{}
	for _, v := range vs {
		if (deletedOnly && v.deleted) || (!deletedOnly && (deleted || !v.deleted)) {
			out = append(out, v.version)
		}
	}
	r.mu.RUnlock()
	if len(out) == 0 && !(deletedOnly && len(vs) > 0) {
		return errSubjectNotFound(subject)
	}
	return reply(w, 200, out)
}

// subjectVersionParam resolves {subject}/{version} (soft-deleted versions
// only with ?deleted=true).
func (r *Registry) subjectVersionParam(q *http.Request) (SchemaJSON, error) {
	subject := q.PathValue("subject")
	ver, err := versionParam(q)
	if err != nil {
		return SchemaJSON{}, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.st.subjects[subject]; !ok {
		return SchemaJSON{}, errSubjectNotFound(subject)
	}
	deleted := boolParam(q, "deleted")
	v := r.st.version(subject, ver, deleted)
	if v == nil {
		if ver == -1 && len(r.st.live(subject)) == 0 {
			return SchemaJSON{}, errSubjectNotFound(subject)
		}
		return SchemaJSON{}, errVersionNotFound(subject, ver)
	}
	return r.st.subjectSchema(subject, v), nil
}

func (r *Registry) getVersion(w http.ResponseWriter, q *http.Request) error {
	s, err := r.subjectVersionParam(q)
	if err != nil {
		return err
	}
	return reply(w, 200, s)
}

func (r *Registry) getVersionText(w http.ResponseWriter, q *http.Request) error {
	s, err := r.subjectVersionParam(q)
	if err != nil {
		return err
	}
	return replyRaw(w, 200, []byte(s.Schema))
}

func (r *Registry) getReferencedBy(w http.ResponseWriter, q *http.Request) error {
	s, err := r.subjectVersionParam(q)
	if err != nil {
		return err
	}
	r.mu.RLock()
	ids := r.st.referencedBy(s.Subject, s.Version)
	r.mu.RUnlock()
	if ids == nil {
		ids = []int{}
	}
	return reply(w, 200, ids)
}

func (r *Registry) register(w http.ResponseWriter, q *http.Request) error {
	var req RegisterRequest
	if err := decode(q, &req); err != nil {
		return err
	}
	if req.Version == -1 {
		req.Version = 0
	}
	if req.ID == -1 {
		req.ID = 0
	}
	id, err := r.Register(q.Context(), q.PathValue("subject"), req)
	if err != nil {
		return err
	}
	return reply(w, 200, struct {
		ID int `json:"id"`
	}{id})
}

func (r *Registry) lookup(w http.ResponseWriter, q *http.Request) error {
	var req RegisterRequest
	if err := decode(q, &req); err != nil {
		return err
	}
	s, err := r.Lookup(q.PathValue("subject"), req, boolParam(q, "deleted"))
	if err != nil {
		return err
	}
	s.Deleted = false
	return reply(w, 200, s)
}

func (r *Registry) deleteSubject(w http.ResponseWriter, q *http.Request) error {
	vs, err := r.DeleteSubject(q.Context(), q.PathValue("subject"), boolParam(q, "permanent"))
	if err != nil {
		return err
	}
	return reply(w, 200, vs)
}

func (r *Registry) deleteVersion(w http.ResponseWriter, q *http.Request) error {
	ver, err := versionParam(q)
	if err != nil {
		return err
	}
	v, err := r.DeleteVersion(q.Context(), q.PathValue("subject"), ver, boolParam(q, "permanent"))
	if err != nil {
		return err
	}
	return reply(w, 200, v)
}

func (r *Registry) compat(w http.ResponseWriter, q *http.Request) error {
	var req RegisterRequest
	if err := decode(q, &req); err != nil {
		return err
	}
	ver := 0
	if q.PathValue("version") != "" {
		var err error
		if ver, err = versionParam(q); err != nil {
			return err
		}
	}
	msgs, err := r.CheckCompatibility(q.PathValue("subject"), ver, req)
	if err != nil {
		return err
	}
	out := struct {
		Is       bool     `json:"is_compatible"`
		Messages []string `json:"messages,omitempty"`
	}{Is: len(msgs) == 0}
	if boolParam(q, "verbose") {
		out.Messages = msgs
		if out.Messages == nil {
			out.Messages = []string{}
		}
	}
	return reply(w, 200, out)
}

func (r *Registry) getConfig(w http.ResponseWriter, q *http.Request) error {
	subject := q.PathValue("subject")
	r.mu.RLock()
	l, ok := r.st.config[subject]
	if !ok && (subject == "" || boolParam(q, "defaultToGlobal")) {
		l, ok = r.st.level(""), true
	}
	r.mu.RUnlock()
	if !ok {
		return &Error{Code: ErrSubjectLevelCompatibilityNotConfigured, Message: fmt.Sprintf("Subject '%s' does not have subject-level compatibility configured", subject)}
	}
	return reply(w, 200, struct {
		L schema.Level `json:"compatibilityLevel"`
	}{l})
}

func (r *Registry) putConfig(w http.ResponseWriter, q *http.Request) error {
	var body struct {
		Compatibility string `json:"compatibility"`
	}
	if err := decode(q, &body); err != nil {
		return err
	}
	l, err := schema.ParseLevel(body.Compatibility)
	if err != nil {
		return &Error{Code: ErrInvalidCompatibilityLevel, Message: "Invalid compatibility level: " + err.Error()}
	}
	subject, err := configSubjectParam(q)
	if err != nil {
		return err
	}
	if err := r.SetLevel(q.Context(), subject, l); err != nil {
		return err
	}
	return reply(w, 200, struct {
		L schema.Level `json:"compatibility"`
	}{l})
}

func (r *Registry) deleteConfig(w http.ResponseWriter, q *http.Request) error {
	prev, err := r.DeleteLevel(q.Context(), q.PathValue("subject"))
	if err != nil {
		return err
	}
	// Both spellings: Confluent's docs say compatibilityLevel, clients
	// (franz-go's sr) read compatibility.
	return reply(w, 200, struct {
		L  schema.Level `json:"compatibilityLevel"`
		L2 schema.Level `json:"compatibility"`
	}{prev, prev})
}

// configSubjectParam is the subject of a config or mode request: "" for
// the global one.
func configSubjectParam(q *http.Request) (string, error) {
	subject := q.PathValue("subject")
	if subject != "" {
		if err := validSubject(subject); err != nil {
			return "", err
		}
	}
	return subject, nil
}

func (r *Registry) getMode(w http.ResponseWriter, q *http.Request) error {
	subject := q.PathValue("subject")
	r.mu.RLock()
	m, ok := r.st.modes[subject]
	if !ok && (subject == "" || boolParam(q, "defaultToGlobal")) {
		m, ok = r.st.mode(""), true
	}
	r.mu.RUnlock()
	if !ok {
		return &Error{Code: ErrSubjectLevelModeNotConfigured, Message: fmt.Sprintf("Subject '%s' does not have subject-level mode configured", subject)}
	}
	return reply(w, 200, modeValue{m})
}

func (r *Registry) putMode(w http.ResponseWriter, q *http.Request) error {
	var body modeValue
	if err := decode(q, &body); err != nil {
		return err
	}
	m, err := ParseMode(string(body.Mode))
	if err != nil {
		return &Error{Code: ErrInvalidMode, Message: "Invalid mode: " + err.Error()}
	}
	subject, err := configSubjectParam(q)
	if err != nil {
		return err
	}
	if err := r.SetMode(q.Context(), subject, m, boolParam(q, "force")); err != nil {
		return err
	}
	return reply(w, 200, modeValue{m})
}

func (r *Registry) deleteMode(w http.ResponseWriter, q *http.Request) error {
	prev, err := r.DeleteMode(q.Context(), q.PathValue("subject"))
	if err != nil {
		return err
	}
	return reply(w, 200, modeValue{prev})
}

func (r *Registry) deleteContext(w http.ResponseWriter, q *http.Request) error {
	c := q.PathValue("context")
	if c != "." && c != "" {
		return &Error{Code: ErrContextNotFound, Message: fmt.Sprintf("Context '%s' not found: Herald has only the default context '.'", c)}
	}
	if len(r.Subjects("", true, false)) > 0 {
		return &Error{Code: ErrContextNotEmpty, Message: "Context '.' is not empty"}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
