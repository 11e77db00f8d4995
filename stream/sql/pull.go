package sql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/stream"
)

// pullQuiet is how long a pull waits for more of a table's records once
// the records it has read end before the committed end (markers).
const pullQuiet = 500 * time.Millisecond

// PullQuery is a query against a table:
//
//	SELECT * FROM table [WHERE condition] [;]
//
// The condition compares the table's columns (window_start, window_end,
// the group column and the selected columns) with literals; window times
// compare as RFC 3339 strings, so window_start >= '2026-03-01T10:00:00Z'
// selects a range.
type PullQuery struct {
	Table string
	Where Cond
}

// ParsePull parses a pull query.
func ParsePull(src string) (*PullQuery, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if err := p.kw("SELECT"); err != nil {
		return nil, err
	}
	if err := p.sym("*"); err != nil {
		return nil, err
	}
	if err := p.kw("FROM"); err != nil {
		return nil, err
	}
	t, err := p.ident("a table name")
	if err != nil {
		return nil, err
	}
	q := &PullQuery{Table: t.text}
	if p.isKw("WHERE") {
		p.next()
		if q.Where, err = p.cond(true); err != nil {
			return nil, err
		}
	}
	if p.isSym(";") {
		p.next()
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "expected end of query, found %s", t)
	}
	return q, nil
}

// Row is one row of a table: its columns by name.
type Row map[string]json.RawMessage

func (r Row) match(c Cond) bool {
	switch c := c.(type) {
	case nil:
		return true
	case And:
		return r.match(c.L) && r.match(c.R)
	case Or:
		return r.match(c.L) || r.match(c.R)
	case Not:
		return !r.match(c.X)
	case *Cmp:
		raw, ok := r[c.Operand]
		if !ok {
			return false
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return false
		}
		switch v := v.(type) {
		case float64:
			return c.Lit.IsNum && stream.OpHolds(c.Op, cmpFloat(v, c.Lit.Num))
		case string:
			return !c.Lit.IsNum && !c.Lit.IsBool && stream.OpHolds(c.Op, strings.Compare(v, c.Lit.Str))
		}
	}
	return false
}

// table is a registered query's table in memory: the newest row per
// group and window, for windows that end within the retention of the
// newest window end it holds. Its job loads it from the table topic when
// it starts (after fencing its predecessor) and applies the results of
// each committed transaction, so it holds what the topic's committed
// records hold, less the windows past retention.
type table struct {
	retention time.Duration
	mu        struct {
		sync.RWMutex
		ready  bool
		rows   map[string]Row // rowID -> row
		newest time.Time      // the newest window end among rows
		swept  time.Time      // newest at the last sweep
	}
}

// rowID identifies a row: window start and group key.
func rowID(row Row, key []byte) string { return string(row["window_start"]) + "\x00" + string(key) }

// windowEnd is a row's window_end.
func windowEnd(row Row) (time.Time, bool) {
	var s string
	if json.Unmarshal(row["window_end"], &s) != nil {
		return time.Time{}, false
	}
	end, err := time.Parse(time.RFC3339Nano, s)
	return end, err == nil
}

// expire deletes the rows whose window ended more than retention before
// the newest window end, which it returns.
func expire(rows map[string]Row, retention time.Duration) time.Time {
	var newest time.Time
	for _, row := range rows {
		if end, ok := windowEnd(row); ok && end.After(newest) {
			newest = end
		}
	}
	cutoff := newest.Add(-retention)
	for id, row := range rows {
		if end, ok := windowEnd(row); ok && end.Before(cutoff) {
			delete(rows, id)
		}
	}
	return newest
}

// load replaces the rows with those of the table topic.
func (t *table) load(ctx context.Context, r *Registry, topic string) error {
	rows, err := r.readTable(ctx, topic)
	if err != nil {
		return err
	}
	newest := expire(rows, t.retention)
	t.mu.Lock()
	t.mu.rows, t.mu.ready = rows, true
	t.mu.newest, t.mu.swept = newest, newest
	t.mu.Unlock()
	return nil
}

