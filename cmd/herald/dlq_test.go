package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
)

// dlq runs herald dlq ARGS against the server.
func (s *cliServer) dlq(t *testing.T, args ...string) cliResult {
	t.Helper()
	return s.run(t, "", append(append([]string{"dlq"}, args...), "--brokers", s.addr, "--timeout", "10s")...)
}

func (s *cliServer) dlqOK(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := s.dlq(t, args...)
	if r.code != 0 {
		t.Fatalf("herald dlq %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// deadLetter is a dead letter as the SDK's middleware writes it.
type deadLetter struct {
	dlqPartition     int32
	topic            string
	partition        int32
	offset           string
	group, reason    string
	err, attempts    string
	first, last      string
	key, value       []byte
	extra            []kgo.RecordHeader
	timestamp        time.Time
	omitSourceHeader bool
}

func (d deadLetter) record(dlq string) *kgo.Record {
	r := &kgo.Record{Topic: dlq, Partition: d.dlqPartition, Key: d.key, Value: d.value, Timestamp: d.timestamp}
	r.Headers = append(r.Headers, d.extra...)
	add := func(k, v string) { r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	if !d.omitSourceHeader {
		add(client.HeaderDLQTopic, d.topic)
	}
	add(client.HeaderDLQPartition, itoa(int64(d.partition)))
	add(client.HeaderDLQOffset, d.offset)
	add(client.HeaderDLQGroup, d.group)
	add(client.HeaderDLQError, d.err)
	add(client.HeaderDLQReason, d.reason)
	add(client.HeaderDLQAttempts, d.attempts)
	add(client.HeaderDLQFirstFailure, d.first)
	add(client.HeaderDLQLastFailure, d.last)
	return r
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// dlqFixture: topics orders (2 partitions), payments (1) and dlq (2), and
// six dead letters in dlq:
//
//	dlq/0/0  orders/0/10    billing   failed     connection refused: db-1   2026-01-01
//	dlq/0/1  orders/1/11    billing   failed     connection refused: db-2   2026-01-02
//	dlq/0/2  payments/0/3   ledger    malformed  malformed event record...  2026-01-03
//	dlq/1/0  orders/0/12    shipping  failed     timeout after 5s           2026-01-04
//	dlq/1/1  orders/1/13    billing   failed     connection refused: db-1   2026-01-05
//	dlq/1/2  payments/0/4   ledger    failed     insufficient funds\n...    2026-01-06
func dlqFixture(t *testing.T, s *cliServer) {
	t.Helper()
	s.ok(t, "", "topic", "create", "orders", "--partitions", "2")
	s.ok(t, "", "topic", "create", "payments", "--partitions", "1")
	s.ok(t, "", "topic", "create", "dlq", "--partitions", "2")
	day := func(d int) (string, string, time.Time) {
		last := time.Date(2026, 1, d, 10, 0, 0, 0, time.UTC)
		return last.Add(-time.Minute).Format(time.RFC3339Nano), last.Format(time.RFC3339Nano), last.Add(time.Second)
	}
	var recs []*kgo.Record
	for i, d := range []deadLetter{
		{dlqPartition: 0, topic: "orders", partition: 0, offset: "10", group: "billing", reason: "failed", err: "gave up after 5 attempts: connection refused: db-1", attempts: "5",
			key: []byte("k1"), value: []byte("v1"), extra: []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}}},
		{dlqPartition: 0, topic: "orders", partition: 1, offset: "11", group: "billing", reason: "failed", err: "gave up after 5 attempts: connection refused: db-2", attempts: "5",
			key: []byte("k2"), value: []byte("v2")},
		{dlqPartition: 0, topic: "payments", partition: 0, offset: "3", group: "ledger", reason: "malformed", err: "malformed event record: missing ce_id", attempts: "0",
			value: []byte("\xff\xfe")},
		{dlqPartition: 1, topic: "orders", partition: 0, offset: "12", group: "shipping", reason: "failed", err: "timeout after 5s", attempts: "3",
			key: []byte("k3"), value: []byte("v3")},
		{dlqPartition: 1, topic: "orders", partition: 1, offset: "13", group: "billing", reason: "failed", err: "gave up after 5 attempts: connection refused: db-1", attempts: "5",
			key: []byte("k4"), value: []byte("v4")},
		{dlqPartition: 1, topic: "payments", partition: 0, offset: "4", group: "ledger", reason: "failed", err: "insufficient funds\ngoroutine 1 [running]", attempts: "2",
			key: []byte("k5"), value: []byte("v5"), extra: []kgo.RecordHeader{{Key: client.HeaderRedrivenFrom, Value: []byte("dlq/9/9")}}},
	} {
		d.first, d.last, d.timestamp = day(i + 1)
		recs = append(recs, d.record("dlq"))
	}
	produceRaw(t, s, recs...)
}

func produceRaw(t *testing.T, s *cliServer, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func showJSON(t *testing.T, s *cliServer, args ...string) []dlqShowJSON {
	t.Helper()
	r := s.dlqOK(t, append([]string{"show", "-o", "json"}, args...)...)
	var out []dlqShowJSON
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var j dlqShowJSON
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, j)
	}
	return out
}

// sources is "topic/partition/offset" of each record's original, sorted.
func sources(recs []dlqShowJSON) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.SourceTopic+"/"+itoa(int64(*r.SourcePartition))+"/"+itoa(*r.SourceOffset))
	}
	slices.Sort(out)
	return out
}

