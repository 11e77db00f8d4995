package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/commitlog/batch"
)

func openBroker(t testing.TB, dir string, mod ...func(*Config)) *Broker {
	t.Helper()
	cfg := Config{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CleanInterval: -1}
	for _, f := range mod {
		f(&cfg)
	}
	b, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

type recSpec struct {
	key, value string
	ts         int64
}

func encode(t testing.TB, opts batch.BuildOptions, recs ...recSpec) []byte {
	t.Helper()
	rs := make([]batch.Rec, len(recs))
	for i, r := range recs {
		rs[i] = batch.Rec{Timestamp: r.ts, Value: []byte(r.value)}
		if r.key != "" {
			rs[i].Key = []byte(r.key)
		}
	}
	b, err := batch.Encode(nil, opts, rs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func values(t testing.TB, b *Broker, topic string, part int32, from int64) []string {
	t.Helper()
	var out []string
	var it batch.Iter
	ctx := context.Background()
	for off := from; ; {
		f, err := b.Fetch(ctx, topic, part, off, 1<<20, nil)
		if err != nil {
			t.Fatalf("Fetch(%s/%d@%d): %v", topic, part, off, err)
		}
		if len(f.Records) == 0 {
			return out
		}
		for p := 0; p < len(f.Records); {
			h, _ := batch.ParseHeader(f.Records[p:])
			it.Reset(f.Records[p : p+h.Size()])
			for it.Next() {
				if it.Offset() >= off {
					out = append(out, string(it.Record().Value))
				}
			}
			off = h.LastOffset() + 1
			p += h.Size()
		}
	}
}

func TestTopicLifecycle(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	ctx := context.Background()
	if err := b.CreateTopic(ctx, "orders", 3, map[string]string{CfgRetentionMs: "3600000"}); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTopic(ctx, "orders", 3, nil); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	for _, bad := range []string{"", ".", "..", "a b", strings.Repeat("x", 250), "ü"} {
		if err := b.CreateTopic(ctx, bad, 1, nil); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("CreateTopic(%q): %v, want ErrInvalidTopic", bad, err)
		}
	}
	if err := b.CreateTopic(ctx, "x", 0, nil); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("0 partitions: %v", err)
	}
	err := b.CreateTopic(ctx, "y", 1, map[string]string{"retention.ms": "soon"})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "retention.ms") {
		t.Fatalf("bad config: %v", err)
	}
	if err := b.CreateTopic(ctx, "y", 1, map[string]string{"no.such.config": "1"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("unknown config: %v", err)
	}
	if err := b.CreatePartitions(ctx, "orders", 5); err != nil {
		t.Fatal(err)
	}
	if err := b.CreatePartitions(ctx, "orders", 2); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("shrink: %v", err)
	}
	v := "compact"
	if err := b.AlterConfigs(ctx, "orders", map[string]*string{CfgCleanupPolicy: &v}, false); err != nil {
		t.Fatal(err)
	}
	if err := b.AlterConfigs(ctx, "orders", map[string]*string{CfgDurability: &v}, false); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("altering a create-only config: %v", err)
	}
	b.Close()

	// Everything survives a restart.
	b = openBroker(t, dir)
	defer b.Close()
	ti, err := b.Topic("orders")
	if err != nil || ti.Partitions != 5 || ti.Configs[CfgRetentionMs] != "3600000" || ti.Configs[CfgCleanupPolicy] != "compact" {
		t.Fatalf("after restart: %+v, %v", ti, err)
	}
	cfgs, _ := b.DescribeConfigs("orders")
	found := map[string]ConfigEntry{}
	for _, c := range cfgs {
		found[c.Name] = c
	}
	if found[CfgRetentionMs].Source != SourceTopic || found[CfgMaxMessageBytes].Source != SourceDefault || found[CfgDurability].Value != "always" {
		t.Fatalf("describe configs: %+v", found)
	}
	if err := b.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Topic("orders"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("deleted topic: %v", err)
	}
	// A topic of the same name starts empty.
	if err := b.CreateTopic(ctx, "orders", 1, nil); err != nil {
		t.Fatal(err)
	}
	if got := values(t, b, "orders", 0, 0); len(got) != 0 {
		t.Fatalf("recreated topic holds %v", got)
	}
}

