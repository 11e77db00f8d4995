package rules

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/rules/pattern"
)

const bodyLimit = 256 << 10

// Routes mounts the event bus API on h:
//
//	GET    /v1/buses                    list buses
//	POST   /v1/buses                    create a bus {"name"}
//	GET    /v1/buses/{bus}              describe a bus
//	DELETE /v1/buses/{bus}              delete a bus without rules
//	POST   /v1/buses/{bus}/events       publish a CloudEvent (JSON form) to a bus
//	GET    /v1/rules[?bus=B]            list rules
//	POST   /v1/rules                    create a rule (409 if it exists)
//	GET    /v1/rules/{name}[?bus=B]     describe a rule with its metrics
//	PUT    /v1/rules/{name}[?bus=B]     create or replace a rule
//	DELETE /v1/rules/{name}[?bus=B]     delete a rule
//	POST   /v1/rules/{name}/enable      enable (and /disable)
//	POST   /v1/rules:test               {"pattern","event"} -> {"match","reasons"}
//	GET    /v1/archives                 list archives
//	POST   /v1/archives                 create {"name","bus","event_pattern","retention_days"}
//	GET    /v1/archives/{name}          describe (DELETE deletes it and its events)
//	GET    /v1/replays                  list replays
//	POST   /v1/replays                  start {"name","archive","start","end","rules"}
//	GET    /v1/replays/{name}           state and progress
//	POST   /v1/replays/{name}/cancel    cancel a running replay
//
// The bus defaults to "default". Errors use internal/httpjson's shape.
func (e *Engine) Routes(h interface{ Handle(string, http.Handler) }) {
	// Exact Go 1.22 patterns (the handlers still parse the path), so the
	// routes match the OpenAPI fragment (openapi.json) one for one.
	for _, p := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /v1/buses", e.serveBuses},
		{"POST /v1/buses", e.serveBuses},
		{"GET /v1/buses/{bus}", e.serveBuses},
		{"DELETE /v1/buses/{bus}", e.serveBuses},
		{"POST /v1/buses/{bus}/events", e.serveBuses},
		{"GET /v1/rules", e.serveRules},
		{"POST /v1/rules", e.serveRules},
		{"GET /v1/rules/{name}", e.serveRules},
		{"PUT /v1/rules/{name}", e.serveRules},
		{"DELETE /v1/rules/{name}", e.serveRules},
		{"POST /v1/rules/{name}/enable", e.serveRules},
		{"POST /v1/rules/{name}/disable", e.serveRules},
		{"POST /v1/rules:test", e.serveTest},
		{"GET /v1/archives", e.serveArchives},
		{"POST /v1/archives", e.serveArchives},
		{"GET /v1/archives/{name}", e.serveArchives},
		{"DELETE /v1/archives/{name}", e.serveArchives},
		{"GET /v1/replays", e.serveReplays},
		{"POST /v1/replays", e.serveReplays},
		{"GET /v1/replays/{name}", e.serveReplays},
		{"POST /v1/replays/{name}/cancel", e.serveReplays},
	} {
		h.Handle(p.pattern, p.h)
	}
}

func (e *Engine) serveArchives(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1/archives"), "/")
	switch {
	case rest == "" && r.Method == http.MethodGet:
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{"archives": e.Archives()})
	case rest == "" && r.Method == http.MethodPost:
		var a Archive
		if err := httpjson.Decode(w, r, bodyLimit, &a); err != nil {
			writeErr(w, err)
			return
		}
		out, err := e.CreateArchive(r.Context(), a)
		answer(w, http.StatusCreated, out, err)
	case rest == "":
		methodNotAllowed(w, "GET, POST")
	case !strings.Contains(rest, "/") && r.Method == http.MethodGet:
		a, err := e.ArchiveByName(rest)
		answer(w, http.StatusOK, a, err)
	case !strings.Contains(rest, "/") && r.Method == http.MethodDelete:
		noContent(w, e.DeleteArchive(r.Context(), rest))
	case !strings.Contains(rest, "/"):
		methodNotAllowed(w, "GET, DELETE")
	default:
		writeErr(w, httpjson.Errorf(httpjson.CodeNotFound, "", "no such resource %s", r.URL.Path))
	}
}

