package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/twmb/franz-go/pkg/kgo"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// consumeJSON runs consume -o json and parses its lines.
func consumeJSON(t *testing.T, s *cliServer, args ...string) []jsonRecord {
	t.Helper()
	out := s.ok(t, "", append([]string{"consume", "-o", "json"}, args...)...)
	var recs []jsonRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r jsonRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

func values(recs []jsonRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, *r.Value)
	}
	return out
}

func TestProduceConsume(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "t", "--partitions", "3")

	in := "k1:v1\nk2:v2\r\nk1:v3\nk3:\n\xff\xfe:bin\xff\nlast:no newline"
	out := s.ok(t, in, "produce", "t", "--key-separator", ":", "--header", "a=1", "--header", "a=2", "-o", "json")
	var sum map[string]any
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum["records"] != 6.0 || sum["failed"] != 0.0 || sum["topic"] != "t" {
		t.Fatalf("produce -o json: %s (%v)", out, err)
	}

	recs := consumeJSON(t, s, "t")
	if len(recs) != 6 {
		t.Fatalf("consumed %d records, want 6: %+v", len(recs), recs)
	}
	byKey := map[string][]jsonRecord{}
	for _, r := range recs {
		if r.Topic != "t" || len(r.Headers) != 2 || r.Headers[0].Key != "a" || *r.Headers[0].Value != "1" || *r.Headers[1].Value != "2" {
			t.Errorf("record %+v", r)
		}
		if _, err := time.Parse(time.RFC3339Nano, r.Timestamp); err != nil {
			t.Errorf("timestamp %q: %v", r.Timestamp, err)
		}
		byKey[*r.Key] = append(byKey[*r.Key], r)
	}
	// One key, one partition, in order.
	if k1 := byKey["k1"]; len(k1) != 2 || k1[0].Partition != k1[1].Partition || *k1[0].Value != "v1" || *k1[1].Value != "v3" || k1[1].Offset <= k1[0].Offset {
		t.Errorf("k1: %+v", k1)
	}
	if k2 := byKey["k2"]; len(k2) != 1 || *k2[0].Value != "v2" {
		t.Errorf("k2 (CRLF line): %+v", k2)
	}
	if k3 := byKey["k3"]; len(k3) != 1 || *k3[0].Value != "" || k3[0].ValueEncoding != "" {
		t.Errorf("k3 (empty value): %+v", k3)
	}
	if l := byKey["last"]; len(l) != 1 || *l[0].Value != "no newline" {
		t.Errorf("last line without a newline: %+v", l)
	}
	bin := byKey[base64.StdEncoding.EncodeToString([]byte("\xff\xfe"))]
	if len(bin) != 1 || bin[0].KeyEncoding != "base64" || bin[0].ValueEncoding != "base64" ||
		*bin[0].Value != base64.StdEncoding.EncodeToString([]byte("bin\xff")) {
		t.Errorf("binary key and value: %+v", bin)
	}

	if recs := consumeJSON(t, s, "t", "--max", "2"); len(recs) != 2 {
		t.Errorf("--max 2: %d records", len(recs))
	}
	if out := s.ok(t, "", "consume", "t", "--from", "latest"); out != "" {
		t.Errorf("--from latest printed %q", out)
	}

	// A fixed key and partition; --from OFFSET and --format.
	s.ok(t, "x\ny\nz\n", "produce", "t", "--key", "fixed", "--partition", "2", "-q")
	p2 := consumeJSON(t, s, "t", "--partition", "2")
	n := len(p2)
	if n < 3 || *p2[n-1].Value != "z" || *p2[n-1].Key != "fixed" {
		t.Fatalf("partition 2: %+v", p2)
	}
	from := p2[n-2].Offset
	out = s.ok(t, "", "consume", "t", "--partition", "2", "--from", fmt.Sprint(from), "--format", `%t/%p@%o %k=%v [%h]\n`)
	want := fmt.Sprintf("t/2@%d fixed=y []\nt/2@%d fixed=z []\n", from, from+1)
	if out != want {
		t.Errorf("--from %d --format: %q, want %q", from, out, want)
	}

	// --from RFC3339: the first record at or after the time.
	time.Sleep(5 * time.Millisecond)
	at := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	s.ok(t, "after1\nafter2\n", "produce", "t", "--partition", "1", "-q")
	s.ok(t, "after3\n", "produce", "t", "--partition", "0", "-q")
	got := values(consumeJSON(t, s, "t", "--from", at.Format(time.RFC3339Nano)))
	slices.Sort(got)
	if !slices.Equal(got, []string{"after1", "after2", "after3"}) {
		t.Errorf("--from %s: %q", at.Format(time.RFC3339Nano), got)
	}
	if got := values(consumeJSON(t, s, "t", "--from", at.Add(time.Hour).Format(time.RFC3339))); len(got) != 0 {
		t.Errorf("--from an hour ahead: %q", got)
	}
}

