// Command peers runs the same workloads against Herald and its peers in one
// run and prints one table: Herald (in-process, through the replace
// directive in go.mod), franz-go's kfake, NATS JetStream (embedded
// nats-server) and Redis Streams (a redis-server child process).
//
// This is a separate module so that the peers' code never enters Herald's
// go.mod.
//
//	cd bench/peers && go run . --duration 5s
//
// Workloads, for every --sizes value:
//
//   - produce, durable: producers batching as their client does, every
//     record acknowledged only after an fsync (Herald durability always and
//     acks=all; kfake SyncWrites; JetStream sync_interval always; Redis
//     appendfsync always);
//   - produce, not durable: the same without an fsync per acknowledgement
//     (Herald interval=10ms; kfake without SyncWrites; JetStream's default
//     sync interval; Redis without persistence);
//   - consume: one consumer reads --consume-records records (written first,
//     untimed) from the non-durable variant;
//   - e2e: records at --rate records/s while one consumer reads them;
//     latency is receipt minus the producer's nanosecond stamp in the value.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// result is one measured cell.
type result struct {
	Workload   string  `json:"workload"`
	Size       int     `json:"size"`
	System     string  `json:"system"`
	Records    int64   `json:"records"`
	Seconds    float64 `json:"seconds"`
	RecordsSec float64 `json:"records_per_sec"`
	MBSec      float64 `json:"mb_per_sec"`
	P50us      float64 `json:"p50_us,omitempty"`
	P99us      float64 `json:"p99_us,omitempty"`
	P999us     float64 `json:"p999_us,omitempty"`
	// Ratio is Herald's records/s over the peer's (produce, consume) or
	// Herald's p99 over the peer's (e2e, where lower is better).
	Ratio float64 `json:"ratio_herald_over_peer,omitempty"`
	Load1 float64 `json:"load_avg_1m"`
	Err   string  `json:"error,omitempty"`
}

// cellStats is what a driver measures.
type cellStats struct {
	records int64
	seconds float64
	hist    *hdrhistogram.Histogram // nil: no latency (consume)
}

// system is one server under test in one configuration.
type system struct {
	name    string // as printed
	family  string // herald, kfake, nats, redis
	durable bool
	start   func(ctx context.Context, dir string) (driver, error)
}

// driver runs workloads against a started system.
type driver interface {
	// produce runs producers for d and returns the acknowledged records.
	produce(ctx context.Context, size, producers int, d time.Duration) (cellStats, error)
	// consume writes n records (untimed), then times one consumer reading
	// them all.
	consume(ctx context.Context, size int, n int64) (cellStats, error)
	// e2e produces at rate records/s for d while one consumer reads.
	e2e(ctx context.Context, size, rate int, d time.Duration) (cellStats, error)
	close() error
}

type config struct {
	duration       time.Duration
	sizes          []int
	producers      int
	partitions     int
	rate           int
	consumeRecords map[int]int64
	systems        map[string]bool
	workloads      map[string]bool
	redisPipeline  int
	redisServer    string
	json           bool
}

const (
	wProduceDurable = "produce, durable"
	wProduceFast    = "produce, not durable"
	wConsume        = "consume"
	wE2EDurable     = "e2e, durable"
	wE2EFast        = "e2e, not durable"
)

var workloadOrder = []string{wProduceDurable, wProduceFast, wConsume, wE2EDurable, wE2EFast}
var workloadFlag = map[string]string{"produce": wProduceDurable + "|" + wProduceFast, "consume": wConsume, "e2e": wE2EDurable + "|" + wE2EFast}