func TestProduceFetch(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 2, map[string]string{CfgMaxMessageBytes: "2000"})
	r, err := b.Produce(ctx, "t", 1, encode(t, batch.BuildOptions{}, recSpec{value: "a"}, recSpec{value: "b"}), AcksAll)
	if err != nil || r.BaseOffset != 0 || r.Records != 2 {
		t.Fatalf("produce: %+v, %v", r, err)
	}
	r, _ = b.Produce(ctx, "t", 1, encode(t, batch.BuildOptions{Compression: batch.Zstd}, recSpec{value: "c"}), AcksLeader)
	if r.BaseOffset != 2 {
		t.Fatalf("second produce at %d", r.BaseOffset)
	}
	waitHWM(t, b, "t", 1, 3)
	if got := values(t, b, "t", 1, 0); strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("fetched %v", got)
	}
	if got := values(t, b, "t", 1, 1); strings.Join(got, ",") != "b,c" {
		t.Fatalf("fetched from 1: %v", got)
	}
	if _, err := b.Fetch(ctx, "t", 1, 9, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("fetch past end: %v", err)
	}
	if _, err := b.Produce(ctx, "nope", 0, encode(t, batch.BuildOptions{}, recSpec{value: "x"}), AcksAll); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("produce to missing topic: %v", err)
	}
	if _, err := b.Produce(ctx, "t", 7, encode(t, batch.BuildOptions{}, recSpec{value: "x"}), AcksAll); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("produce to missing partition: %v", err)
	}
	_, err = b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: strings.Repeat("x", 3000)}), AcksAll)
	if !errors.Is(err, ErrMessageTooLarge) || !strings.Contains(err.Error(), "2000") {
		t.Fatalf("oversized: %v", err)
	}
	bad := encode(t, batch.BuildOptions{}, recSpec{value: "x"})
	bad[len(bad)-1] ^= 1
	if _, err := b.Produce(ctx, "t", 0, bad, AcksAll); !errors.Is(err, ErrCorruptMessage) {
		t.Fatalf("corrupt: %v", err)
	}
	if got := values(t, b, "t", 0, 0); len(got) != 0 {
		t.Fatalf("refused produces stored %v", got)
	}
	// List offsets.
	for ts, want := range map[int64]int64{EarliestOffset: 0, LatestOffset: 3} {
		if off, _, err := b.ListOffset(ctx, "t", 1, ts); err != nil || off != want {
			t.Fatalf("ListOffset(%d) = %d, %v; want %d", ts, off, err, want)
		}
	}
}

func waitHWM(t testing.TB, b *Broker, topic string, part int32, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if hwm, _ := b.HighWatermark(topic, part); hwm >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("high-water mark of %s/%d never reached %d", topic, part, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestListOffsetByTime(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 1, nil)
	for i := 0; i < 10; i++ {
		b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: fmt.Sprint(i), ts: int64(1000 * i)}), AcksAll)
	}
	off, ts, err := b.ListOffset(ctx, "t", 0, 4500)
	if err != nil || off != 5 || ts != 5000 {
		t.Fatalf("ListOffset(4500) = %d, %d, %v; want 5, 5000", off, ts, err)
	}
	if off, ts, _ := b.ListOffset(ctx, "t", 0, 99999); off != -1 || ts != -1 {
		t.Fatalf("ListOffset past the newest = %d, %d; want -1, -1", off, ts)
	}
}

func TestIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 1, nil)
	pid, epoch, err := b.InitProducerID(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq int32, n int) (Produced, error) {
		recs := make([]recSpec, n)
		for i := range recs {
			recs[i] = recSpec{value: fmt.Sprintf("s%d", int(seq)+i)}
		}
		return b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{Producer: true, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: seq}, recs...), AcksAll)
	}
	if r, err := send(0, 2); err != nil || r.BaseOffset != 0 {
		t.Fatalf("first: %+v %v", r, err)
	}
	if r, err := send(2, 3); err != nil || r.BaseOffset != 2 {
		t.Fatalf("second: %+v %v", r, err)
	}
	// A retry of the first batch is acknowledged with its original offset
	// and not stored twice.
	if r, err := send(0, 2); err != nil || !r.Duplicate || r.BaseOffset != 0 {
		t.Fatalf("retry: %+v %v", r, err)
	}
	// A gap is refused.
	if _, err := send(9, 1); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("gap: %v", err)
	}
	// An older epoch is fenced.
	old := encode(t, batch.BuildOptions{Producer: true, ProducerID: pid, ProducerEpoch: epoch - 1, BaseSequence: 5}, recSpec{value: "z"})
	if _, err := b.Produce(ctx, "t", 0, old, AcksAll); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("old epoch: %v", err)
	}
	if got := values(t, b, "t", 0, 0); len(got) != 5 {
		t.Fatalf("stored %v", got)
	}
	b.Close()
	// After a restart the producer's state is back: retries are still
	// recognised and the sequence continues.
	b = openBroker(t, dir)
	defer b.Close()
	if r, err := send(2, 3); err != nil || !r.Duplicate || r.BaseOffset != 2 {
		t.Fatalf("retry after restart: %+v %v", r, err)
	}
	if r, err := send(5, 1); err != nil || r.BaseOffset != 5 {
		t.Fatalf("continue after restart: %+v %v", r, err)
	}
	// Producer ids are never handed out twice, even across restarts.
	pid2, _, _ := b.InitProducerID(ctx, "")
	if pid2 <= pid {
		t.Fatalf("producer id %d reused after %d", pid2, pid)
	}
}

