package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/commitlog/batch"
)

// benchLogFlags are the raw flags of herald bench log; parse turns them into
// a benchLogPlan or an error naming the bad flag.
type benchLogFlags struct {
	sizes, writers, batches, syncs, suites []string
	duration                               time.Duration
	dir, output                            string
	readRecords                            int
	indexBytes                             string
}

type benchLogPlan struct {
	cells       []appendCell
	suites      map[string]bool
	duration    time.Duration
	dir         string
	json        bool
	readRecords int
	indexBytes  int64
}

type appendCell struct {
	Size    int
	Writers int
	Batch   int
	Sync    commitlog.Durability
}

const (
	suiteAppend  = "append"
	suiteRead    = "read"
	suiteLatency = "latency"
	suiteIndex   = "index"
)

var allSuites = []string{suiteAppend, suiteRead, suiteLatency, suiteIndex}

func newBenchLogCmd() *cobra.Command {
	var f benchLogFlags
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Benchmark the storage engine (commit log) directly, without the network",
		Long: `Benchmark the commit log against a real Store in a scratch directory.

The append grid runs every combination of --size, --writers, --batch and
--sync for --duration each: every writer appends one pre-encoded batch over
and over and times each Append. Then come a sequential read of 100-byte
records decoded with batch.Iter, a comparison of one durable appender's
latency with a bare write+fdatasync of the same bytes, and the memory the
log's indexes take per GiB of log. --run picks among them.

Progress goes to stderr; the results go to stdout as a table or, with
-o json, as one JSON document.`,
		Example: `  herald bench log
  herald bench log --size 1KiB --writers 8 --batch 64 --sync always --run append
  herald bench log -o json --duration 5s > log.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			plan, err := f.parse()
			if err != nil {
				return err
			}
			return runBenchLog(cmd.Context(), plan, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.sizes, "size", []string{"100B", "1KiB"}, "record value sizes (B, KiB or MiB)")
	fl.StringSliceVar(&f.writers, "writers", []string{"1", "8", "64"}, "concurrent appenders")
	fl.StringSliceVar(&f.batches, "batch", []string{"1", "64", "1000"}, "records per appended batch")
	fl.StringSliceVar(&f.syncs, "sync", []string{"always", "interval=10ms", "unsafe-none"}, "durability modes: always, interval=DURATION, unsafe-none")
	fl.StringSliceVar(&f.suites, "run", allSuites, "benchmarks to run: "+strings.Join(allSuites, ", "))
	fl.DurationVar(&f.duration, "duration", 2*time.Second, "how long each benchmark (each grid cell) runs")
	fl.StringVar(&f.dir, "dir", "", "scratch directory (default: a temporary directory, removed afterwards)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	fl.IntVar(&f.readRecords, "read-records", 2_000_000, "records in the log the read benchmark reads")
	fl.StringVar(&f.indexBytes, "index-bytes", "1GiB", "log size for the index memory measurement")
	return cmd
}

func (f *benchLogFlags) parse() (*benchLogPlan, error) {
	p := &benchLogPlan{duration: f.duration, dir: f.dir, readRecords: f.readRecords, suites: map[string]bool{}}
	var errs []error
	bad := func(flag, v, want string) {
		errs = append(errs, fmt.Errorf("invalid --%s %q: want %s", flag, v, want))
	}
	var sizes, writers, batches []int
	var syncs []commitlog.Durability
	for _, s := range f.sizes {
		n, err := parseBytes(s)
		if err != nil || n < 1 || n > 1<<20 {
			bad("size", s, "a size from 1B to 1MiB such as 100B, 1KiB or 1024")
			continue
		}
		sizes = append(sizes, int(n))
	}
	for _, s := range f.writers {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 4096 {
			bad("writers", s, "an integer from 1 to 4096 (for example 1,8,64)")
			continue
		}
		writers = append(writers, n)
	}
	for _, s := range f.batches {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1_000_000 {
			bad("batch", s, "an integer from 1 to 1000000 (for example 1,64,1000)")
			continue
		}
		batches = append(batches, n)
	}
	for _, s := range f.syncs {
		d, err := commitlog.ParseDurability(strings.TrimSpace(s))
		if err != nil || d.Mode == commitlog.SyncMemory {
			bad("sync", s, "always, interval=DURATION (for example interval=10ms) or unsafe-none")
			continue
		}
		syncs = append(syncs, d)
	}
	for _, s := range f.suites {
		s = strings.TrimSpace(s)
		ok := false
		for _, a := range allSuites {
			ok = ok || s == a
		}
		if !ok {
			bad("run", s, "one or more of "+strings.Join(allSuites, ", "))
			continue
		}
		p.suites[s] = true
	}
	if f.duration <= 0 {
		bad("duration", f.duration.String(), "a positive duration such as 2s")
	}
	switch f.output {
	case "table":
	case "json":
		p.json = true
	default:
		bad("output", f.output, "table or json")
	}
	if f.readRecords < 1000 {
		bad("read-records", strconv.Itoa(f.readRecords), "at least 1000")
	}
	if n, err := parseBytes(f.indexBytes); err != nil || n < 16<<20 {
		bad("index-bytes", f.indexBytes, "a size of at least 16MiB such as 1GiB")
	} else {
		p.indexBytes = n
	}
	for _, size := range sizes {
		for _, n := range batches {
			// A record costs its value plus at most ~20 bytes of framing.
			if int64(size+20)*int64(n)+batch.HeaderSize > commitlog.MaxBatchBytesLimit {
				errs = append(errs, fmt.Errorf("invalid --size %s with --batch %d: a batch of %d records of %s exceeds the log's %s batch limit",
					formatBytes(int64(size)), n, n, formatBytes(int64(size)), formatBytes(commitlog.MaxBatchBytesLimit)))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, size := range sizes {
		for _, w := range writers {
			for _, n := range batches {
				for _, d := range syncs {
					p.cells = append(p.cells, appendCell{Size: size, Writers: w, Batch: n, Sync: d})
				}
			}
		}
	}
	return p, nil
}

// parseBytes parses "100", "100B", "1KiB", "4MiB", "1GiB".
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// Results, as printed by -o json.

type benchLogReport struct {
	Date      time.Time       `json:"date"`
	GoVersion string          `json:"go_version"`
	CPUs      int             `json:"cpus"`
	Dir       string          `json:"dir"`
	Duration  string          `json:"duration_per_cell"`
	Append    []appendResult  `json:"append,omitempty"`
	Read      *readResult     `json:"read,omitempty"`
	Latency   *latencyResult  `json:"latency,omitempty"`
	Index     *indexMemResult `json:"index_memory,omitempty"`
}

type appendResult struct {
	Size       string  `json:"size"`
	SizeBytes  int     `json:"size_bytes"`
	Writers    int     `json:"writers"`
	Batch      int     `json:"batch"`
	Sync       string  `json:"sync"`
	Appends    int64   `json:"appends"`
	Records    int64   `json:"records"`
	Seconds    float64 `json:"seconds"`
	RecordsSec float64 `json:"records_per_sec"`
	MBSec      float64 `json:"mb_per_sec"`
	P50us      float64 `json:"append_p50_us"`
	P99us      float64 `json:"append_p99_us"`
	P999us     float64 `json:"append_p999_us"`
	MaxUs      float64 `json:"append_max_us"`
	// SyncRounds counts the log's flush rounds (fsyncs) during the cell;
	// under sync=always, Appends/SyncRounds is how well group commit
	// coalesces.
	SyncRounds      int64   `json:"sync_rounds"`
	AppendsPerRound float64 `json:"appends_per_sync_round"`
}

type readResult struct {
	Size       string  `json:"size"`
	Batch      int     `json:"batch"`
	LogRecords int64   `json:"log_records"`
	Records    int64   `json:"records_read"`
	Seconds    float64 `json:"seconds"`
	RecordsSec float64 `json:"records_per_sec"`
	MBSec      float64 `json:"mb_per_sec"`
}

type latencyResult struct {
	Size         string  `json:"size"`
	Samples      int64   `json:"samples"`
	AppendP50us  float64 `json:"append_p50_us"`
	AppendP99us  float64 `json:"append_p99_us"`
	AppendP999us float64 `json:"append_p999_us"`
	BareP50us    float64 `json:"bare_fdatasync_p50_us"`
	BareP99us    float64 `json:"bare_fdatasync_p99_us"`
	BareP999us   float64 `json:"bare_fdatasync_p999_us"`
	P50Ratio     float64 `json:"p50_ratio"`
	P99Ratio     float64 `json:"p99_ratio"`
}

type indexMemResult struct {
	LogBytes      int64   `json:"log_bytes"`
	Segments      int     `json:"segments"`
	HeapGrowthB   int64   `json:"heap_growth_bytes"`
	HeapKiBPerGiB float64 `json:"heap_growth_kib_per_gib"`
}

func runBenchLog(ctx context.Context, p *benchLogPlan, stdout, stderr io.Writer) (err error) {
	dir := p.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "herald-bench-log-"); err != nil {
			return fmt.Errorf("create scratch dir: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create --dir %s: %w", dir, err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	st, err := commitlog.OpenStore(filepath.Join(dir, "data"), commitlog.StoreOptions{Logger: logger, CleanInterval: -1, Registerer: reg})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	rep := benchLogReport{Date: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Dir: dir, Duration: p.duration.String()}
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }

	if p.suites[suiteAppend] {
		for i, c := range p.cells {
			progress("append %d of %d: size=%s writers=%d batch=%d sync=%s ...", i+1, len(p.cells), formatBytes(int64(c.Size)), c.Writers, c.Batch, c.Sync)
			r, err := runAppendCell(ctx, st, reg, fmt.Sprintf("bench/append-%d", i), c, p.duration)
			if err != nil {
				return err
			}
			line := fmt.Sprintf("    %s records/s, %.1f MB/s, p50 %s, p99 %s", fmtInt(r.RecordsSec), r.MBSec, fmtUs(r.P50us), fmtUs(r.P99us))
			if c.Sync.Mode == commitlog.SyncAlways {
				line += fmt.Sprintf(", %.1f appends per fsync", r.AppendsPerRound)
			}
			progress("%s", line)
			rep.Append = append(rep.Append, r)
		}
	}
	if p.suites[suiteRead] {
		progress("read: filling a log with %d 100-byte records, then reading it for %s ...", p.readRecords, p.duration)
		r, err := runRead(ctx, st, p.readRecords, p.duration)
		if err != nil {
			return err
		}
		progress("    %s records/s, %.1f MB/s", fmtInt(r.RecordsSec), r.MBSec)
		rep.Read = r
	}
	if p.suites[suiteLatency] {
		progress("latency: one appender (always, 1 KiB x 1) alternating with a bare write+fdatasync for %s ...", p.duration)
		r, err := runLatency(ctx, st, filepath.Join(dir, "bare-fsync"), p.duration)
		if err != nil {
			return err
		}
		progress("    append p99 %s, bare fdatasync p99 %s (ratio %.2f)", fmtUs(r.AppendP99us), fmtUs(r.BareP99us), r.P99Ratio)
		rep.Latency = r
	}
	if p.suites[suiteIndex] {
		progress("index memory: filling a %s log and reopening it ...", formatBytes(p.indexBytes))
		r, err := runIndexMem(ctx, filepath.Join(dir, "index"), logger, p.indexBytes)
		if err != nil {
			return err
		}
		progress("    heap grew %.0f KiB per GiB of log", r.HeapKiBPerGiB)
		rep.Index = r
	}
	if p.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printBenchLog(stdout, &rep)
}

// encodeBenchBatch encodes n records with size-byte values and no key.
func encodeBenchBatch(n, size int) ([]byte, error) {
	value := make([]byte, size)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	recs := make([]batch.Rec, n)
	ts := time.Now().UnixMilli()
	for i := range recs {
		recs[i] = batch.Rec{Timestamp: ts, Value: value}
	}
	return batch.Encode(nil, batch.BuildOptions{}, recs)
}

func newLatencyHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Nanosecond), 3) // ns
}

func usAt(h *hdrhistogram.Histogram, q float64) float64 {
	return float64(h.ValueAtQuantile(q)) / 1e3
}

// runAppendCell runs one grid cell on a fresh log, deleted afterwards.
func runAppendCell(ctx context.Context, st *commitlog.Store, reg prometheus.Gatherer, name string, c appendCell, d time.Duration) (appendResult, error) {
	proto, err := encodeBenchBatch(c.Batch, c.Size)
	if err != nil {
		return appendResult{}, err
	}
	l, err := st.OpenLog(name, commitlog.Options{Durability: c.Sync, MaxBatchBytes: max(commitlog.DefaultMaxBatchBytes, len(proto))})
	if err != nil {
		return appendResult{}, err
	}
	type writer struct {
		buf     []byte
		hist    *hdrhistogram.Histogram
		appends int64
		err     error
	}
	ws := make([]*writer, c.Writers)
	for i := range ws {
		// Append rewrites base offsets in place: every writer owns a copy.
		ws[i] = &writer{buf: append([]byte(nil), proto...), hist: newLatencyHist()}
	}
	var wg sync.WaitGroup
	startCh := make(chan struct{})
	rounds0 := syncRounds(reg)
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startCh
			deadline := time.Now().Add(d)
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(deadline) {
					return
				}
				if _, err := l.Append(ctx, w.buf); err != nil {
					w.err = err
					return
				}
				_ = w.hist.RecordValue(int64(time.Since(t0)))
				w.appends++
			}
		}()
	}
	start := time.Now()
	close(startCh)
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	rounds := syncRounds(reg) - rounds0
	if err := l.Close(); err != nil {
		return appendResult{}, err
	}
	if err := st.DeleteLog(name); err != nil {
		return appendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return appendResult{}, err
	}
	hist := newLatencyHist()
	var appends int64
	for _, w := range ws {
		if w.err != nil {
			return appendResult{}, fmt.Errorf("append: %w", w.err)
		}
		hist.Merge(w.hist)
		appends += w.appends
	}
	return appendResult{
		Size: formatBytes(int64(c.Size)), SizeBytes: c.Size, Writers: c.Writers, Batch: c.Batch, Sync: c.Sync.String(),
		Appends: appends, Records: appends * int64(c.Batch), Seconds: elapsed,
		RecordsSec: float64(appends*int64(c.Batch)) / elapsed,
		MBSec:      float64(appends*int64(len(proto))) / elapsed / 1e6,
		P50us:      usAt(hist, 50), P99us: usAt(hist, 99), P999us: usAt(hist, 99.9), MaxUs: float64(hist.Max()) / 1e3,
		SyncRounds: rounds, AppendsPerRound: float64(appends) / float64(max(rounds, 1)),
	}, nil
}

// syncRounds reads the store's flush-round counter, or 0 if it is missing.
func syncRounds(g prometheus.Gatherer) int64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "herald_commitlog_sync_rounds_total" && len(mf.GetMetric()) > 0 {
			return int64(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return 0
}

// runRead fills a log with 100-byte records in batches of 1000 and reads it
// sequentially, decoding every record, for d (starting over at the end).
func runRead(ctx context.Context, st *commitlog.Store, records int, d time.Duration) (*readResult, error) {
	const name, size, n = "bench/read", 100, 1000
	buf, err := encodeBenchBatch(n, size)
	if err != nil {
		return nil, err
	}
	l, err := st.OpenLog(name, commitlog.Options{Durability: commitlog.DurabilityUnsafeNone})
	if err != nil {
		return nil, err
	}
	defer func() {
		l.Close()
		st.DeleteLog(name)
	}()
	for l.EndOffset() < int64(records) {
		if _, err := l.Append(ctx, buf); err != nil {
			return nil, err
		}
	}
	var (
		it    batch.Iter
		dst   = make([]byte, 0, 1<<20)
		off   int64
		read  int64
		bytes int64
		sink  int
	)
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ; i++ {
		if i%64 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			break
		}
		if dst, err = l.Read(ctx, off, 1<<20, dst); err != nil {
			return nil, err
		}
		if len(dst) == 0 {
			off = 0
			continue
		}
		bytes += int64(len(dst))
		for p := 0; p < len(dst); {
			if err := it.Reset(dst[p:]); err != nil {
				return nil, err
			}
			for it.Next() {
				sink += len(it.Record().Value)
				read++
			}
			if err := it.Err(); err != nil {
				return nil, err
			}
			off = it.Header().LastOffset() + 1
			p += it.Header().Size()
		}
	}
	el := time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if sink == 0 {
		return nil, errors.New("read benchmark decoded no records")
	}
	return &readResult{Size: "100B", Batch: n, LogRecords: l.EndOffset(), Records: read, Seconds: el,
		RecordsSec: float64(read) / el, MBSec: float64(bytes) / el / 1e6}, nil
}

// runLatency alternates a durable Append of one 1 KiB record with a bare
// write+fdatasync of the same bytes to a plain file in the same directory,
// so that both see the same disk.
func runLatency(ctx context.Context, st *commitlog.Store, barePath string, d time.Duration) (*latencyResult, error) {
	const name = "bench/latency"
	buf, err := encodeBenchBatch(1, 1<<10)
	if err != nil {
		return nil, err
	}
	l, err := st.OpenLog(name, commitlog.Options{Durability: commitlog.DurabilityAlways})
	if err != nil {
		return nil, err
	}
	defer func() {
		l.Close()
		st.DeleteLog(name)
	}()
	f, err := os.Create(barePath)
	if err != nil {
		return nil, err
	}
	defer os.Remove(barePath)
	defer f.Close()
	ah, bh := newLatencyHist(), newLatencyHist()
	var pos int64
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		t0 := time.Now()
		if _, err := l.Append(ctx, buf); err != nil {
			return nil, err
		}
		t1 := time.Now()
		if _, err := f.WriteAt(buf, pos); err != nil {
			return nil, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, fmt.Errorf("fdatasync %s: %w", barePath, err)
		}
		t2 := time.Now()
		pos += int64(len(buf))
		_ = ah.RecordValue(int64(t1.Sub(t0)))
		_ = bh.RecordValue(int64(t2.Sub(t1)))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &latencyResult{
		Size: "1KiB", Samples: ah.TotalCount(),
		AppendP50us: usAt(ah, 50), AppendP99us: usAt(ah, 99), AppendP999us: usAt(ah, 99.9),
		BareP50us: usAt(bh, 50), BareP99us: usAt(bh, 99), BareP999us: usAt(bh, 99.9),
		P50Ratio: usAt(ah, 50) / usAt(bh, 50), P99Ratio: usAt(ah, 99) / usAt(bh, 99),
	}, nil
}

// runIndexMem writes size bytes of 16 × 1 KiB batches (each just over the
// default index interval, so nearly every batch is indexed: the densest
// index) into its own store, reopens it, makes every segment load its
// indexes, and reports how much the heap grew by opening the log and loading
// them, per GiB of log. That is an upper bound on the index memory: it also
// counts the log's and the segments' own structures. (The commitlog test
// TestIndexMemoryBound counts the index slices alone.)
func runIndexMem(ctx context.Context, dir string, logger *slog.Logger, size int64) (*indexMemResult, error) {
	const name = "bench/index"
	opts := commitlog.Options{Durability: commitlog.DurabilityUnsafeNone, SegmentBytes: 256 << 20}
	buf, err := encodeBenchBatch(16, 1<<10)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	st, err := commitlog.OpenStore(dir, commitlog.StoreOptions{Logger: logger, CleanInterval: -1})
	if err != nil {
		return nil, err
	}
	l, err := st.OpenLog(name, opts)
	if err != nil {
		st.Close()
		return nil, err
	}
	for l.Size() < size && ctx.Err() == nil {
		if _, err := l.Append(ctx, buf); err != nil {
			st.Close()
			return nil, err
		}
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	st, err = commitlog.OpenStore(dir, commitlog.StoreOptions{Logger: logger, CleanInterval: -1})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	heap := func() int64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	l, err = st.OpenLog(name, opts)
	if err != nil {
		return nil, err
	}
	// OffsetForTime past every timestamp visits every segment, loading
	// the indexes of each.
	if _, err := l.OffsetForTime(ctx, math.MaxInt64); err != nil {
		return nil, err
	}
	grown := heap() - before
	runtime.KeepAlive(l)

	logBytes := l.Size()
	return &indexMemResult{
		LogBytes: logBytes, Segments: l.Segments(), HeapGrowthB: grown,
		HeapKiBPerGiB: float64(grown) / 1024 / (float64(logBytes) / (1 << 30)),
	}, nil
}

func fmtUs(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.0fµs", us)
}

// fmtInt formats n with thousands separators.
func fmtInt(n float64) string {
	s := strconv.FormatInt(int64(math.Round(n)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func printBenchLog(w io.Writer, rep *benchLogReport) error {
	fmt.Fprintf(w, "herald bench log  %s  %s  %d CPUs  %s per cell\n", rep.Date.Format(time.RFC3339), rep.GoVersion, rep.CPUs, rep.Duration)
	if len(rep.Append) > 0 {
		fmt.Fprintln(w, "\nAppend")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "size\twriters\tbatch\tsync\trecords/s\tMB/s\tp50\tp99\tappends/fsync\t")
		for _, r := range rep.Append {
			perSync := "-" // fsyncs follow the clock, not the appends
			if r.Sync == commitlog.DurabilityAlways.String() {
				perSync = fmt.Sprintf("%.1f", r.AppendsPerRound)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.1f\t%s\t%s\t%s\t\n", r.Size, r.Writers, r.Batch, r.Sync, fmtInt(r.RecordsSec), r.MBSec, fmtUs(r.P50us), fmtUs(r.P99us), perSync)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r := rep.Read; r != nil {
		fmt.Fprintf(w, "\nSequential read, %s records in batches of %d, decoded: %s records/s, %.1f MB/s (%s records read)\n",
			r.Size, r.Batch, fmtInt(r.RecordsSec), r.MBSec, fmtInt(float64(r.Records)))
	}
	if r := rep.Latency; r != nil {
		fmt.Fprintf(w, "\nDurable append latency, one appender, %s x 1 record (%d samples)\n", r.Size, r.Samples)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tp50\tp99\tp99.9\t")
		fmt.Fprintf(tw, "Append (sync=always)\t%s\t%s\t%s\t\n", fmtUs(r.AppendP50us), fmtUs(r.AppendP99us), fmtUs(r.AppendP999us))
		fmt.Fprintf(tw, "bare write+fdatasync\t%s\t%s\t%s\t\n", fmtUs(r.BareP50us), fmtUs(r.BareP99us), fmtUs(r.BareP999us))
		fmt.Fprintf(tw, "ratio\t%.2f\t%.2f\t\t\n", r.P50Ratio, r.P99Ratio)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r := rep.Index; r != nil {
		fmt.Fprintf(w, "\nIndex memory, %s log in %d segments, every index loaded: heap grew %.0f KiB per GiB of log (%.0f KiB in all)\n",
			formatBytes(r.LogBytes&^(1<<20-1)), r.Segments, r.HeapKiBPerGiB, float64(r.HeapGrowthB)/1024)
	}
	return nil
}