// apply adds a committed transaction's records. A row whose window is
// already past retention is not added; the others are swept each time
// stream time has moved on by an eighth of the retention.
func (t *table) apply(recs []*kgo.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, rec := range recs {
		var row Row
		if json.Unmarshal(rec.Value, &row) != nil {
			continue
		}
		end, ok := windowEnd(row)
		if ok && !t.mu.newest.IsZero() && end.Before(t.mu.newest.Add(-t.retention)) {
			continue
		}
		t.mu.rows[rowID(row, rec.Key)] = row
		if ok && end.After(t.mu.newest) {
			t.mu.newest = end
		}
	}
	if t.mu.newest.Sub(t.mu.swept) >= t.retention/8 {
		t.mu.newest = expire(t.mu.rows, t.retention)
		t.mu.swept = t.mu.newest
	}
}

// query returns the rows matching where, in window then group order; ok
// is false until the table is loaded.
func (t *table) query(where Cond) (rows []Row, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !t.mu.ready {
		return nil, false
	}
	return selectRows(t.mu.rows, where), true
}

func selectRows(rows map[string]Row, where Cond) []Row {
	ids := make([]string, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := []Row{}
	for _, id := range ids {
		if row := rows[id]; row.match(where) {
			out = append(out, row)
		}
	}
	return out
}

// Pull answers a pull query from the table of a registered query: the
// newest row per group and window, in window then group order. It answers
// from the table the query's job keeps in memory; only while the job has
// not loaded it yet (it is starting) does it read the table topic.
func (r *Registry) Pull(ctx context.Context, text string) ([]Row, error) {
	q, err := ParsePull(text)
	if err != nil {
		return nil, err
	}
	info, err := r.Get(q.Table)
	if err != nil {
		return nil, err
	}
	if t, ok := r.tables.Load(q.Table); ok {
		if rows, ok := t.(*table).query(q.Where); ok {
			return rows, nil
		}
	}
	rows, err := r.readTable(ctx, info.Output)
	if err != nil {
		return nil, fmt.Errorf("sql: table %q: %w", q.Table, err)
	}
	if def, err := Parse(info.SQL); err == nil {
		expire(rows, def.TableRetention())
	}
	return selectRows(rows, q.Where), nil
}

// readTable reads a table topic's committed records: the newest row per
// group and window.
func (r *Registry) readTable(ctx context.Context, topic string) (map[string]Row, error) {
	r.topicReads.Add(1)
	cl, err := r.NewClient(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	parts := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			parts[o.Partition] = kgo.NewOffset().AtStart()
			want[o.Partition] = o.Offset
		}
	})
	latest := map[string]Row{}
	if len(parts) == 0 {
		return latest, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	for len(want) > 0 {
		// NB: the committed end counts transaction markers, which are
		// never delivered: a quiet poll means the table has been read.
		pctx, cancel := context.WithTimeout(ctx, pullQuiet)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if fs.NumRecords() == 0 && pctx.Err() != nil {
			break
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		if ferr != nil {
			return nil, fmt.Errorf("read %s: %w", topic, ferr)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Offset+1 >= want[rec.Partition] {
				delete(want, rec.Partition)
			}
			var row Row
			if json.Unmarshal(rec.Value, &row) == nil {
				latest[rowID(row, rec.Key)] = row
			}
		})
	}
	return latest, nil
}

func pullRoute(h interface{ Handle(string, http.Handler) }, r *Registry) {
	h.Handle("POST /v1/queries/pull", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			SQL string `json:"sql"`
		}
		if err := httpjson.Decode(w, req, MaxQueryBytes+1024, &body); err != nil {
			httpjson.WriteError(w, err)
			return
		}
		rows, err := r.Pull(req.Context(), body.SQL)
		if err != nil {
			writeErr(w, err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, map[string]any{"rows": rows})
	}))
}