func TestProducerStateRebuiltWithoutSnapshot(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 1, nil)
	pid, _, _ := b.InitProducerID(ctx, "")
	opts := batch.BuildOptions{Producer: true, ProducerID: pid}
	b.Produce(ctx, "t", 0, encode(t, opts, recSpec{value: "a"}), AcksAll)
	// Simulate a crash before any snapshot: close the logs but remove the
	// snapshot that Close wrote.
	b.Close()
	if err := b.fs.RemoveAll(b.producerDir("t")); err != nil {
		t.Fatal(err)
	}
	if err := b.fs.Remove(filepath.Join(dir, closedSnapshotsFile)); err != nil {
		t.Fatal(err)
	}
	b = openBroker(t, dir)
	defer b.Close()
	if r, err := b.Produce(ctx, "t", 0, encode(t, opts, recSpec{value: "a"}), AcksAll); err != nil || !r.Duplicate {
		t.Fatalf("retry after a crash: %+v %v", r, err)
	}
}

func TestMemoryTopic(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	ctx := context.Background()
	if err := b.CreateTopic(ctx, "metrics", 1, map[string]string{CfgDurability: "memory", CfgRetentionBytes: "2000"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := b.Produce(ctx, "metrics", 0, encode(t, batch.BuildOptions{}, recSpec{value: fmt.Sprintf("%03d-%s", i, strings.Repeat("m", 100))}), AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	parts, _ := b.Partitions("metrics")
	if !parts[0].InMemory || parts[0].Size > 2000 || parts[0].HighWatermark != 50 || parts[0].StartOffset == 0 {
		t.Fatalf("memory partition: %+v", parts[0])
	}
	got := values(t, b, "metrics", 0, parts[0].StartOffset)
	if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "049") {
		t.Fatalf("memory topic kept %v", got)
	}
	b.Close()
	b = openBroker(t, dir)
	defer b.Close()
	parts, err := b.Partitions("metrics")
	if err != nil || parts[0].HighWatermark != 0 {
		t.Fatalf("after restart the memory topic exists and is empty: %+v %v", parts, err)
	}
}

func TestCompactedTopicNeedsKeys(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic(ctx, "c", 1, map[string]string{CfgCleanupPolicy: "compact"})
	if _, err := b.Produce(ctx, "c", 0, encode(t, batch.BuildOptions{}, recSpec{value: "nokey"}), AcksAll); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("keyless record on a compacted topic: %v", err)
	}
	if _, err := b.Produce(ctx, "c", 0, encode(t, batch.BuildOptions{}, recSpec{key: "k", value: "v"}), AcksAll); err != nil {
		t.Fatal(err)
	}
}

func TestLogAppendTime(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 1, map[string]string{CfgTimestampType: "LogAppendTime"})
	before := time.Now().UnixMilli()
	r, err := b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: "x", ts: 1}), AcksAll)
	if err != nil || r.LogAppendTime < before {
		t.Fatalf("produce: %+v %v", r, err)
	}
	f, _ := b.Fetch(ctx, "t", 0, 0, 1<<20, nil)
	var it batch.Iter
	it.Reset(f.Records)
	it.Next()
	if it.Timestamp() != r.LogAppendTime || !it.Header().LogAppendTime() {
		t.Fatalf("record timestamp %d, want the append time %d", it.Timestamp(), r.LogAppendTime)
	}
}

