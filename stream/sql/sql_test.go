package sql

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/server"
	"github.com/heraldhq/herald/stream"
)

const hourly = `CREATE TABLE hourly_orders AS
SELECT COUNT(*) AS order_count, SUM(data.total) AS total_revenue
FROM orders
WHERE type = 'OrderCreated'
WINDOW TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES)
EMIT FINAL;`

func TestParseIssueExample(t *testing.T) {
	q, err := Parse(hourly)
	if err != nil {
		t.Fatal(err)
	}
	if q.Table != "hourly_orders" || q.From != "orders" || q.Window != stream.TumblingWindow(time.Hour) || q.Grace != 5*time.Minute ||
		q.Emit != stream.EmitFinal || len(q.Columns) != 2 || q.Columns[1].Name != "total_revenue" || q.Columns[1].Agg.Field != "data.total" {
		t.Fatalf("parsed %+v", q)
	}
}

func TestParseRetention(t *testing.T) {
	for _, c := range []struct {
		window    string
		retention time.Duration
	}{
		{"TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES)", DefaultRetention},
		{"TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES, RETENTION 2 DAYS)", 48 * time.Hour},
		{"HOPPING (SIZE 2 HOURS, ADVANCE BY 1 HOUR, RETENTION 3 HOURS, GRACE 0 SECONDS)", 3 * time.Hour},
		{"SESSION (GAP 30 MINUTES, GRACE 1 MINUTE, RETENTION 31 MINUTES)", 31 * time.Minute},
		{"TUMBLING (SIZE 30 DAYS, GRACE 1 DAY)", 31 * 24 * time.Hour}, // never below size plus grace
	} {
		q, err := Parse("SELECT COUNT(*) FROM o WINDOW " + c.window)
		if err != nil {
			t.Fatalf("%s: %v", c.window, err)
		}
		if got := q.TableRetention(); got != c.retention {
			t.Errorf("%s: retention %v, want %v", c.window, got, c.retention)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ q, want string }{
		{"SELECT COUNT(*) FORM orders", `line 1, column 17: expected FROM, found "FORM"`},
		{"SELECT COUNT(*)\nFROM orders\nWINDOW TUMBLING (SIZE 1 HOUR)", "line 3, column 1: the window has no GRACE"},
		{"SELECT COUNT(*) FROM orders WINDOW TUMBLING (SIZE 0 SECONDS, GRACE 1 MINUTE)", "line 1, column 36: window.size: 0s is not positive"},
		{"SELECT COUNT(*) FROM orders", "line 1, column 28: expected WINDOW"},
		{"SELECT SUM(total) FROM orders WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS)", `line 1, column 12: unknown field "total"`},
		{"SELECT data.user, COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS)", `column "data.user" is neither an aggregate nor a GROUP BY field`},
		{"SELECT COUNT(*) AS n FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) HAVING m > 3", `line 1, column 83: HAVING refers to "m"`},
		{"SELECT COUNT(*) FROM o WHERE type = 'x WINDOW", "line 1, column 37: string literal is not closed"},
		{"SELECT COUNT(*) AS n FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) HAVING", "line 1, column 82: expected a column name, found end of input"},
		{"SELECT COUNT(*) AS n FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) HAVING NOT", "line 1, column 86: expected a column name, found end of input"},
		{"SELECT MEDIAN(data.x) FROM o", "line 1, column 8: unknown function MEDIAN"},
		{"SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 FORTNIGHT, GRACE 0 SECONDS)", "line 1, column 48: expected a unit"},
		{"SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) EMIT SOMETIMES", "expected FINAL or CHANGES"},
		{"SELECT COUNT(*) FROM o WHERE data.x > WINDOW", "expected a literal"},
		{"SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES, RETENTION 1 HOUR)", "line 1, column 81: RETENTION 1h0m0s is shorter than the window's size (or gap) plus GRACE, 1h5m0s"},
		{"SELECT COUNT(*) FROM o WINDOW SESSION (GAP 10 MINUTES, GRACE 0 SECONDS, RETENTION 5 MINUTES)", "RETENTION 5m0s is shorter than the window's size (or gap) plus GRACE, 10m0s"},
		{"SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS, RETAIN 1 DAY)", "expected SIZE, ADVANCE BY, GAP, GRACE or RETENTION"},
	} {
		_, err := Parse(c.q)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want %q", c.q, err, c.want)
		}
	}
}