func TestProduceOptions(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "t", "--partitions", "2")
	var lines strings.Builder
	for i := range 100 {
		fmt.Fprintf(&lines, "record %d %s\n", i, strings.Repeat("x", i))
	}
	total := 0
	for _, args := range [][]string{
		{"--acks", "all", "--compression", "none"},
		{"--acks", "1", "--compression", "gzip"},
		{"--acks", "0", "--compression", "snappy"},
		{"--compression", "lz4"},
		{"--compression", "zstd"},
	} {
		r := s.run(t, lines.String(), append([]string{"produce", "t"}, args...)...)
		if r.code != 0 || !strings.HasPrefix(r.stderr, "produced 100 records (") || !strings.Contains(r.stderr, " to t in ") ||
			!strings.Contains(r.stderr, "records/s") {
			t.Errorf("produce %v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		total += 100
	}
	// NB: an acks=0 produce returns once the request is written, before
	// the server appends it: wait for every record to be readable.
	var n int
	waitFor(t, "every produced record readable", 20*time.Second, func() bool {
		n = len(consumeJSON(t, s, "t"))
		return n >= total
	})
	if n != total {
		t.Errorf("consumed %d records, want %d", n, total)
	}
	if r := s.run(t, "", "produce", "t"); r.code != 0 || !strings.HasPrefix(r.stderr, "produced 0 records (0 B) to t") {
		t.Errorf("empty input: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestProduceFailures(t *testing.T) {
	s := startCLITestServer(t)
	s.fails(t, exitNotFound, `herald: produce: topic "nope" not found`+"\n", "x\n", "produce", "nope")
	s.fails(t, exitNotFound, `herald: consume: topic "nope" not found`+"\n", "", "consume", "nope")

	s.ok(t, "", "topic", "create", "small", "--config", "max.message.bytes=200")
	s.ok(t, "fits\n", "produce", "small", "-q")
	r := s.fails(t, exitFailure, "herald: produce: 1 of 1 records failed; the first: small/0: MESSAGE_TOO_LARGE", strings.Repeat("x", 1000)+"\n", "produce", "small")
	if !strings.Contains(r.stderr, "produced 0 records") || !strings.Contains(r.stderr, "1 failed") {
		t.Errorf("stderr %q", r.stderr)
	}

	s.ok(t, "", "topic", "create", "k")
	s.fails(t, exitFailure, `herald: produce: input line 2: no key separator ":"`, "a:1\nnosep\n", "produce", "k", "-K", ":")
}

func TestConsumeGroupResumes(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "t", "--partitions", "2")
	s.ok(t, "a\nb\nc\n", "produce", "t", "--partition", "0", "-q")
	s.ok(t, "d\ne\n", "produce", "t", "--partition", "1", "-q")

	first := values(consumeJSON(t, s, "t", "--group", "g", "--max", "3"))
	if len(first) != 3 {
		t.Fatalf("first consume: %q", first)
	}
	c := s.committed(t, "g", "t")
	if c[0]+c[1] != 3 {
		t.Errorf("committed %v after 3 records", c)
	}
	second := values(consumeJSON(t, s, "t", "--group", "g"))
	got := slices.Sorted(slices.Values(append(first, second...)))
	if !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("two consumes of one group read %q then %q", first, second)
	}
	if again := consumeJSON(t, s, "t", "--group", "g"); len(again) != 0 {
		t.Errorf("a third consume read %+v", again)
	}
	if c := s.committed(t, "g", "t"); c[0] != 3 || c[1] != 2 {
		t.Errorf("committed %v, want 3 and 2", c)
	}

	// Lag, as group describe and group list show it.
	s.ok(t, "f\ng\n", "produce", "t", "--partition", "1", "-q")
	var d groupDescription
	if err := json.Unmarshal([]byte(s.ok(t, "", "group", "describe", "g", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.State != "Empty" || d.TotalLag != 2 || len(d.Offsets) != 2 || *d.Offsets[1].Committed != 2 || d.Offsets[1].EndOffset != 4 || *d.Offsets[1].Lag != 2 {
		t.Errorf("group describe -o json: %+v", d)
	}
	out := s.ok(t, "", "group", "describe", "g")
	for _, want := range []string{"Group:     g\n", "State:     Empty\n", "Total lag: 2\n",
		"TOPIC  PARTITION  CURRENT-OFFSET  END-OFFSET  LAG  MEMBER-ID\nt      0          3               3           0    -\nt      1          2               4           2    -\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("group describe lacks %q:\n%s", want, out)
		}
	}
	if out := s.ok(t, "", "group", "list"); out != "GROUP  STATE  PROTOCOL-TYPE  MEMBERS\ng      Empty  consumer       0\n" {
		t.Errorf("group list:\n%s", out)
	}
	s.fails(t, exitNotFound, `herald: group describe: group "nope" not found`+"\n", "", "group", "describe", "nope")

	// --from applies only where the group has no offset: a new group.
	if got := values(consumeJSON(t, s, "t", "--group", "g2", "--from", "latest")); len(got) != 0 {
		t.Errorf("new group --from latest: %q", got)
	}
	if got := values(consumeJSON(t, s, "t", "--group", "g", "--from", "earliest")); !slices.Equal(got, []string{"f", "g"}) {
		t.Errorf("group with offsets, --from earliest: %q, want the two new records", got)
	}
}

// syncBuffer is an io.Writer read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestConsumeFollow(t *testing.T) {
	s := startCLITestServer(t)
	for _, group := range []string{"", "follower"} {
		t.Run("group="+group, func(t *testing.T) {
			topic := "t" + group
			s.ok(t, "", "topic", "create", topic, "--partitions", "2")
			s.ok(t, "old\n", "produce", topic, "-q")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out syncBuffer
			args := []string{"consume", topic, "--follow"}
			if group != "" {
				args = append(args, "--group", group)
			}
			done := make(chan cliResult, 1)
			go func() { done <- s.runContext(t, ctx, strings.NewReader(""), &out, args...) }()
			waitFor(t, "the old record", 10*time.Second, func() bool { return strings.Contains(out.String(), "old\n") })
			s.ok(t, "new1\nnew2\n", "produce", topic, "--key", "k", "-q")
			waitFor(t, "the new records", 10*time.Second, func() bool { return strings.Count(out.String(), "new") == 2 })
			cancel()
			select {
			case r := <-done:
				if r.code != 0 {
					t.Errorf("interrupted consume --follow: exit %d, stderr %q", r.code, r.stderr)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("consume --follow did not stop when its context ended")
			}
			if group != "" {
				// What was printed was committed on the way out.
				c := s.committed(t, group, topic)
				if c[0]+c[1] != 3 {
					t.Errorf("committed %v, want 3 records in all", c)
				}
			}
		})
	}
}

// A partition can end in a transaction marker, which consumers never see as
// a record: a bounded consume must still stop at the end offsets, promptly.
func TestConsumeStopsAtTransactionMarker(t *testing.T) {
	s := startCLITestServer(t)
	s.ok(t, "", "topic", "create", "tx", "--partitions", "1")
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.addr), kgo.TransactionalID("cli-test"), kgo.DefaultProduceTopic("tx"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort, kgo.TryCommit} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("txn%d", i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	recs := consumeJSON(t, s, "tx", "--timeout", "5s")
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("consume took %v to stop at a marker", took)
	}
	// Read uncommitted (the CLI's default, as kcat's): all three values, no
	// markers.
	if len(recs) != 3 || *recs[0].Value != "txn0" || *recs[2].Value != "txn2" {
		t.Fatalf("consumed %+v", recs)
	}
}