func TestAutoCreate(t *testing.T) {
	b := openBroker(t, t.TempDir(), func(c *Config) { c.AutoCreateTopics = true; c.DefaultPartitions = 3 })
	defer b.Close()
	if _, err := b.Produce(context.Background(), "fresh", 2, encode(t, batch.BuildOptions{}, recSpec{value: "x"}), AcksAll); err != nil {
		t.Fatal(err)
	}
	if ti, err := b.Topic("fresh"); err != nil || ti.Partitions != 3 {
		t.Fatalf("auto-created: %+v %v", ti, err)
	}
}

func TestWatchWakesOnProduce(t *testing.T) {
	for _, d := range []string{"always", "memory"} {
		t.Run(d, func(t *testing.T) {
			b := openBroker(t, t.TempDir())
			defer b.Close()
			ctx := context.Background()
			b.CreateTopic(ctx, "t", 1, map[string]string{CfgDurability: d})
			ch, stop, err := b.Watch("t", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			select {
			case <-ch:
				t.Fatal("woke before any produce")
			case <-time.After(10 * time.Millisecond):
			}
			b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: "x"}), AcksAll)
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
				t.Fatal("Watch did not wake")
			}
		})
	}
}

func TestAlterConfigsApplies(t *testing.T) {
	b := openBroker(t, t.TempDir())
	defer b.Close()
	ctx := context.Background()
	b.CreateTopic(ctx, "t", 1, nil)
	b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: strings.Repeat("x", 500)}), AcksAll)
	small := "300"
	if err := b.AlterConfigs(ctx, "t", map[string]*string{CfgMaxMessageBytes: &small}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: strings.Repeat("x", 500)}), AcksAll); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("after lowering max.message.bytes: %v", err)
	}
	// Data written before the change is intact.
	if got := values(t, b, "t", 0, 0); len(got) != 1 {
		t.Fatalf("got %d records", len(got))
	}
	if err := b.AlterConfigs(ctx, "t", map[string]*string{CfgMaxMessageBytes: nil}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(ctx, "t", 0, encode(t, batch.BuildOptions{}, recSpec{value: strings.Repeat("x", 500)}), AcksAll); err != nil {
		t.Fatalf("after resetting to the default: %v", err)
	}
}

// TestCreateTopicsBatch creates topics in one call: each succeeds or fails
// alone, and the ones created survive a restart (the metadata is written
// once, for all of them).
func TestCreateTopicsBatch(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	ctx := context.Background()
	if err := b.CreateTopic(ctx, "exists", 1, nil); err != nil {
		t.Fatal(err)
	}
	errs := b.CreateTopics(ctx, []NewTopic{
		{Name: "a", Partitions: 2},
		{Name: "bad name!", Partitions: 1},
		{Name: "exists", Partitions: 1},
		{Name: "b", Partitions: 1, Configs: map[string]string{"retention.ms": "60000"}},
		{Name: "c", Partitions: 0},
		{Name: "d", Partitions: 1, Configs: map[string]string{"retention.ms": "soon"}},
		{Name: "m", Partitions: 1, Configs: map[string]string{"herald.durability": "memory"}},
	})
	for i, want := range []error{nil, ErrInvalidTopic, ErrTopicExists, nil, ErrInvalidPartitions, ErrInvalidConfig, nil} {
		if (want == nil) != (errs[i] == nil) || (want != nil && !errors.Is(errs[i], want)) {
			t.Errorf("topic %d: err %v, want %v", i, errs[i], want)
		}
	}
	b.Close()
	b = openBroker(t, dir)
	defer b.Close()
	for name, parts := range map[string]int{"exists": 1, "a": 2, "b": 1, "m": 1} {
		info, err := b.Topic(name)
		if err != nil || info.Partitions != parts {
			t.Errorf("after a restart %s: %+v %v", name, info, err)
		}
	}
	if cfg, _ := b.DescribeConfigs("b"); !slices.ContainsFunc(cfg, func(e ConfigEntry) bool { return e.Name == "retention.ms" && e.Value == "60000" }) {
		t.Errorf("b's configs after a restart: %+v", cfg)
	}
	for _, name := range []string{"bad name!", "c", "d"} {
		if _, err := b.Topic(name); err == nil {
			t.Errorf("%s exists", name)
		}
	}
}