type sink struct {
	q   *Query
	out []string
}

func (s *sink) Result(r *stream.Result) {
	if s.q.Having == nil || MatchResult(s.q.Having, s.q, r) {
		s.out = append(s.out, string(s.q.Encode(r)))
	}
}
func (s *sink) Late(*event.Event, int32)           {}
func (s *sink) Invalid(*event.Event, int32, error) {}

func orders() []*event.Event {
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var evs []*event.Event
	add := func(typ, user string, min, total int) {
		e := event.New("/shop", typ)
		e.Time = base.Add(time.Duration(min) * time.Minute)
		e.Data = fmt.Appendf(nil, `{"user":%q,"total":%d}`, user, total)
		evs = append(evs, e)
	}
	add("OrderCreated", "ann", 1, 10)
	add("OrderCreated", "bob", 2, 20)
	add("OrderCancelled", "ann", 3, 999)
	add("OrderCreated", "ann", 50, 5)
	add("OrderCreated", "bob", 70, 7)
	add("OrderCreated", "ann", 200, 1)
	return evs
}

func TestRunQueryInProcess(t *testing.T) {
	q, err := Parse(`SELECT data.user AS customer, COUNT(*) AS n, SUM(data.total) AS revenue FROM orders
		WHERE type = 'OrderCreated' AND NOT (data.total > 100)
		WINDOW TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES) GROUP BY data.user HAVING n >= 2 OR revenue > 15 EMIT FINAL`)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := (&Query{Table: "x"}).JobConfig(nil)
	_ = cfg
	p, err := stream.New(q.processorConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{q: q}
	for _, e := range orders() {
		if MatchEvent(q.Where, e) {
			p.Process(0, e, s)
		}
	}
	p.Flush(s)
	want := []string{
		`{"window_start":"2026-03-01T10:00:00Z","window_end":"2026-03-01T11:00:00Z","customer":"ann","n":2,"revenue":15}`,
		`{"window_start":"2026-03-01T10:00:00Z","window_end":"2026-03-01T11:00:00Z","customer":"bob","n":1,"revenue":20}`,
	}
	if strings.Join(s.out, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(s.out, "\n"), strings.Join(want, "\n"))
	}
}