func TestDLQList(t *testing.T) {
	s := startCLITestServer(t)
	dlqFixture(t, s)

	var sum dlqSummary
	if err := json.Unmarshal([]byte(s.dlqOK(t, "list", "dlq", "-o", "json").stdout), &sum); err != nil {
		t.Fatal(err)
	}
	names := func(b dlqBreakdown) (out []string) {
		for _, e := range b.Entries {
			out = append(out, e.Name+"="+itoa(e.Records))
		}
		return out
	}
	if sum.Topic != "dlq" || sum.Stored != 6 || sum.Matched != 6 || len(sum.Partitions) != 2 ||
		sum.Partitions[1].StartOffset != 0 || sum.Partitions[1].EndOffset != 3 ||
		*sum.FirstFailure != "2026-01-01T09:59:00Z" || *sum.LastFailure != "2026-01-06T10:00:00Z" {
		t.Errorf("list -o json: %+v", sum)
	}
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"by_source_topic", names(sum.BySourceTopic), []string{"orders=4", "payments=2"}},
		{"by_group", names(sum.ByGroup), []string{"billing=3", "ledger=2", "shipping=1"}},
		{"by_reason", names(sum.ByReason), []string{"failed=5", "malformed=1"}},
		{"by_error", names(sum.ByError), []string{"gave up after 5 attempts: connection refused: db-1=2",
			"gave up after 5 attempts: connection refused: db-2=1", "insufficient funds...=1",
			"malformed event record: missing ce_id=1", "timeout after 5s=1"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, c.got, c.want)
		}
	}
	if e := sum.ByGroup.Entries[0]; *e.FirstFailure != "2026-01-01T09:59:00Z" || *e.LastFailure != "2026-01-05T10:00:00Z" {
		t.Errorf("billing first/last failure: %v %v", *e.FirstFailure, *e.LastFailure)
	}

	// --top and a filter.
	if err := json.Unmarshal([]byte(s.dlqOK(t, "list", "dlq", "-o", "json", "--top", "1", "--reason", "failed").stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Matched != 5 || sum.Stored != 6 || len(sum.ByError.Entries) != 1 || sum.ByError.Omitted != 3 || sum.ByGroup.Omitted != 2 {
		t.Errorf("--top 1 --reason failed: %+v", sum)
	}

	out := s.dlqOK(t, "list", "dlq").stdout
	for _, want := range []string{
		"Topic:          dlq\n", "Partitions:     2\n", "Stored:         6 offsets\n", "Records:        6\n",
		"First failure:  2026-01-01T09:59:00Z\n", "Last failure:   2026-01-06T10:00:00Z\n",
		"RECORDS  FIRST-FAILURE         LAST-FAILURE          SOURCE-TOPIC\n" +
			"4        2026-01-01T09:59:00Z  2026-01-05T10:00:00Z  orders\n" +
			"2        2026-01-03T09:59:00Z  2026-01-06T10:00:00Z  payments\n",
		"3        2026-01-01T09:59:00Z  2026-01-05T10:00:00Z  billing\n",
		"5        2026-01-01T09:59:00Z  2026-01-06T10:00:00Z  failed\n",
		"2        2026-01-01T09:59:00Z  2026-01-05T10:00:00Z  gave up after 5 attempts: connection refused: db-1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, out)
		}
	}
	out = s.dlqOK(t, "list", "dlq", "--top", "1", "--group", "billing").stdout
	if !strings.Contains(out, "Records:        3 match the filters\n") || !strings.Contains(out, "(1 more; see --top)") {
		t.Errorf("dlq list --top 1 --group billing:\n%s", out)
	}

	// An empty dead-letter topic.
	s.ok(t, "", "topic", "create", "empty")
	out = s.dlqOK(t, "list", "empty").stdout
	if !strings.Contains(out, "Records:        0\n") || !strings.Contains(out, "First failure:  -\n") || strings.Contains(out, "RECORDS") {
		t.Errorf("dlq list of an empty topic:\n%s", out)
	}
}

