package sql

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/stream"
)

// Push runs a transient query (SELECT ..., no CREATE TABLE) over its FROM
// topic from the start (fromStart) or the end, calling emit with each
// result record (after HAVING) until ctx ends or emit fails. emit(nil) is
// called once first, when the query is valid and the stream starts. It keeps no
// state: a push query is for watching, its results are not stored.
func (r *Registry) Push(ctx context.Context, text string, fromStart bool, emit func([]byte) error) error {
	q, err := Parse(text)
	if err != nil {
		return err
	}
	if q.Table != "" {
		return &Error{1, 1, "a push query is a plain SELECT; CREATE TABLE registers a query (POST /v1/queries)"}
	}
	p, err := stream.New(q.processorConfig())
	if err != nil {
		return &Error{1, 1, err.Error()}
	}
	lc, err := r.NewClient()
	if err != nil {
		return err
	}
	td, err := kadm.NewClient(lc).ListTopics(ctx, q.From)
	lc.Close()
	if err != nil {
		return err
	}
	t, ok := td[q.From]
	if !ok || t.Err != nil {
		return fmt.Errorf("%w %q (FROM %s)", ErrUnknownTopic, q.From, q.From)
	}
	start := kgo.NewOffset().AtEnd()
	if fromStart {
		start = kgo.NewOffset().AtStart()
	}
	parts := map[int32]kgo.Offset{}
	for _, pd := range t.Partitions {
		parts[pd.Partition] = start
	}
	cl, err := r.NewClient(kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{q.From: parts}))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := emit(nil); err != nil {
		return err
	}
	out := &pushOut{q: q, emit: emit}
	for ctx.Err() == nil && out.err == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(rec *kgo.Record) {
			hs := make([]event.Header, len(rec.Headers))
			for i, h := range rec.Headers {
				hs[i] = event.Header{Key: h.Key, Value: h.Value}
			}
			ev, err := event.DecodeAny(event.Message{Key: rec.Key, Value: rec.Value, Headers: hs})
			if err != nil || (q.Where != nil && !MatchEvent(q.Where, ev)) {
				return
			}
			p.Process(rec.Partition, ev, out)
		})
		if fs.NumRecords() == 0 {
			p.Advance(out)
		}
	}
	if out.err != nil {
		return out.err
	}
	return nil
}

type pushOut struct {
	q    *Query
	emit func([]byte) error
	err  error
}

func (o *pushOut) Result(r *stream.Result) {
	if o.err != nil || (o.q.Having != nil && !MatchResult(o.q.Having, o.q, r)) {
		return
	}
	o.err = o.emit(o.q.Encode(r))
}
func (o *pushOut) Late(*event.Event, int32)           {}
func (o *pushOut) Invalid(*event.Event, int32, error) {}

// pushRoute: POST /v1/queries/push {"sql": "SELECT ... EMIT CHANGES",
// "from": "earliest"|"latest"} answers text/event-stream, one "result"
// event per result record.
func pushRoute(h interface{ Handle(string, http.Handler) }, r *Registry) {
	h.Handle("POST /v1/queries/push", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			SQL  string `json:"sql"`
			From string `json:"from"`
		}
		if err := httpjson.Decode(w, req, MaxQueryBytes+1024, &body); err != nil {
			httpjson.WriteError(w, err)
			return
		}
		if body.From != "" && body.From != "earliest" && body.From != "latest" {
			httpjson.WriteError(w, httpjson.Invalid("from", "%q is not earliest or latest", body.From))
			return
		}
		fl, ok := w.(http.Flusher)
		if !ok {
			httpjson.WriteError(w, httpjson.Errorf(httpjson.CodeInternal, "", "streaming is not supported by this server"))
			return
		}
		started := false
		err := r.Push(req.Context(), body.SQL, body.From == "earliest", func(rec []byte) error {
			if !started {
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-cache")
				w.WriteHeader(http.StatusOK)
				started = true
			}
			if rec == nil {
				fl.Flush()
				return nil
			}
			if _, err := fmt.Fprintf(w, "event: result\ndata: %s\n\n", rec); err != nil {
				return err
			}
			fl.Flush()
			return nil
		})
		if err != nil && !started && req.Context().Err() == nil {
			writeErr(w, err)
		}
	}))
}
