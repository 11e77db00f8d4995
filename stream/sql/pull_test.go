package sql

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/stream"
)

// TestPullFromMemory updates a two-key table many times (EMIT CHANGES)
// and demands that pull queries answer from the job's table in memory
// (no read of the table topic) with the rows the topic holds, before and
// after a restart of the job; a second table keeps only the windows
// within its RETENTION.
func TestPullFromMemory(t *testing.T) {
	brokers, cl := startServer(t, kgo.DefaultProduceTopic("orders"))
	ctx := context.Background()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	produced := 0
	produce := func(n int) {
		var recs []*kgo.Record
		for i := 0; i < n; i++ {
			e := event.New("/shop", "OrderCreated")
			e.Time = base.Add(time.Duration(produced) * 20 * time.Second)
			e.Data = fmt.Appendf(nil, `{"user":"u%d","region":"r%d","total":%d}`, produced%5, produced%2, produced%7)
			e.PartitionKey = fmt.Sprint("u", produced%5)
			produced++
			m, _ := event.Encode(e)
			r := &kgo.Record{Key: m.Key, Value: m.Value}
			for _, h := range m.Headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			recs = append(recs, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := RegistryConfig{Brokers: []string{brokers}, Logger: slog.New(slog.DiscardHandler)}
	reg, err := NewRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Create(ctx, `CREATE TABLE per_user AS SELECT data.user AS customer, data.region AS region, COUNT(*) AS n
		FROM orders WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS) GROUP BY customer, region EMIT CHANGES`); err != nil {
		t.Fatal(err)
	}
	// The same with a retention of two hours: the 10:00 window is gone
	// once the 13:00 one ends at 14:00.
	if _, err := reg.Create(ctx, `CREATE TABLE recent AS SELECT data.user AS customer, data.region AS region, COUNT(*) AS n
		FROM orders WINDOW TUMBLING (SIZE 1 HOUR, GRACE 0 SECONDS, RETENTION 2 HOURS) GROUP BY customer, region EMIT CHANGES`); err != nil {
		t.Fatal(err)
	}
	produce(600) // 200 minutes: 4 windows, 10 groups, 600 updates

	// check waits until the table in memory counts every event, then
	// demands that pulls read no topic and equal the topic's rows.
	check := func(reg *Registry) {
		t.Helper()
		sum := func(rows []Row) (n int) {
			for _, r := range rows {
				var x int
				_ = json.Unmarshal(r["n"], &x)
				n += x
			}
			return n
		}
		for _, tc := range []struct {
			table string
			want  int
		}{{"per_user", produced}, {"recent", produced - 180}} { // 180 events before 11:00
			var rows []Row
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				t0, ok := reg.tables.Load(tc.table)
				if ok {
					if rows, ok = t0.(*table).query(nil); ok && sum(rows) == tc.want {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("the table %s in memory counts %d events, want %d", tc.table, sum(rows), tc.want)
				}
			}
		}
		reads := reg.topicReads.Load()
		all, err := reg.Pull(ctx, "SELECT * FROM per_user")
		if err != nil {
			t.Fatal(err)
		}
		some, err := reg.Pull(ctx, "SELECT * FROM per_user WHERE customer = 'u3' AND window_start >= '2026-03-01T11:00:00Z'")
		if err != nil {
			t.Fatal(err)
		}
		if n := reg.topicReads.Load(); n != reads {
			t.Fatalf("pull queries read the table topic %d times", n-reads)
		}
		if sum(all) != produced || len(all) != 40 || len(some) != 6 {
			t.Fatalf("pull: %d rows counting %d events (want 40 rows, %d events); %d rows for u3 from 11:00 (want 6)", len(all), sum(all), produced, len(some))
		}
		topic, err := reg.readTable(ctx, "per_user")
		if err != nil {
			t.Fatal(err)
		}
		if want := selectRows(topic, nil); !reflect.DeepEqual(all, want) {
			t.Fatalf("pull from memory differs from the table topic:\n got  %v\n want %v", all, want)
		}
		recent, err := reg.Pull(ctx, "SELECT * FROM recent")
		if err != nil {
			t.Fatal(err)
		}
		old, err := reg.Pull(ctx, "SELECT * FROM recent WHERE window_start < '2026-03-01T11:00:00Z'")
		if err != nil {
			t.Fatal(err)
		}
		if len(recent) != 30 || len(old) != 0 {
			t.Fatalf("retention 2 hours: %d rows (want 30: 3 windows of 10 groups), %d before 11:00 (want 0)", len(recent), len(old))
		}
	}
	check(reg)
	// A restart: the job loads its table from the topic, then goes on.
	reg.Close()
	reg2, err := NewRegistry(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	produce(120)
	check(reg2)
}

// A table drops the rows of windows that ended more than its retention
// before the newest window end, and does not take late rows for them.
func TestTableRetention(t *testing.T) {
	tb := &table{retention: 3 * time.Hour}
	tb.mu.rows, tb.mu.ready = map[string]Row{}, true
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	rec := func(hour int, key string, n int) *kgo.Record {
		r := &stream.Result{Key: key, Start: base.Add(time.Duration(hour) * time.Hour), End: base.Add(time.Duration(hour+1) * time.Hour),
			Values: []stream.Value{{Name: "n", Number: float64(n)}}}
		return &kgo.Record{Key: []byte(key), Value: stream.EncodeResult(r)}
	}
	hours := func() []int {
		rows, _ := tb.query(nil)
		var hs []int
		for _, r := range rows {
			end, _ := windowEnd(r)
			hs = append(hs, int(end.Sub(base)/time.Hour)-1)
		}
		return hs
	}
	for h := 0; h < 48; h++ {
		tb.apply([]*kgo.Record{rec(h, "a", 1), rec(h, "b", 1), rec(h, "c", 1)})
		var want []int
		for w := max(0, h-3); w <= h; w++ { // ends within 3 hours of h+1
			want = append(want, w, w, w)
		}
		if got := hours(); !reflect.DeepEqual(got, want) {
			t.Fatalf("after hour %d: windows %v, want %v", h, got, want)
		}
	}
	tb.apply([]*kgo.Record{rec(10, "a", 5), rec(45, "a", 7)}) // one long expired, one within retention
	rows, _ := tb.query(nil)
	if len(rows) != 12 {
		t.Fatalf("%d rows after late records, want 12", len(rows))
	}
	for _, r := range rows {
		if string(r["window_start"]) == `"2026-03-02T21:00:00Z"` && string(r["key"]) == `"a"` && string(r["n"]) != "7" {
			t.Fatalf("late row within retention not applied: %s", r["n"])
		}
	}
}