// TestCreateTableJob runs the issue's query as a job on an in-process
// server and reads its table topic.
func TestCreateTableJob(t *testing.T) {
	brokers, cl := startServer(t, kgo.DefaultProduceTopic("orders"))
	ctx := context.Background()
	q, err := Parse(hourly)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := q.JobConfig([]string{brokers})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	promReg := prometheus.NewRegistry()
	cfg.Registerer = promReg
	j, err := stream.NewJob(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The input topic does not exist yet: refused with its name.
	if err := j.Run(ctx); err == nil || !strings.Contains(err.Error(), `input topic "orders" does not exist`) {
		t.Fatalf("run without the input topic: %v", err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	for _, e := range orders() {
		m, _ := event.Encode(e)
		r := &kgo.Record{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- j.Run(jctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics("hourly_orders"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		pctx, pc := context.WithTimeout(ctx, time.Second)
		rd.PollFetches(pctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		pc()
	}
	// Hours 10:00 (ann 10 + bob 20 + ann 5; the cancellation filtered
	// out) and 11:00 (bob 7) are closed by the 13:20 event; 13:00 stays open.
	want := []string{
		`{"window_start":"2026-03-01T10:00:00Z","window_end":"2026-03-01T11:00:00Z","order_count":3,"total_revenue":35}`,
		`{"window_start":"2026-03-01T11:00:00Z","window_end":"2026-03-01T12:00:00Z","order_count":1,"total_revenue":7}`,
	}
	// The metrics are set once the job has seen its commit succeed, which
	// can be after a reader sees the committed records.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mfs, _ := promReg.Gather()
		metrics := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				metrics[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		if metrics["herald_stream_results_total"] == 2 && metrics["herald_stream_events_total"] == 6 && metrics["herald_stream_open_windows"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("metrics %v", metrics)
			break
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("table topic:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func FuzzParse(f *testing.F) {
	f.Add(hourly)
	f.Add("SELECT TOP_K(data.x, 3) FROM o WINDOW SESSION (GAP 5 MINUTES, GRACE 1 SECOND) GROUP BY `ext.k` HAVING top_k_data_x = 1")
	f.Add("SELECT data.a AS a, source, COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) GROUP BY a, source, data.b HAVING a = 1")
	f.Add("SELECT COUNT(*) FROM o WHERE (a.b = 'x''y' OR NOT c >= -1.5e3) WINDOW HOPPING (SIZE 2 HOURS, ADVANCE BY 1 HOUR, GRACE 0 DAYS)")
	f.Add("SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES, RETENTION 2 DAYS)")
	f.Add("SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) HAVING NOT")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := Parse(s)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if _, err := stream.New(q.processorConfig()); err != nil {
			t.Fatalf("parsed %q but the processor refuses it: %v", s, err)
		}
	})
}

// TestGroupBySeveral groups by two data fields (one by its SELECT alias)
// and an attribute: each key column gets its own value in the output
// records, HAVING compares key columns, and bad GROUP BY lists are refused.
func TestGroupBySeveral(t *testing.T) {
	q, err := Parse(`CREATE TABLE t AS SELECT data.region AS region, data.user AS customer, COUNT(*) AS n, SUM(data.total) AS revenue, source
		FROM orders WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS)
		GROUP BY region, data.user, source HAVING region != 'mars' AND customer != 'eve' EMIT FINAL`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(q.GroupBy, ",") != "data.region,data.user,source" {
		t.Fatalf("group by %q", q.GroupBy)
	}
	p, err := stream.New(q.processorConfig())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s := &sink{q: q}
	for i, o := range []struct {
		region, user, source string
		total                int
	}{
		{"eu", "ann", "/web", 10}, {"us", "ann", "/web", 20}, {"eu", "ann", "/web", 5}, {"eu", "bob", "/app", 7},
		{"eu", "ann", "/app", 1}, {"mars", "ann", "/web", 3}, {"eu", "eve", "/web", 4},
	} {
		e := event.New(o.source, "OrderCreated")
		e.Time = base.Add(time.Duration(i) * time.Minute)
		e.Data = fmt.Appendf(nil, `{"region":%q,"user":%q,"total":%d}`, o.region, o.user, o.total)
		p.Process(0, e, s)
	}
	p.Flush(s)
	w := `{"window_start":"2026-03-01T10:00:00Z","window_end":"2026-03-01T11:00:00Z",`
	want := []string{
		w + `"region":"eu","customer":"ann","n":1,"revenue":1,"source":"/app"}`,
		w + `"region":"eu","customer":"ann","n":2,"revenue":15,"source":"/web"}`,
		w + `"region":"eu","customer":"bob","n":1,"revenue":7,"source":"/app"}`,
		w + `"region":"us","customer":"ann","n":1,"revenue":20,"source":"/web"}`,
	}
	if strings.Join(s.out, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(s.out, "\n"), strings.Join(want, "\n"))
	}
	for _, c := range []struct{ q, want string }{
		{"SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) GROUP BY data.a, data.a", `line 1, column 88: GROUP BY names "data.a" twice`},
		{"SELECT data.a, data.b, COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) GROUP BY data.a", `line 1, column 16: column "data.b" is neither an aggregate nor a GROUP BY field`},
		{"SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) GROUP BY data.a,", "expected a field"},
		{"SELECT COUNT(*) FROM o WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) GROUP BY nosuch", `unknown field "nosuch"`},
	} {
		if _, err := Parse(c.q); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want %q", c.q, err, c.want)
		}
	}
}

// startServer starts an in-process server and a client of it with opts,
// both closed when the test ends, and returns the server's address.
func startServer(tb testing.TB, opts ...kgo.Opt) (string, *kgo.Client) {
	tb.Helper()
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: tb.TempDir()},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(srv.KafkaAddr())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return srv.KafkaAddr(), cl
}
