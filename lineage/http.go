package lineage

import (
	"net/http"
	"strconv"

	"github.com/heraldhq/herald/internal/httpjson"
)

// MaxLimit bounds the events one lineage or flow answer holds.
const MaxLimit = 10000

// Routes mounts GET /v1/lineage/{eventId} and GET /v1/flows/{correlationId}
// (both take limit, 1 to MaxLimit, default 1,000).
func (x *Indexer) Routes(h interface{ Handle(string, http.Handler) }) {
	h.Handle("GET /v1/lineage/{eventId}", http.HandlerFunc(x.serveLineage))
	h.Handle("GET /v1/flows/{correlationId}", http.HandlerFunc(x.serveFlow))
}

func limitParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 1000, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, httpjson.Invalid("limit", "limit %q: want a whole number from 1 to %d", s, MaxLimit)
	}
	return n, nil
}

func (x *Indexer) serveLineage(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		httpjson.WriteError(w, err)
		return
	}
	id := r.PathValue("eventId")
	l, ok := x.idx.Lineage(id, limit)
	if !ok {
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeNotFound, "eventId", "no event %q is indexed%s", id, x.catchingUp()))
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, l)
}

func (x *Indexer) serveFlow(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		httpjson.WriteError(w, err)
		return
	}
	id := r.PathValue("correlationId")
	f, ok := x.idx.Flow(id, limit)
	if !ok {
		httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeNotFound, "correlationId", "no event with correlation id %q is indexed%s", id, x.catchingUp()))
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, f)
}

func (x *Indexer) catchingUp() string {
	if x.CaughtUp() {
		return ""
	}
	return " (the index is still reading the topics since the server started)"
}