func (e *Engine) serveReplays(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1/replays"), "/")
	parts := strings.Split(rest, "/")
	switch {
	case rest == "" && r.Method == http.MethodGet:
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{"replays": e.Replays()})
	case rest == "" && r.Method == http.MethodPost:
		var rp Replay
		if err := httpjson.Decode(w, r, bodyLimit, &rp); err != nil {
			writeErr(w, err)
			return
		}
		out, err := e.StartReplay(r.Context(), rp)
		answer(w, http.StatusCreated, out, err)
	case rest == "":
		methodNotAllowed(w, "GET, POST")
	case len(parts) == 1 && r.Method == http.MethodGet:
		rp, err := e.ReplayByName(parts[0])
		answer(w, http.StatusOK, rp, err)
	case len(parts) == 1:
		methodNotAllowed(w, "GET")
	case len(parts) == 2 && parts[1] == "cancel":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		rp, err := e.CancelReplay(r.Context(), parts[0])
		answer(w, http.StatusOK, rp, err)
	default:
		writeErr(w, httpjson.Errorf(httpjson.CodeNotFound, "", "no such resource %s", r.URL.Path))
	}
}

func writeErr(w http.ResponseWriter, err error) {
	var he *httpjson.Error
	switch {
	case errors.As(err, &he):
	case errors.Is(err, ErrNotFound):
		err = httpjson.Errorf(httpjson.CodeNotFound, "", "%v", trimErr(err))
	case errors.Is(err, ErrExists):
		err = httpjson.Errorf(httpjson.CodeAlreadyExists, "name", "%v", trimErr(err))
	case errors.Is(err, ErrInUse):
		err = httpjson.Errorf(httpjson.CodeFailedPrecondition, "", "%v", trimErr(err))
	case errors.Is(err, ErrClosed):
		err = httpjson.Errorf(httpjson.CodeUnavailable, "", "%v", err)
	}
	httpjson.WriteError(w, err)
}

// answer writes v with status, or err when there is one.
func answer(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	httpjson.WriteJSON(w, status, v)
}

// noContent answers 204, or err when there is one.
func noContent(w http.ResponseWriter, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func trimErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": rules: "); i >= 0 {
		return s[:i] + ": " + s[i+len(": rules: "):]
	}
	return s
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeMethodNotAllowed, "", "method not allowed; use %s", allow))
}

func (e *Engine) serveBuses(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1/buses"), "/")
	parts := strings.Split(rest, "/")
	switch {
	case rest == "":
		switch r.Method {
		case http.MethodGet:
			httpjson.WriteJSON(w, http.StatusOK, map[string]any{"buses": e.Buses()})
		case http.MethodPost:
			var req struct {
				Name string `json:"name"`
			}
			if err := httpjson.Decode(w, r, bodyLimit, &req); err != nil {
				writeErr(w, err)
				return
			}
			b, err := e.CreateBus(r.Context(), req.Name)
			answer(w, http.StatusCreated, b, err)
		default:
			methodNotAllowed(w, "GET, POST")
		}
	case len(parts) == 1:
		switch r.Method {
		case http.MethodGet:
			b, err := e.Bus(parts[0])
			answer(w, http.StatusOK, b, err)
		case http.MethodDelete:
			noContent(w, e.DeleteBus(r.Context(), parts[0]))
		default:
			methodNotAllowed(w, "GET, DELETE")
		}
	case len(parts) == 2 && parts[1] == "events":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		var req struct {
			ID              string          `json:"id"`
			Source          string          `json:"source"`
			Type            string          `json:"type"`
			Subject         string          `json:"subject"`
			Time            time.Time       `json:"time"`
			DataContentType string          `json:"datacontenttype"`
			Data            json.RawMessage `json:"data"`
		}
		if err := httpjson.Decode(w, r, 1<<20, &req); err != nil {
			writeErr(w, err)
			return
		}
		ev := event.New(req.Source, req.Type)
		if req.ID != "" {
			ev.ID = req.ID
		}
		if !req.Time.IsZero() {
			ev.Time = req.Time
		}
		ev.Subject = req.Subject
		if len(req.Data) > 0 {
			ev.Data = req.Data
			ev.DataContentType = "application/json"
		}
		if req.DataContentType != "" {
			ev.DataContentType = req.DataContentType
		}
		if err := ev.Validate(); err != nil {
			var fe *event.FieldError
			if errors.As(err, &fe) {
				writeErr(w, httpjson.Invalid(fe.Field, "%s", fe.Reason))
				return
			}
			writeErr(w, httpjson.Invalid("", "%v", err))
			return
		}
		if err := e.Publish(r.Context(), parts[0], ev); err != nil {
			writeErr(w, err)
			return
		}
		httpjson.WriteJSON(w, http.StatusAccepted, map[string]string{"id": ev.ID})
	default:
		writeErr(w, httpjson.Errorf(httpjson.CodeNotFound, "", "no such resource %s", r.URL.Path))
	}
}