func main() {
	var (
		cfg                            config
		sizes, systems, workloads, out string
		consume100, consume1k          int64
	)
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each produce and e2e cell")
	flag.StringVar(&sizes, "sizes", "1KiB,100B", "record value sizes")
	flag.IntVar(&cfg.producers, "producers", 2, "producers (separate clients/connections) in the produce workloads")
	flag.IntVar(&cfg.partitions, "partitions", 8, "partitions of the Kafka topics (JetStream and Redis use one stream)")
	flag.IntVar(&cfg.rate, "rate", 10000, "records/s in the e2e workloads")
	flag.Int64Var(&consume1k, "consume-records-1k", 1_000_000, "records the consume workload reads, for sizes ≥ 1KiB")
	flag.Int64Var(&consume100, "consume-records", 3_000_000, "records the consume workload reads, for smaller sizes")
	flag.StringVar(&systems, "systems", "herald,kfake,nats,redis", "systems to run")
	flag.StringVar(&workloads, "workloads", "produce,consume,e2e", "workloads to run")
	flag.IntVar(&cfg.redisPipeline, "redis-pipeline", 256, "XADDs per pipeline in the Redis produce workload")
	flag.StringVar(&cfg.redisServer, "redis-server", "redis-server", "the redis-server binary")
	flag.StringVar(&out, "o", "table", "output: table or json")
	flag.Parse()

	var errs []error
	for _, s := range strings.Split(sizes, ",") {
		n, err := parseBytes(s)
		if err != nil || n < 8 || n > 1<<20 {
			errs = append(errs, fmt.Errorf("--sizes %q: want sizes from 8B to 1MiB", s))
			continue
		}
		cfg.sizes = append(cfg.sizes, int(n))
	}
	cfg.consumeRecords = map[int]int64{}
	for _, n := range cfg.sizes {
		cfg.consumeRecords[n] = consume100
		if n >= 1024 {
			cfg.consumeRecords[n] = consume1k
		}
	}
	cfg.systems = map[string]bool{}
	for _, s := range strings.Split(systems, ",") {
		switch s = strings.TrimSpace(s); s {
		case "herald", "kfake", "nats", "redis":
			cfg.systems[s] = true
		default:
			errs = append(errs, fmt.Errorf("--systems %q: want herald, kfake, nats or redis", s))
		}
	}
	cfg.workloads = map[string]bool{}
	for _, w := range strings.Split(workloads, ",") {
		ws, ok := workloadFlag[strings.TrimSpace(w)]
		if !ok {
			errs = append(errs, fmt.Errorf("--workloads %q: want produce, consume or e2e", w))
		}
		for _, x := range strings.Split(ws, "|") {
			cfg.workloads[x] = true
		}
	}
	cfg.json = out == "json"
	if out != "table" && out != "json" {
		errs = append(errs, fmt.Errorf("-o %q: want table or json", out))
	}
	if cfg.duration <= 0 || cfg.producers < 1 || cfg.partitions < 1 || cfg.rate < 1 || cfg.redisPipeline < 1 {
		errs = append(errs, errors.New("--duration, --producers, --partitions, --rate and --redis-pipeline must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func allSystems(cfg config) []system {
	return []system{
		{"herald always", "herald", true, heraldSystem(cfg, "always")},
		{"herald interval=10ms", "herald", false, heraldSystem(cfg, "interval=10ms")},
		{"kfake SyncWrites", "kfake", true, kfakeSystem(cfg, true)},
		{"kfake", "kfake", false, kfakeSystem(cfg, false)},
		{"jetstream sync always", "nats", true, natsSystem(true)},
		{"jetstream default", "nats", false, natsSystem(false)},
		{"redis appendfsync always", "redis", true, redisSystem(cfg, true)},
		{"redis no persistence", "redis", false, redisSystem(cfg, false)},
	}
}

func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	date := time.Now().UTC()
	var results []result
	for _, sys := range allSystems(cfg) {
		if !cfg.systems[sys.family] {
			continue
		}
		dir, err := os.MkdirTemp("", "herald-peers-")
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%s: starting in %s\n", sys.name, dir)
		drv, err := sys.start(ctx, dir)
		if err != nil {
			os.RemoveAll(dir)
			return fmt.Errorf("%s: %w", sys.name, err)
		}
		for _, size := range cfg.sizes {
			type cell struct {
				w  string
				fn func() (cellStats, error)
			}
			var cells []cell
			if sys.durable {
				cells = []cell{
					{wProduceDurable, func() (cellStats, error) { return drv.produce(ctx, size, cfg.producers, cfg.duration) }},
					{wE2EDurable, func() (cellStats, error) { return drv.e2e(ctx, size, cfg.rate, cfg.duration) }},
				}
			} else {
				cells = []cell{
					{wProduceFast, func() (cellStats, error) { return drv.produce(ctx, size, cfg.producers, cfg.duration) }},
					{wConsume, func() (cellStats, error) { return drv.consume(ctx, size, cfg.consumeRecords[size]) }},
					{wE2EFast, func() (cellStats, error) { return drv.e2e(ctx, size, cfg.rate, cfg.duration) }},
				}
			}
			for _, c := range cells {
				if !cfg.workloads[c.w] {
					continue
				}
				fmt.Fprintf(stderr, "  %s, %s ...\n", c.w, fmtSize(size))
				st, err := c.fn()
				r := result{Workload: c.w, Size: size, System: sys.name, Load1: loadAvg1()}
				if err != nil {
					r.Err = err.Error()
					fmt.Fprintf(stderr, "    error: %v\n", err)
				} else {
					r.Records, r.Seconds = st.records, st.seconds
					r.RecordsSec = float64(st.records) / st.seconds
					r.MBSec = r.RecordsSec * float64(size) / 1e6
					if st.hist != nil && st.hist.TotalCount() > 0 {
						r.P50us, r.P99us, r.P999us = usAt(st.hist, 50), usAt(st.hist, 99), usAt(st.hist, 99.9)
					}
					fmt.Fprintf(stderr, "    %s records/s, %.1f MB/s, p50 %s, p99 %s (load %.2f)\n",
						fmtInt(r.RecordsSec), r.MBSec, fmtUs(r.P50us), fmtUs(r.P99us), r.Load1)
				}
				results = append(results, r)
				if ctx.Err() != nil {
					break
				}
			}
		}
		if err := drv.close(); err != nil {
			fmt.Fprintf(stderr, "%s: close: %v\n", sys.name, err)
		}
		os.RemoveAll(dir)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	addRatios(results)
	if cfg.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"date": date, "go_version": runtime.Version(), "cpus": runtime.NumCPU(),
			"duration": cfg.duration.String(), "producers": cfg.producers, "partitions": cfg.partitions,
			"rate": cfg.rate, "results": results})
	}
	fmt.Fprintf(stdout, "bench/peers  %s  %s  %d CPUs  %s per cell, %d producers, %d Kafka partitions, e2e at %s records/s, load at end %.2f\n\n",
		date.Format(time.RFC3339), runtime.Version(), runtime.NumCPU(), cfg.duration, cfg.producers, cfg.partitions, fmtInt(float64(cfg.rate)), loadAvg1())
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tsize\tsystem\trecords/s\tMB/s\tp50\tp99\tp99.9\therald/peer\tload\t")
	for _, w := range workloadOrder {
		for _, size := range cfg.sizes {
			for _, r := range results {
				if r.Workload != w || r.Size != size {
					continue
				}
				if r.Err != "" {
					fmt.Fprintf(tw, "%s\t%s\t%s\terror: %s\t\t\t\t\t\t\t\n", w, fmtSize(size), r.System, r.Err)
					continue
				}
				ratio := "-"
				if r.Ratio > 0 {
					ratio = fmt.Sprintf("%.2f×", r.Ratio)
				}
				lat := func(us float64) string {
					if us == 0 {
						return "-"
					}
					return fmtUs(us)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%.2f\t\n", w, fmtSize(size), r.System, fmtInt(r.RecordsSec), r.MBSec,
					lat(r.P50us), lat(r.P99us), lat(r.P999us), ratio, r.Load1)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nherald/peer: Herald's records/s over the peer's for produce and consume (above 1: Herald faster);")
	fmt.Fprintln(stdout, "Herald's p99 over the peer's for e2e (below 1: Herald faster).")
	return nil
}

// addRatios compares every peer's cell with Herald's cell of the same
// workload and size.
func addRatios(rs []result) {
	for i := range rs {
		r := &rs[i]
		if strings.HasPrefix(r.System, "herald") || r.Err != "" {
			continue
		}
		for _, h := range rs {
			if !strings.HasPrefix(h.System, "herald") || h.Workload != r.Workload || h.Size != r.Size || h.Err != "" {
				continue
			}
			if strings.HasPrefix(r.Workload, "e2e") {
				if r.P99us > 0 {
					r.Ratio = h.P99us / r.P99us
				}
			} else if r.RecordsSec > 0 {
				r.Ratio = h.RecordsSec / r.RecordsSec
			}
		}
	}
}

// Helpers shared by the drivers.

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, int64(time.Minute), 3) }

func usAt(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1e3 }

func randomValue(size int) []byte {
	v := make([]byte, size)
	rand.Read(v)
	return v
}

// stamped returns a copy of v with the current time in nanoseconds in its
// first 8 bytes.
func stamped(v []byte) []byte {
	b := append([]byte(nil), v...)
	binary.LittleEndian.PutUint64(b, uint64(time.Now().UnixNano()))
	return b
}

// stampLatency is now minus the stamp in v.
func stampLatency(v []byte, now int64) int64 {
	if len(v) < 8 {
		return 1
	}
	return max(1, now-int64(binary.LittleEndian.Uint64(v)))
}

// pacer spaces n events at rate per second from start by schedule, so the
// rate holds even when a sleep overshoots. wait reports false once the
// schedule passes end.
type pacer struct {
	start, end time.Time
	rate       float64
}

func (p pacer) wait(n int64) bool {
	due := p.start.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	if due.After(p.end) {
		return false
	}
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
	return true
}

func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func fmtSize(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
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

func fmtInt(n float64) string {
	s := strconv.FormatInt(int64(math.Round(n)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 && c != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