func TestDLQShowFilters(t *testing.T) {
	s := startCLITestServer(t)
	dlqFixture(t, s)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"orders/0/10", "orders/0/12", "orders/1/11", "orders/1/13", "payments/0/3", "payments/0/4"}},
		{[]string{"--error", "connection refused"}, []string{"orders/0/10", "orders/1/11", "orders/1/13"}},
		{[]string{"--error-regexp", "^(timeout|insufficient)"}, []string{"orders/0/12", "payments/0/4"}},
		{[]string{"--reason", "malformed"}, []string{"payments/0/3"}},
		{[]string{"--source-topic", "payments"}, []string{"payments/0/3", "payments/0/4"}},
		{[]string{"--group", "billing"}, []string{"orders/0/10", "orders/1/11", "orders/1/13"}},
		{[]string{"--since", "2026-01-05T00:00:00Z"}, []string{"orders/1/13", "payments/0/4"}},
		{[]string{"--until", "2026-01-03T00:00:00Z"}, []string{"orders/0/10", "orders/1/11"}},
		// --until is exclusive: the record of 2026-01-05T10:00:00Z is out.
		{[]string{"--since", "2026-01-02T10:00:00Z", "--until", "2026-01-05T10:00:00Z"}, []string{"orders/0/12", "orders/1/11", "payments/0/3"}},
		{[]string{"--offsets", "0:1-2"}, []string{"orders/1/11", "payments/0/3"}},
		{[]string{"--offsets", "1:1-"}, []string{"orders/1/13", "payments/0/4"}},
		{[]string{"--offsets", "0:0", "--offsets", "1:2"}, []string{"orders/0/10", "payments/0/4"}},
		{[]string{"--partition", "1"}, []string{"orders/0/12", "orders/1/13", "payments/0/4"}},
		{[]string{"--partition", "1", "--group", "billing"}, []string{"orders/1/13"}},
		{[]string{"--partition", "0", "--max", "2"}, []string{"orders/0/10", "orders/1/11"}},
		{[]string{"--group", "nobody"}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if got := sources(showJSON(t, s, append([]string{"dlq"}, tc.args...)...)); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got := showJSON(t, s, "dlq", "--max", "4"); len(got) != 4 {
		t.Errorf("--max 4: %d records", len(got))
	}

	// The whole of a record, as JSON.
	recs := showJSON(t, s, "dlq", "--offsets", "0:0")
	j, _ := json.Marshal(recs[0])
	if want := `{"partition":0,"offset":0,"timestamp":"2026-01-01T10:00:01Z","source_topic":"orders","source_partition":0,"source_offset":10,` +
		`"group":"billing","reason":"failed","attempts":5,"first_failure":"2026-01-01T09:59:00Z","last_failure":"2026-01-01T10:00:00Z",` +
		`"error":"gave up after 5 attempts: connection refused: db-1","key":"k1","value":"v1","headers":[{"key":"trace","value":"abc"}]}`; string(j) != want {
		t.Errorf("show -o json:\n%s\nwant\n%s", j, want)
	}
	recs = showJSON(t, s, "dlq", "--reason", "malformed")
	if r := recs[0]; r.Key != nil || r.ValueEncoding != "base64" || *r.Value != "//4=" || *r.Attempts != 0 {
		t.Errorf("malformed record: %+v", r)
	}

	out := s.dlqOK(t, "show", "dlq", "--partition", "1").stdout
	for _, want := range []string{
		"PARTITION  OFFSET  SOURCE        GROUP     REASON  ATTEMPTS  LAST-FAILURE          KEY  VALUE  ERROR\n",
		"1          0       orders/0/12   shipping  failed  3         2026-01-04T10:00:00Z  k3   v3     timeout after 5s\n",
		"1          2       payments/0/4  ledger    failed  2         2026-01-06T10:00:00Z  k5   v5     insufficient funds...\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, out)
		}
	}
}