type ruleView struct {
	Rule
	Metrics *RuleMetrics `json:"metrics,omitempty"`
}

func (e *Engine) serveRules(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1/rules"), "/")
	parts := strings.Split(rest, "/")
	bus := r.URL.Query().Get("bus")
	if bus == "" {
		bus = DefaultBus
	}
	switch {
	case rest == "":
		switch r.Method {
		case http.MethodGet:
			rules := e.Rules(r.URL.Query().Get("bus"))
			if rules == nil {
				rules = []Rule{}
			}
			httpjson.WriteJSON(w, http.StatusOK, map[string]any{"rules": rules})
		case http.MethodPost:
			var rl Rule
			if err := httpjson.Decode(w, r, bodyLimit, &rl); err != nil {
				writeErr(w, err)
				return
			}
			out, err := e.PutRule(r.Context(), rl, true)
			answer(w, http.StatusCreated, out, err)
		default:
			methodNotAllowed(w, "GET, POST")
		}
	case len(parts) == 1:
		name := parts[0]
		switch r.Method {
		case http.MethodGet:
			rl, err := e.Rule(bus, name)
			if err != nil {
				writeErr(w, err)
				return
			}
			m, _ := e.Metrics(bus, name)
			httpjson.WriteJSON(w, http.StatusOK, ruleView{Rule: rl, Metrics: &m})
		case http.MethodPut:
			var rl Rule
			if err := httpjson.Decode(w, r, bodyLimit, &rl); err != nil {
				writeErr(w, err)
				return
			}
			if rl.Name == "" {
				rl.Name = name
			}
			if rl.Bus == "" {
				rl.Bus = bus
			}
			if rl.Name != name || rl.Bus != bus {
				writeErr(w, httpjson.Invalid("name", "the body names rule %s/%s but the URL %s/%s", rl.Bus, rl.Name, bus, name))
				return
			}
			_, err := e.Rule(bus, name)
			out, err := e.PutRule(r.Context(), rl, errors.Is(err, ErrNotFound))
			answer(w, http.StatusOK, out, err)
		case http.MethodDelete:
			noContent(w, e.DeleteRule(r.Context(), bus, name))
		default:
			methodNotAllowed(w, "GET, PUT, DELETE")
		}
	case len(parts) == 2 && (parts[1] == "enable" || parts[1] == "disable"):
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		state := Enabled
		if parts[1] == "disable" {
			state = Disabled
		}
		out, err := e.SetState(r.Context(), bus, parts[0], state)
		answer(w, http.StatusOK, out, err)
	default:
		writeErr(w, httpjson.Errorf(httpjson.CodeNotFound, "", "no such resource %s", r.URL.Path))
	}
}

// TestResult is the answer of POST /v1/rules:test.
type TestResult struct {
	Match   bool     `json:"match"`
	Reasons []string `json:"reasons"`
}

// TestPattern matches one event (a JSON object) against a pattern with
// the reference matcher and says why. Errors are *httpjson.Error naming
// "pattern" (with the JSON path inside it) or "event".
func TestPattern(pat, ev []byte) (TestResult, error) {
	p, err := pattern.Compile(pat)
	if err != nil {
		if pe, ok := err.(*pattern.Error); ok {
			return TestResult{}, httpjson.Invalid("pattern", "pattern %s: %s", pe.Path, pe.Reason)
		}
		return TestResult{}, httpjson.Invalid("pattern", "%v", err)
	}
	ok, why, err := p.Explain(ev)
	if err != nil {
		return TestResult{}, httpjson.Invalid("event", "%v", err)
	}
	return TestResult{Match: ok, Reasons: why}, nil
}

func (e *Engine) serveTest(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	var req struct {
		Pattern json.RawMessage `json:"pattern"`
		Event   json.RawMessage `json:"event"`
	}
	if err := httpjson.Decode(w, r, bodyLimit, &req); err != nil {
		writeErr(w, err)
		return
	}
	res, err := TestPattern(req.Pattern, req.Event)
	answer(w, http.StatusOK, res, err)
}