// redriveJSON runs dlq redrive -o json.
func redriveJSON(t *testing.T, s *cliServer, args ...string) redriveResult {
	t.Helper()
	r := s.dlqOK(t, append([]string{"redrive", "-o", "json"}, args...)...)
	var res redriveResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	return res
}

func header(r jsonRecord, key string) (string, int) {
	v, n := "", 0
	for _, h := range r.Headers {
		if h.Key == key {
			v, n = *h.Value, n+1
		}
	}
	return v, n
}

func TestDLQRedrive(t *testing.T) {
	s := startCLITestServer(t)
	dlqFixture(t, s)
	filter := []string{"dlq", "--error", "connection refused"}

	// A dry run counts and changes nothing.
	r := s.dlqOK(t, append([]string{"redrive"}, filter...)...)
	if r.stdout != "TARGET-TOPIC  RECORDS\norders        3\n\n" ||
		!strings.Contains(r.stderr, "dry run: nothing published; 3 record(s) of dlq match; add --execute to redrive them") {
		t.Errorf("dry run: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if recs := consumeJSON(t, s, "orders"); len(recs) != 0 {
		t.Fatalf("a dry run published %d records", len(recs))
	}
	res := redriveJSON(t, s, filter...)
	group := defaultProgressGroup("dlq", &dlqFilterFlags{errSub: "connection refused"})
	if res.Executed || res.Matched != 3 || res.Published != 0 || res.ProgressGroup != group || !strings.HasPrefix(group, "herald-dlq-redrive-dlq-") ||
		len(res.Targets) != 1 || res.Targets[0].Topic != "orders" || res.Targets[0].Records != 3 || res.Partitions[0].Committed != nil {
		t.Errorf("dry run -o json: %+v", res)
	}
	if c := s.committed(t, group, "dlq"); len(c) != 0 {
		t.Errorf("a dry run committed %v", c)
	}

	// --execute publishes exactly those records, as they were.
	r = s.dlqOK(t, append([]string{"redrive", "--execute"}, filter...)...)
	if !strings.Contains(r.stdout, "TARGET-TOPIC  RECORDS  PUBLISHED  FAILED\norders        3        3          0\n") ||
		!strings.Contains(r.stdout, "redrove 3 record(s) from dlq; progress committed under group "+group+"\n") {
		t.Errorf("--execute: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	recs := consumeJSON(t, s, "orders")
	byKey := map[string]jsonRecord{}
	for _, rec := range recs {
		byKey[*rec.Key] = rec
		for _, h := range rec.Headers {
			if strings.HasPrefix(h.Key, "herald-dlq-") {
				t.Errorf("redriven record %s kept header %s", *rec.Key, h.Key)
			}
		}
	}
	if len(recs) != 3 || len(byKey) != 3 {
		t.Fatalf("orders has %d records: %+v", len(recs), recs)
	}
	for key, want := range map[string]struct{ value, from, ts string }{
		"k1": {"v1", "dlq/0/0", "2026-01-01T10:00:01Z"},
		"k2": {"v2", "dlq/0/1", "2026-01-02T10:00:01Z"},
		"k4": {"v4", "dlq/1/1", "2026-01-05T10:00:01Z"},
	} {
		rec := byKey[key]
		if from, n := header(rec, client.HeaderRedrivenFrom); *rec.Value != want.value || from != want.from || n != 1 || rec.Timestamp != want.ts {
			t.Errorf("redriven %s: %+v", key, rec)
		}
	}
	if v, _ := header(byKey["k1"], "trace"); v != "abc" || len(byKey["k1"].Headers) != 2 {
		t.Errorf("k1 lost its other headers: %+v", byKey["k1"].Headers)
	}
	// By key: where the key's own records go.
	s.ok(t, "x\n", "produce", "orders", "--key", "k4", "-q")
	var k4 []jsonRecord
	for _, rec := range consumeJSON(t, s, "orders") {
		if *rec.Key == "k4" {
			k4 = append(k4, rec)
		}
	}
	if len(k4) != 2 || k4[0].Partition != k4[1].Partition {
		t.Errorf("redriven k4 is not in its key's partition: %+v", k4)
	}
	if c := s.committed(t, group, "dlq"); c[0] != 3 || c[1] != 3 {
		t.Errorf("progress %v, want 3 and 3", c)
	}

	// Again: nothing new. Another filter set has a progress of its own.
	res = redriveJSON(t, s, append([]string{"--execute"}, filter...)...)
	if res.Matched != 0 || res.Published != 0 || res.Partitions[0].From != 3 {
		t.Errorf("second --execute: %+v", res)
	}
	if res = redriveJSON(t, s, "dlq", "--source-topic", "orders"); res.Matched != 4 {
		t.Errorf("dry run of another filter set after a redrive: %+v", res)
	}
	// --from-start redrives again.
	res = redriveJSON(t, s, append([]string{"--execute", "--from-start"}, filter...)...)
	if res.Matched != 3 || res.Published != 3 {
		t.Errorf("--from-start: %+v", res)
	}
	if n := len(consumeJSON(t, s, "orders")); n != 7 {
		t.Errorf("orders has %d records, want 3 + 1 + 3", n)
	}

	// --to, --same-partition; the target must exist and be large enough.
	s.fails(t, exitNotFound, `herald: dlq redrive: topic "retry" (the target of 2 record(s)) not found: create it, give --to`, "",
		"dlq", "redrive", "dlq", "--source-topic", "payments", "--to", "retry", "--execute", "--brokers", s.addr)
	s.ok(t, "", "topic", "create", "retry", "--partitions", "1")
	s.fails(t, exitUsage, "came from partition 1, but topic retry has 1 partitions (0 to 0)", "",
		"dlq", "redrive", "dlq", "--group", "billing", "--to", "retry", "--same-partition", "--brokers", s.addr)
	res = redriveJSON(t, s, "dlq", "--source-topic", "payments", "--to", "retry", "--same-partition", "--execute")
	if res.Published != 2 || res.Targets[0].Topic != "retry" {
		t.Errorf("--to retry: %+v", res)
	}
	recs = consumeJSON(t, s, "retry")
	slices.SortFunc(recs, func(a, b jsonRecord) int { return strings.Compare(a.Timestamp, b.Timestamp) })
	if len(recs) != 2 || recs[0].Key != nil || recs[0].ValueEncoding != "base64" || *recs[0].Value != "//4=" {
		t.Fatalf("retry: %+v", recs)
	}
	// An earlier herald-redriven-from is replaced, not repeated.
	if from, n := header(recs[1], client.HeaderRedrivenFrom); from != "dlq/1/2" || n != 1 {
		t.Errorf("re-redriven record: %+v", recs[1].Headers)
	}

	// --same-partition keeps the original partition.
	res = redriveJSON(t, s, "dlq", "--group", "billing", "--same-partition", "--execute", "--progress-group", "mine")
	if res.Published != 3 || res.ProgressGroup != "mine" {
		t.Errorf("--same-partition: %+v", res)
	}
	if c := s.committed(t, "mine", "dlq"); c[0] != 3 || c[1] != 3 {
		t.Errorf("--progress-group mine: progress %v", c)
	}
}

// TestDLQRedriveSamePartition checks --same-partition on its own topic.
func TestDLQRedriveSamePartition(t *testing.T) {
	s := startCLITestServer(t)
	dlqFixture(t, s)
	s.ok(t, "", "topic", "create", "orders2", "--partitions", "2")
	redriveJSON(t, s, "dlq", "--source-topic", "orders", "--to", "orders2", "--same-partition", "--execute")
	recs := consumeJSON(t, s, "orders2")
	want := map[string]int32{"k1": 0, "k2": 1, "k3": 0, "k4": 1}
	if len(recs) != 4 {
		t.Fatalf("orders2: %+v", recs)
	}
	for _, r := range recs {
		if r.Partition != want[*r.Key] {
			t.Errorf("%s in partition %d, want %d", *r.Key, r.Partition, want[*r.Key])
		}
	}
}

func TestDLQRedriveNoSourceHeader(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "dlq")
	s.ok(t, "", "topic", "create", "out")
	produceRaw(t, s, deadLetter{topic: "x", offset: "1", reason: "failed", omitSourceHeader: true, value: []byte("v")}.record("dlq"))
	s.fails(t, exitFailure, "herald: dlq redrive: 1 matching record(s) have no herald-dlq-topic header, the first dlq/0/0", "",
		"dlq", "redrive", "dlq", "--brokers", s.addr)
	if res := redriveJSON(t, s, "dlq", "--to", "out", "--execute"); res.Published != 1 {
		t.Errorf("--to out: %+v", res)
	}
}

func TestDLQUsageErrors(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "dlq", "--partitions", "2")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `dlq: unknown command "bogus"`},
		{[]string{"list"}, "dlq list: accepts 1 arg(s), received 0"},
		{[]string{"show", "dlq", "--bogus"}, "dlq show: unknown flag: --bogus"},
		{[]string{"list", "dlq", "-o", "yaml"}, `dlq list: -o "yaml": want table or json`},
		{[]string{"list", "dlq", "--top", "0"}, "dlq list: --top 0: want 1 or more"},
		{[]string{"list", "dlq", "--reason", "bogus"}, `dlq list: --reason "bogus": want failed or malformed`},
		{[]string{"show", "dlq", "--error", "x", "--error-regexp", "y"}, "dlq show: --error and --error-regexp: give one or the other"},
		{[]string{"show", "dlq", "--error-regexp", "("}, `dlq show: --error-regexp "(": error parsing regexp`},
		{[]string{"show", "dlq", "--since", "yesterday"}, `dlq show: --since "yesterday": want an RFC3339 time`},
		{[]string{"show", "dlq", "--until", "2026-13-01"}, `dlq show: --until "2026-13-01": want an RFC3339 time`},
		{[]string{"show", "dlq", "--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"}, "dlq show: --since 2026-01-02T00:00:00Z and --until 2026-01-01T00:00:00Z: --until must be after --since"},
		{[]string{"show", "dlq", "--offsets", "0:5-3"}, `dlq show: --offsets "0:5-3": 3 is before 5`},
		{[]string{"show", "dlq", "--offsets", "x"}, `dlq show: --offsets "x": want PARTITION:FROM-TO`},
		{[]string{"show", "dlq", "--offsets", "0:a-b"}, `dlq show: --offsets "0:a-b": want PARTITION:FROM-TO`},
		{[]string{"show", "dlq", "--offsets", "5:0-1"}, "dlq show: --offsets 5:...: topic dlq has 2 partitions (0 to 1)"},
		{[]string{"show", "dlq", "--offsets", "1:0-1", "--partition", "0"}, "dlq show: --offsets 1:... and --partition: partition 1 is not among the --partition ones"},
		{[]string{"show", "dlq", "--partition", "7"}, "dlq show: --partition 7: topic dlq has 2 partitions (0 to 1)"},
		{[]string{"show", "dlq", "--partition", "x"}, `dlq show: invalid argument "x" for "-p, --partition" flag`},
		{[]string{"show", "dlq", "--max", "-1"}, "dlq show: --max -1: want 0 (no limit) or more"},
		{[]string{"redrive", "dlq", "--to", ""}, `dlq redrive: --to "": want a topic name`},
		{[]string{"redrive", "dlq", "--progress-group", ""}, `dlq redrive: --progress-group "": want a group name`},
		{[]string{"redrive", "dlq", "--reason", "oops", "--execute"}, `dlq redrive: --reason "oops"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := s.dlq(t, tc.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "herald: "+tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
	for _, sub := range []string{"list", "show", "redrive"} {
		r := s.dlq(t, sub, "nope")
		if want := "herald: dlq " + sub + `: topic "nope" not found` + "\n"; r.code != exitNotFound || r.stderr != want {
			t.Errorf("dlq %s nope: exit %d, stderr %q; want exit 3 and %q", sub, r.code, r.stderr, want)
		}
	}
}

// TestDLQRedriveEndToEnd is the story of a poison event: a subscriber's
// handler fails on it past its retry budget, so the SDK's dead-letter
// middleware moves it to the DLQ and the partition moves on. The bug is
// fixed (the handler stops failing), dlq redrive --execute re-publishes it,
// and the subscriber handles it exactly once; a second redrive publishes
// nothing.
func TestDLQRedriveEndToEnd(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "orders")
	s.ok(t, "", "topic", "create", "orders.dlq")

	var mu sync.Mutex
	handled := map[string]int{}
	attempts := 0
	fixed := false
	h := func(ctx context.Context, e *event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if e.Type == "poison" && !fixed {
			attempts++
			return errors.New("nil pointer dereference in pricing")
		}
		handled[e.ID]++
		return nil
	}
	sub, err := client.NewSubscriber([]string{s.addr}, "billing", []string{"orders"}, h,
		client.WithDeadLetter("orders.dlq"), client.WithLogger(slog.New(slog.DiscardHandler)),
		client.WithMiddleware(client.Retry(client.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond})))
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- sub.Run(context.Background()) }()
	t.Cleanup(func() {
		sub.Close()
		if err := <-runDone; err != nil {
			t.Errorf("subscriber Run: %v", err)
		}
	})

	pub, err := client.NewPublisher([]string{s.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publish := func(id, typ string) {
		t.Helper()
		e := event.New("test", typ)
		e.ID, e.PartitionKey = id, "order-1"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pub.Publish(ctx, "orders", e); err != nil {
			t.Fatal(err)
		}
	}
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return handled[id]
	}
	publish("ok-1", "placed")
	publish("bad-1", "poison")
	publish("ok-2", "placed")
	waitFor(t, "ok-2 handled after the poison event", 20*time.Second, func() bool { return count("ok-2") == 1 })
	// The dead letter is written with the batch's other outputs: it is
	// readable once the batch is done, not when the next event is handled.
	var recs []dlqShowJSON
	waitFor(t, "the poison event's dead letter", 20*time.Second, func() bool {
		recs = showJSON(t, s, "orders.dlq")
		return len(recs) >= 1
	})
	if len(recs) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(recs), recs)
	}
	if d := recs[0]; d.SourceTopic != "orders" || *d.SourceOffset != 1 || d.Group != "billing" || d.Reason != "failed" ||
		*d.Attempts != 3 || !strings.Contains(d.Error, "nil pointer dereference") || *d.Key != "order-1" {
		t.Errorf("dead letter: %+v", d)
	}
	if count("bad-1") != 0 || attempts != 3 {
		t.Errorf("before the fix: bad-1 handled %d times, %d attempts", count("bad-1"), attempts)
	}

	// The fix ships; the operator looks, then redrives.
	mu.Lock()
	fixed = true
	mu.Unlock()
	var sum dlqSummary
	if err := json.Unmarshal([]byte(s.dlqOK(t, "list", "orders.dlq", "-o", "json").stdout), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Matched != 1 || sum.ByGroup.Entries[0].Name != "billing" {
		t.Errorf("dlq list: %+v", sum)
	}
	if res := redriveJSON(t, s, "orders.dlq", "--error", "nil pointer"); res.Matched != 1 || res.Published != 0 {
		t.Errorf("dry run: %+v", res)
	}
	if res := redriveJSON(t, s, "orders.dlq", "--error", "nil pointer", "--execute"); res.Published != 1 || res.Targets[0].Topic != "orders" {
		t.Errorf("--execute: %+v", res)
	}
	waitFor(t, "the redriven event handled", 20*time.Second, func() bool { return count("bad-1") == 1 })
	if res := redriveJSON(t, s, "orders.dlq", "--error", "nil pointer", "--execute"); res.Published != 0 {
		t.Errorf("second --execute: %+v", res)
	}
	// A sentinel behind everything redriven, in the same partition (one
	// key): once it is handled, a duplicate would have been too.
	publish("ok-3", "placed")
	waitFor(t, "the sentinel handled", 20*time.Second, func() bool { return count("ok-3") == 1 })
	for _, id := range []string{"ok-1", "bad-1", "ok-2", "ok-3"} {
		if n := count(id); n != 1 {
			t.Errorf("%s handled %d times, want exactly once", id, n)
		}
	}
	if n := len(showJSON(t, s, "orders.dlq")); n != 1 {
		t.Errorf("%d dead letters after the redrive, want still 1", n)
	}
}
