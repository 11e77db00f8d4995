package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/kafka"
	"github.com/heraldhq/herald/server"
)

// The Kafka-protocol benchmarks: herald bench produce, consume and e2e drive
// a server through franz-go's kgo client, exactly as an application would.

const (
	bkModeProduce = "produce"
	bkModeConsume = "consume"
	bkModeE2E     = "e2e"
)

// newBenchKafkaCmds returns the Kafka-protocol benchmark subcommands.
func newBenchKafkaCmds() []*cobra.Command {
	return []*cobra.Command{
		newBenchKafkaCmd(bkModeProduce, "Benchmark producing over the Kafka protocol (franz-go)",
			`Producers (separate kgo clients) send --records records (or produce for
--duration) as fast as the server acknowledges them. Latency is the time from
Produce to the record's promise callback.`,
			`  herald bench produce
  herald bench produce --record-size 1KiB --partitions 8 --producers 2 --duration 10s --acks all --durability always
  herald bench produce --brokers 127.0.0.1:9092 --partitions 100 -o json`),
		newBenchKafkaCmd(bkModeConsume, "Benchmark consuming over the Kafka protocol (franz-go)",
			`Fills the topic with --records records (unless --topic names a topic that
already holds records, which are read instead), then one kgo client reads
every partition from its start offset to the end offsets seen before
reading. Only the reading is timed.`,
			`  herald bench consume --record-size 100B --records 5000000
  herald bench consume --brokers 127.0.0.1:9092 --topic events`),
		newBenchKafkaCmd(bkModeE2E, "Benchmark end-to-end latency over the Kafka protocol (franz-go)",
			`Producers send records at --rate records/s while one consumer reads them.
Each record's first 8 bytes hold the bkProducer's clock in nanoseconds when it
was produced (the Kafka record timestamp has only millisecond precision);
latency is the consumer's clock at receipt minus that stamp.`,
			`  herald bench e2e --rate 10000 --duration 10s --durability interval=5ms
  herald bench e2e --rate 10000 --duration 10s --durability always --acks all`),
		newBenchPartitionsCmd(),
	}
}

type benchKafkaFlags struct {
	brokers, topic, recordSize, acks, durability, batchBytes, output, dir, compression, cpuProfile string
	partitions, producers, rate, rssPID, gogc                                                      int
	records                                                                                        int64
	duration, linger                                                                               time.Duration
	copyFetches                                                                                    bool
}

// benchKafkaPlan is a parsed, validated benchmark run.
type benchKafkaPlan struct {
	mode        string
	brokers     []string // nil: start an in-process server
	topic       string
	topicGiven  bool
	partitions  int
	recordSize  int
	records     int64
	duration    time.Duration
	producers   int
	acks        kgo.Acks
	acksName    string
	durability  commitlog.Durability
	linger      time.Duration
	batchBytes  int32
	compression kgo.CompressionCodec
	compName    string
	rate        int
	json        bool
	dir         string
	rssPID      int
	cpuProfile  string
	copyFetches bool      // in-process server: fetches copied, not sent from files
	consumeFill bool      // consume: produce --records before reading
	gogc        int       // debug.SetGCPercent for the run; < 0: leave it
	security    []kgo.Opt // TLS and SASL for --brokers (--tls-ca, --user, ...)
}

// bkNewClient makes a client of dial (the seeds, TLS and SASL options that
// reach the server) and opts.
func bkNewClient(dial []kgo.Opt, opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(slices.Clone(dial), opts...)...)
}

func newBenchKafkaCmd(mode, short, long, example string) *cobra.Command {
	var f benchKafkaFlags
	cmd := &cobra.Command{
		Use:   mode,
		Short: short,
		Long: long + `

Without --brokers, an in-process Herald server is started on a temporary
directory with --durability and removed afterwards, so the benchmark needs
nothing else. Progress goes to stderr; the results go to stdout as a table
or, with -o json, as one JSON document. MB/s counts record values (10^6
bytes).`,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.parse(mode, cmd.Flags().Changed("records"), cmd.Flags().Changed("duration"), securityOf(cmd))
			if err != nil {
				return err
			}
			rep, err := runBenchKafka(cmd.Context(), p, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return bkWrite(cmd.OutOrStdout(), p.json, rep)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.brokers, "brokers", "", "comma-separated Kafka bootstrap addresses (default: start an in-process server)")
	fl.StringVar(&f.topic, "topic", "", "topic (default: a fresh one, created with --partitions)")
	fl.IntVar(&f.partitions, "partitions", 8, "partitions of the topic created")
	fl.StringVar(&f.recordSize, "record-size", "1KiB", "record value size (B, KiB or MiB)")
	fl.Int64Var(&f.records, "records", 0, "records to produce (default 1000000 for consume; produce and e2e run for --duration)")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long to produce, unless --records is given")
	fl.IntVar(&f.producers, "producers", 2, "producers, each its own kgo client")
	fl.StringVar(&f.acks, "acks", "all", "acks: all, 1 or 0")
	fl.StringVar(&f.durability, "durability", "always", "in-process server's durability: always, interval=DURATION or unsafe-none")
	fl.DurationVar(&f.linger, "linger", 0, "bkProducer linger (kgo ProducerLinger)")
	fl.StringVar(&f.compression, "compression", "none", "producer batch compression: none, snappy, lz4 or zstd (kgo's default is snappy; values are random bytes)")
	fl.StringVar(&f.batchBytes, "batch-bytes", "1MiB", "bkProducer's maximum record batch size (kgo ProducerBatchMaxBytes)")
	if mode == bkModeE2E {
		fl.IntVar(&f.rate, "rate", 10000, "records/s, all producers together")
		// NB: at the default 100 the bench's own clients collect garbage
		// ~15 times a second at 10,000 records/s (a small live heap, 20 MB/s
		// of fetched and produced bytes), and each cycle's assists and
		// stop-the-world phases land in the measured latency.
		fl.IntVar(&f.gogc, "gogc", 400, "this process's GC target percentage during the run (GOGC, if set in the environment, wins; -1: the runtime's)")
	} else {
		fl.IntVar(&f.rate, "rate", 0, "records/s, all producers together (0: as fast as possible)")
	}
	if mode != bkModeE2E {
		fl.IntVar(&f.gogc, "gogc", -1, "this process's GC target percentage during the run (GOGC, if set in the environment, wins; -1: the runtime's)")
	}
	fl.IntVar(&f.rssPID, "rss-pid", 0, "report the peak VmRSS of this process (e.g. a herald serve) during the run")
	fl.StringVar(&f.dir, "dir", "", "in-process server's data directory (default: a temporary directory, removed afterwards)")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured phase (this process: clients and an in-process server) to this file")
	fl.BoolVar(&f.copyFetches, "copy-fetches", false, "in-process server: copy fetched records through memory instead of sending them from segment files with sendfile (to compare the two)")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func (f *benchKafkaFlags) parse(mode string, recordsSet, durationSet bool, security *clientSecurity) (*benchKafkaPlan, error) {
	p := &benchKafkaPlan{mode: mode, topic: f.topic, topicGiven: f.topic != "", partitions: f.partitions,
		records: f.records, duration: f.duration, producers: f.producers, linger: f.linger, rate: f.rate,
		dir: f.dir, rssPID: f.rssPID, cpuProfile: f.cpuProfile, copyFetches: f.copyFetches, gogc: f.gogc}
	var errs []error
	bad := func(flag, v, want string) {
		errs = append(errs, fmt.Errorf("invalid --%s %q: want %s", flag, v, want))
	}
	if f.brokers != "" {
		for _, b := range strings.Split(f.brokers, ",") {
			if b = strings.TrimSpace(b); b != "" {
				p.brokers = append(p.brokers, b)
			}
		}
		if f.durability != "always" {
			bad("durability", f.durability, "no --durability with --brokers: the server's own setting applies")
		}
		sec, err := security.kgoOpts()
		if err != nil {
			errs = append(errs, err)
		}
		p.security = sec
	} else if security.user != "" || security.tls || security.tlsCA != "" {
		errs = append(errs, errors.New("--user and --tls* need --brokers: the in-process server has neither"))
	}
	if p.topic == "" {
		p.topic = fmt.Sprintf("herald-bench-%s-%d", mode, time.Now().UnixNano())
	} else if err := broker.ValidateTopicName(p.topic); err != nil {
		bad("topic", p.topic, "a valid topic name")
	}
	if f.partitions < 1 || f.partitions > 100_000 {
		bad("partitions", strconv.Itoa(f.partitions), "an integer from 1 to 100000")
	}
	n, err := parseBytes(f.recordSize)
	switch {
	case err != nil || n < 8 && mode == bkModeE2E:
		bad("record-size", f.recordSize, "a size from 8B (e2e stamps 8 bytes) to 1MiB such as 100B or 1KiB")
	case n < 1 || n > 1<<20:
		bad("record-size", f.recordSize, "a size from 1B to 1MiB such as 100B or 1KiB")
	default:
		p.recordSize = int(n)
	}
	if bb, err := parseBytes(f.batchBytes); err != nil || bb < 1<<10 || bb > 64<<20 {
		bad("batch-bytes", f.batchBytes, "a size from 1KiB to 64MiB such as 1MiB")
	} else {
		p.batchBytes = int32(bb)
	}
	if f.producers < 1 || f.producers > 1024 {
		bad("producers", strconv.Itoa(f.producers), "an integer from 1 to 1024")
	}
	if recordsSet && f.records < 1 {
		bad("records", strconv.FormatInt(f.records, 10), "a positive number")
	}
	if recordsSet && durationSet {
		errs = append(errs, errors.New("give --records or --duration, not both"))
	}
	if !recordsSet && mode == bkModeConsume {
		p.records = 1_000_000
	}
	if p.records == 0 && f.duration <= 0 {
		bad("duration", f.duration.String(), "a positive duration such as 10s")
	}
	switch f.acks {
	case "all", "-1":
		p.acks, p.acksName = kgo.AllISRAcks(), "all"
	case "1":
		p.acks, p.acksName = kgo.LeaderAck(), "1"
	case "0":
		p.acks, p.acksName = kgo.NoAck(), "0"
	default:
		bad("acks", f.acks, "all, 1 or 0")
	}
	if mode == bkModeE2E && p.acksName == "0" {
		bad("acks", f.acks, "all or 1 for e2e (acks=0 loses the flush barrier)")
	}
	if d, err := commitlog.ParseDurability(f.durability); err != nil || d.Mode == commitlog.SyncMemory {
		bad("durability", f.durability, "always, interval=DURATION (for example interval=5ms) or unsafe-none")
	} else {
		p.durability = d
	}
	p.compName = f.compression
	switch f.compression {
	case "none":
		p.compression = kgo.NoCompression()
	case "snappy":
		p.compression = kgo.SnappyCompression()
	case "lz4":
		p.compression = kgo.Lz4Compression()
	case "zstd":
		p.compression = kgo.ZstdCompression()
	default:
		bad("compression", f.compression, "none, snappy, lz4 or zstd")
	}
	if f.linger < 0 {
		bad("linger", f.linger.String(), "a duration of 0 or more")
	}
	if f.rate < 0 || mode == bkModeE2E && f.rate == 0 {
		bad("rate", strconv.Itoa(f.rate), "a positive number of records/s")
	}
	switch f.output {
	case "table":
	case "json":
		p.json = true
	default:
		bad("output", f.output, "table or json")
	}
	p.consumeFill = mode == bkModeConsume
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// benchKafkaReport is the result of one run, as printed by -o json.
type benchKafkaReport struct {
	Mode        string    `json:"mode"`
	Date        time.Time `json:"date"`
	GoVersion   string    `json:"go_version"`
	CPUs        int       `json:"cpus"`
	Load1       float64   `json:"load_avg_1m"` // /proc/loadavg when the run ended
	Server      string    `json:"server"`      // "in-process" or the --brokers list
	Durability  string    `json:"durability,omitempty"`
	Topic       string    `json:"topic"`
	Partitions  int       `json:"partitions"`
	RecordSize  int       `json:"record_size"`
	Producers   int       `json:"producers"`
	Acks        string    `json:"acks"`
	Linger      string    `json:"linger"`
	BatchBytes  int32     `json:"batch_bytes"`
	Compression string    `json:"compression"`
	Rate        int       `json:"rate,omitempty"`
	GOGC        string    `json:"gogc"` // of the bench process during the run

	// Produced counts records acknowledged to the producers (for consume,
	// those written to fill the topic); Consumed counts records read.
	Produced   int64   `json:"produced"`
	ProduceErr int64   `json:"produce_errors"`
	Consumed   int64   `json:"consumed"`
	Seconds    float64 `json:"seconds"` // of the measured phase
	RecordsSec float64 `json:"records_per_sec"`
	MBSec      float64 `json:"mb_per_sec"`
	// Latency of the measured phase: produce, promise callback − Produce;
	// e2e, consumer receipt − stamp at produce. None for consume.
	Latency *bkLatency `json:"latency,omitempty"`
	// PeakRSSMiB is the peak VmRSS of --rss-pid during the run.
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"`
}

type bkLatency struct {
	Samples int64   `json:"samples"`
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	P999us  float64 `json:"p999_us"`
	MaxUs   float64 `json:"max_us"`
}

func bkQuantiles(h *hdrhistogram.Histogram) *bkLatency {
	return &bkLatency{Samples: h.TotalCount(), P50us: usAt(h, 50), P99us: usAt(h, 99), P999us: usAt(h, 99.9),
		MaxUs: float64(h.Max()) / 1e3}
}

// bkStartServer starts an in-process Herald, wired as herald serve wires
// it, on a loopback port.
func bkStartServer(ctx context.Context, dir string, dur commitlog.Durability, copyFetches bool, logger *slog.Logger) (*server.Server, error) {
	return server.Start(ctx, server.Config{
		Broker: broker.Config{DataDir: dir, Durability: dur},
		Kafka:  kafka.Config{CopyFetches: copyFetches},
		Logger: logger, Registerer: prometheus.NewRegistry(),
	})
}

func runBenchKafka(ctx context.Context, p *benchKafkaPlan, stderr io.Writer) (_ *benchKafkaReport, err error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	rep := &benchKafkaReport{Mode: p.mode, Date: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		Topic: p.topic, Partitions: p.partitions, RecordSize: p.recordSize, Producers: p.producers, Acks: p.acksName,
		Linger: p.linger.String(), BatchBytes: p.batchBytes, Compression: p.compName, Rate: p.rate}
	rep.GOGC = os.Getenv("GOGC")
	if rep.GOGC == "" {
		cur := debug.SetGCPercent(100) // NB: reads it; put back at once
		debug.SetGCPercent(cur)
		if p.gogc >= 0 {
			defer debug.SetGCPercent(debug.SetGCPercent(p.gogc))
			cur = p.gogc
		}
		rep.GOGC = strconv.Itoa(cur)
	}
	seeds := p.brokers
	if seeds == nil {
		dir := p.dir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "herald-bench-kafka-"); err != nil {
				return nil, fmt.Errorf("create scratch dir: %w", err)
			}
			defer os.RemoveAll(dir)
		}
		logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		srv, err := bkStartServer(ctx, dir, p.durability, p.copyFetches, logger)
		if err != nil {
			return nil, err
		}
		defer func() {
			if cerr := srv.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("close in-process server: %w", cerr)
			}
		}()
		seeds = []string{srv.KafkaAddr()}
		rep.Server, rep.Durability = "in-process", p.durability.String()
		progress("in-process herald on %s, %s, durability %s", srv.KafkaAddr(), dir, p.durability)
	} else {
		rep.Server = strings.Join(seeds, ",")
	}

	dial := append(slices.Clone(p.security), kgo.SeedBrokers(seeds...))
	adm, err := bkNewClient(dial)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	parts, err := bkEnsureTopic(ctx, kadm.NewClient(adm), p.topic, p.partitions)
	if err != nil {
		return nil, err
	}
	rep.Partitions = parts

	var rss *bkRSSWatcher
	if p.rssPID > 0 {
		rss = bkWatchRSS(p.rssPID)
		defer func() { rep.PeakRSSMiB = rss.stop() }()
	}
	defer func() { rep.Load1 = bkLoadAvg1() }()

	// startProfile starts the CPU profile, if asked for, at the start of
	// the measured phase; the deferred stop ends it.
	stopProfile := func() {}
	defer func() { stopProfile() }()
	startProfile := func() error {
		if p.cpuProfile == "" {
			return nil
		}
		pf, err := os.Create(p.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			pf.Close()
			return err
		}
		stopProfile = func() {
			pprof.StopCPUProfile()
			pf.Close()
		}
		return nil
	}

	switch p.mode {
	case bkModeProduce:
		progress("produce: %d producers, %s records, acks=%s, %d partitions ...", p.producers, bkSize(p.recordSize), p.acksName, parts)
		if err := startProfile(); err != nil {
			return nil, err
		}
		st, err := bkRunProducers(ctx, dial, p, false, progress)
		if err != nil {
			return nil, err
		}
		rep.Produced, rep.ProduceErr, rep.Seconds = st.acked, st.errs, st.seconds
		rep.Latency = bkQuantiles(st.hist)
		rep.RecordsSec = float64(st.acked) / st.seconds
	case bkModeConsume:
		kad := kadm.NewClient(adm)
		starts, ends, total, err := bkOffsets(ctx, kad, p.topic)
		if err != nil {
			return nil, err
		}
		if total == 0 || !p.topicGiven {
			progress("consume: filling %s with %s records of %s ...", p.topic, fmtInt(float64(p.records)), bkSize(p.recordSize))
			st, err := bkRunProducers(ctx, dial, p, false, progress)
			if err != nil {
				return nil, err
			}
			rep.Produced, rep.ProduceErr = st.acked, st.errs
			if starts, ends, total, err = bkOffsets(ctx, kad, p.topic); err != nil {
				return nil, err
			}
		}
		progress("consume: reading %s records from %d partitions ...", fmtInt(float64(total)), len(ends))
		if err := startProfile(); err != nil {
			return nil, err
		}
		n, secs, err := bkRunConsumer(ctx, dial, p.topic, starts, ends, total, nil, progress)
		if err != nil {
			return nil, err
		}
		rep.Consumed, rep.Seconds = n, secs
		rep.RecordsSec = float64(n) / secs
	case bkModeE2E:
		_, ends, _, err := bkOffsets(ctx, kadm.NewClient(adm), p.topic)
		if err != nil {
			return nil, err
		}
		progress("e2e: %s records/s of %s from %d producers, acks=%s, one consumer ...", fmtInt(float64(p.rate)), bkSize(p.recordSize), p.producers, p.acksName)
		hist := newLatencyHist()
		var produced atomic.Int64
		produced.Store(-1) // unknown until the producers finish
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		type consumed struct {
			n    int64
			secs float64
			err  error
		}
		cch := make(chan consumed, 1)
		ready := make(chan struct{})
		go func() {
			n, secs, err := bkRunConsumerUntil(cctx, dial, p.topic, ends, &produced, hist, ready)
			cch <- consumed{n, secs, err}
		}()
		select { // let the consumer connect and issue its first fetch
		case <-ready:
		case <-time.After(10 * time.Second):
		}
		if err := startProfile(); err != nil {
			return nil, err
		}
		st, err := bkRunProducers(ctx, dial, p, true, progress)
		if err != nil {
			return nil, err
		}
		produced.Store(st.acked)
		var c consumed
		select {
		case c = <-cch:
		case <-time.After(30 * time.Second):
			cancel()
			c = <-cch
			if c.err == nil {
				c.err = fmt.Errorf("e2e: consumer read %d of %d records within 30s of the last produce", c.n, st.acked)
			}
		}
		if c.err != nil {
			return nil, c.err
		}
		rep.Produced, rep.ProduceErr, rep.Consumed, rep.Seconds = st.acked, st.errs, c.n, st.seconds
		rep.RecordsSec = float64(c.n) / st.seconds
		rep.Latency = bkQuantiles(hist)
	}
	n := rep.Produced
	if p.mode != bkModeProduce {
		n = rep.Consumed
	}
	rep.MBSec = float64(n) * float64(p.recordSize) / rep.Seconds / 1e6
	return rep, nil
}

// bkEnsureTopic creates topic with n partitions unless it exists, and
// returns its partition count.
func bkEnsureTopic(ctx context.Context, adm *kadm.Client, topic string, n int) (int, error) {
	resp, err := adm.CreateTopic(ctx, int32(n), 1, nil, topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		md, err := adm.ListTopics(ctx, topic)
		if err == nil {
			if td, ok := md[topic]; ok && td.Err == nil && len(td.Partitions) > 0 {
				return len(td.Partitions), nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("topic %s: not in metadata after 10s (%v)", topic, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bkOffsets lists every partition's start and end offsets and the records
// between them.
func bkOffsets(ctx context.Context, adm *kadm.Client, topic string) (starts, ends map[int32]int64, total int64, err error) {
	so, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = so.Error()
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	eo, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = eo.Error()
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	starts, ends = map[int32]int64{}, map[int32]int64{}
	so.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	eo.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset; total += o.Offset - starts[o.Partition] })
	return starts, ends, total, nil
}

type bkProduceStats struct {
	acked, errs int64
	seconds     float64
	hist        *hdrhistogram.Histogram
}

// bkRunProducers runs p.producers kgo clients, each producing its share of
// p.records (or for p.duration) at its share of p.rate, and waits until every
// record is acknowledged. stamp writes the produce time in nanoseconds into
// each record's first 8 bytes (a fresh value per record); otherwise all
// records share one value.
func bkRunProducers(ctx context.Context, dial []kgo.Opt, p *benchKafkaPlan, stamp bool, progress func(string, ...any)) (bkProduceStats, error) {
	// Random bytes: the values must not compress to nothing if
	// --compression is set.
	value := make([]byte, p.recordSize)
	rand.Read(value)
	type bkProducer struct {
		cl   *kgo.Client
		mu   sync.Mutex
		hist *hdrhistogram.Histogram
	}
	values := sync.Pool{New: func() any { v := append([]byte(nil), value...); return &v }}
	var acked, errs, sent atomic.Int64
	var firstErr atomic.Value
	ps := make([]*bkProducer, p.producers)
	for i := range ps {
		opts := []kgo.Opt{kgo.DefaultProduceTopic(p.topic), kgo.RequiredAcks(p.acks),
			kgo.ProducerLinger(p.linger), kgo.ProducerBatchMaxBytes(p.batchBytes),
			kgo.ProducerBatchCompression(p.compression), kgo.RecordRetries(3), kgo.ProduceRequestTimeout(30 * time.Second)}
		if p.acksName != "all" {
			opts = append(opts, kgo.DisableIdempotentWrite())
		}
		cl, err := bkNewClient(dial, opts...)
		if err != nil {
			for _, q := range ps[:i] {
				q.cl.Close()
			}
			return bkProduceStats{}, err
		}
		ps[i] = &bkProducer{cl: cl, hist: newLatencyHist()}
	}
	defer func() {
		for _, q := range ps {
			q.cl.Close()
		}
	}()

	stop := bkStartProgress(progress, "produced", &acked)
	defer stop()
	start := time.Now()
	deadline := start.Add(p.duration)
	var wg sync.WaitGroup
	for i, q := range ps {
		quota := p.records / int64(len(ps))
		if int64(i) < p.records%int64(len(ps)) {
			quota++
		}
		rate := float64(p.rate) / float64(len(ps))
		cb := func(r *kgo.Record, err error) {
			if stamp {
				// NB: kgo is done with the record: recycle its value
				// (10 MB/s of garbage at 10,000 records/s of 1 KiB).
				values.Put(&r.Value)
			}
			if err != nil {
				errs.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			acked.Add(1)
			q.mu.Lock()
			_ = q.hist.RecordValue(int64(time.Since(r.Timestamp)))
			q.mu.Unlock()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := int64(0); ctx.Err() == nil; n++ {
				if p.records > 0 && n >= quota {
					break
				}
				if p.records == 0 && n%64 == 0 && time.Now().After(deadline) {
					break
				}
				if rate > 0 {
					// Pace by schedule, not by sleeps between records, so
					// the rate holds even when a sleep overshoots.
					due := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						if p.records == 0 && due.After(deadline) {
							break
						}
						time.Sleep(d)
					}
				}
				r := &kgo.Record{Value: value}
				if stamp {
					r.Value = *values.Get().(*[]byte)
				}
				r.Timestamp = time.Now() // kept in memory with ns precision for the callback
				if stamp {
					binary.LittleEndian.PutUint64(r.Value, uint64(r.Timestamp.UnixNano()))
				}
				sent.Add(1)
				q.cl.Produce(ctx, r, cb)
			}
			if err := q.cl.Flush(ctx); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	stop()
	if err := ctx.Err(); err != nil {
		return bkProduceStats{}, err
	}
	st := bkProduceStats{acked: acked.Load(), errs: errs.Load(), seconds: secs, hist: newLatencyHist()}
	for _, q := range ps {
		st.hist.Merge(q.hist)
	}
	if st.errs > 0 {
		return st, fmt.Errorf("produce: %d of %d records failed, first: %v", st.errs, sent.Load(), firstErr.Load())
	}
	if st.acked != sent.Load() {
		return st, fmt.Errorf("produce: %d records sent, %d acknowledged", sent.Load(), st.acked)
	}
	return st, nil
}

func bkConsumerOpts(topic string, offsets map[int32]int64) []kgo.Opt {
	m := map[int32]kgo.Offset{}
	for part, o := range offsets {
		m[part] = kgo.NewOffset().At(o)
	}
	return []kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: m}),
		kgo.FetchMaxBytes(64 << 20), kgo.FetchMaxPartitionBytes(8 << 20), kgo.FetchMaxWait(500 * time.Millisecond)}
}

// bkRunConsumer reads every partition from starts to ends with one kgo
// client and returns the records read and the seconds it took.
func bkRunConsumer(ctx context.Context, dial []kgo.Opt, topic string, starts, ends map[int32]int64, total int64, hist *hdrhistogram.Histogram, progress func(string, ...any)) (int64, float64, error) {
	cl, err := bkNewClient(dial, bkConsumerOpts(topic, starts)...)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	var n atomic.Int64
	stop := bkStartProgress(progress, "consumed", &n)
	defer stop()
	left, done := 0, map[int32]bool{}
	for part, e := range ends {
		if e > starts[part] {
			left++
		} else {
			done[part] = true
		}
	}
	start := time.Now()
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n.Load(), 0, err
		}
		var ferr error
		fs.EachError(func(t string, part int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, part, err) })
		if ferr != nil {
			return n.Load(), 0, ferr
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			n.Add(int64(len(fp.Records)))
			if !done[fp.Partition] && fp.Records[len(fp.Records)-1].Offset+1 >= ends[fp.Partition] {
				done[fp.Partition] = true
				left--
			}
		})
	}
	secs := time.Since(start).Seconds()
	if got := n.Load(); got < total {
		return got, secs, fmt.Errorf("consume: read %d of %d records", got, total)
	}
	return n.Load(), secs, nil
}

// bkRunConsumerUntil reads from offsets until it has read *want records
// (-1 while unknown), recording each record's latency from the nanosecond
// stamp in its first 8 bytes. It closes ready after its first fetch is sent.
func bkRunConsumerUntil(ctx context.Context, dial []kgo.Opt, topic string, offsets map[int32]int64, want *atomic.Int64, hist *hdrhistogram.Histogram, ready chan<- struct{}) (int64, float64, error) {
	cl, err := bkNewClient(dial, bkConsumerOpts(topic, offsets)...)
	if err != nil {
		close(ready)
		return 0, 0, err
	}
	defer cl.Close()
	var n int64
	start := time.Now()
	readyOnce := sync.OnceFunc(func() { close(ready) })
	defer readyOnce()
	for {
		if w := want.Load(); w >= 0 && n >= w {
			return n, time.Since(start).Seconds(), nil
		}
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		readyOnce()
		if err := ctx.Err(); err != nil {
			return n, 0, err
		}
		var ferr error
		fs.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("fetch %s/%d: %w", t, part, err)
			}
		})
		if ferr != nil {
			return n, 0, ferr
		}
		now := time.Now().UnixNano()
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if len(r.Value) >= 8 {
				_ = hist.RecordValue(max(1, now-int64(binary.LittleEndian.Uint64(r.Value))))
			}
		})
	}
}

// bkStartProgress prints *n and its rate to progress every second until the
// returned stop is called (stop may be called more than once).
func bkStartProgress(progress func(string, ...any), what string, n *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastT := n.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				cur := n.Load()
				progress("    %s %s records, %s records/s", what, fmtInt(float64(cur)), fmtInt(float64(cur-last)/now.Sub(lastT).Seconds()))
				last, lastT = cur, now
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// bkRSSWatcher samples a process's VmRSS every 50 ms and keeps the peak.
type bkRSSWatcher struct {
	done chan struct{}
	peak chan float64
}

func bkWatchRSS(pid int) *bkRSSWatcher {
	w := &bkRSSWatcher{done: make(chan struct{}), peak: make(chan float64, 1)}
	go func() {
		var peak float64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if kb, err := bkVmRSSKiB(pid); err == nil {
				peak = max(peak, float64(kb)/1024)
			}
			select {
			case <-w.done:
				w.peak <- peak
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *bkRSSWatcher) stop() float64 {
	close(w.done)
	return <-w.peak
}

// bkVmRSSKiB reads VmRSS from /proc/PID/status.
func bkVmRSSKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// bkLoadAvg1 is the 1-minute load average, or -1 if unknown.
func bkLoadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

func bkSize(n int) string { return formatBytes(int64(n)) }

func bkWrite(w io.Writer, asJSON bool, r *benchKafkaReport) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	server := r.Server
	if r.Durability != "" {
		server += ", durability " + r.Durability
	}
	fmt.Fprintf(w, "herald bench %s  %s  %s  %d CPUs  load %.2f  server %s\n", r.Mode, r.Date.Format(time.RFC3339), r.GoVersion, r.CPUs, r.Load1, server)
	fmt.Fprintf(w, "topic %s: %d partitions, %s records, %d producers, acks=%s, linger %s, batch %s, compression %s",
		r.Topic, r.Partitions, bkSize(r.RecordSize), r.Producers, r.Acks, r.Linger, bkSize(int(r.BatchBytes)), r.Compression)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", rate %s/s", fmtInt(float64(r.Rate)))
	}
	fmt.Fprintf(w, ", GOGC %s", r.GOGC)
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tproduced\tconsumed\tseconds\trecords/s\tMB/s\tp50\tp99\tp99.9\tmax\t")
	lat := []string{"-", "-", "-", "-"}
	if l := r.Latency; l != nil && l.Samples > 0 {
		lat = []string{fmtUs(l.P50us), fmtUs(l.P99us), fmtUs(l.P999us), fmtUs(l.MaxUs)}
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%.1f\t%s\t\n", r.Mode, fmtInt(float64(r.Produced)), fmtInt(float64(r.Consumed)),
		r.Seconds, fmtInt(r.RecordsSec), r.MBSec, strings.Join(lat, "\t"))
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.PeakRSSMiB > 0 {
		fmt.Fprintf(w, "\npeak VmRSS of the watched process: %.1f MiB\n", r.PeakRSSMiB)
	}
	return nil
}

// herald bench partitions: many partitions on one herald serve process, and
// how long that server takes to restart.

type bkPartitionsReport struct {
	Date            time.Time `json:"date"`
	GoVersion       string    `json:"go_version"`
	CPUs            int       `json:"cpus"`
	Load1           float64   `json:"load_avg_1m"`
	Topics          int       `json:"topics"`
	Partitions      int       `json:"partitions"`
	FirstStartSec   float64   `json:"first_start_seconds"`
	CreateSec       float64   `json:"create_seconds"`
	ProduceSec      float64   `json:"produce_seconds"`
	OpenFDs         int       `json:"open_fds"`
	FDLimit         string    `json:"fd_limit"`
	RSSMiB          float64   `json:"rss_mib"`
	ShutdownSec     float64   `json:"shutdown_seconds"`
	RestartReadySec float64   `json:"restart_ready_seconds"`
	OpenFDsRestart  int       `json:"open_fds_after_restart"`
	RecordsAfter    int64     `json:"records_after_restart"`
}

func newBenchPartitionsCmd() *cobra.Command {
	var (
		topics, perTopic int
		herald, dir, out string
	)
	cmd := &cobra.Command{
		Use:   "partitions",
		Short: "Open many partitions on one herald serve, then time its restart",
		Long: `Starts herald serve (this binary, or --herald) on a scratch directory,
creates --topics topics of --partitions-per-topic partitions, produces one
record (acks=all) to each partition, counts the server's open file
descriptors, stops it with SIGTERM, starts it again and times how long it
takes until /readyz answers 200. It then checks every record is still there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out != "table" && out != "json" {
				return fmt.Errorf("invalid --output %q: want table or json", out)
			}
			if topics < 1 || perTopic < 1 {
				return errors.New("--topics and --partitions-per-topic must be positive")
			}
			rep, err := bkRunPartitions(cmd.Context(), herald, dir, topics, perTopic, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if out == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "herald bench partitions  %s  %s  %d CPUs  load %.2f\n\n", rep.Date.Format(time.RFC3339), rep.GoVersion, rep.CPUs, rep.Load1)
			fmt.Fprintf(w, "%d topics, %d partitions: created in %.2fs, one record each produced in %.2fs\n", rep.Topics, rep.Partitions, rep.CreateSec, rep.ProduceSec)
			fmt.Fprintf(w, "serve process: %d open fds (limit %s), VmRSS %.1f MiB\n", rep.OpenFDs, rep.FDLimit, rep.RSSMiB)
			fmt.Fprintf(w, "SIGTERM to exit: %.2fs; restart to /readyz: %.3fs; %d open fds after restart; %s records found\n",
				rep.ShutdownSec, rep.RestartReadySec, rep.OpenFDsRestart, fmtInt(float64(rep.RecordsAfter)))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&topics, "topics", 1000, "topics to create")
	fl.IntVar(&perTopic, "partitions-per-topic", 10, "partitions of each topic")
	fl.StringVar(&herald, "herald", "", "herald binary to run as the server (default: this one)")
	fl.StringVar(&dir, "dir", "", "server's data directory (default: a temporary directory, removed afterwards)")
	fl.StringVarP(&out, "output", "o", "table", "output format: table or json")
	return cmd
}

// bkServeProc is a herald serve child process.
type bkServeProc struct {
	cmd      *exec.Cmd
	exited   chan error
	kafka    string
	readyURL string
}

func bkFreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// bkStartServe starts herald serve on dir and returns once /readyz answers
// 200, with the time that took.
func bkStartServe(ctx context.Context, bin, dir string, stderr io.Writer) (*bkServeProc, time.Duration, error) {
	kp, err := bkFreePort()
	if err != nil {
		return nil, 0, err
	}
	hp, err := bkFreePort()
	if err != nil {
		return nil, 0, err
	}
	p := &bkServeProc{kafka: fmt.Sprintf("127.0.0.1:%d", kp), readyURL: fmt.Sprintf("http://127.0.0.1:%d/readyz", hp), exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve", "--data", dir, "--kafka-addr", p.kafka, "--http-addr", fmt.Sprintf("127.0.0.1:%d", hp),
		"--durability", "always", "--log-level", "warn")
	p.cmd.Stdout, p.cmd.Stderr = stderr, stderr
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start %s serve: %w", bin, err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	hc := &http.Client{Timeout: time.Second}
	for {
		if resp, err := hc.Get(p.readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, time.Since(start), nil
			}
		}
		select {
		case err := <-p.exited:
			return nil, 0, fmt.Errorf("herald serve exited before ready: %v", err)
		case <-ctx.Done():
			p.cmd.Process.Kill()
			<-p.exited
			return nil, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(start) > 2*time.Minute {
			p.cmd.Process.Kill()
			<-p.exited
			return nil, 0, errors.New("herald serve not ready after 2 minutes")
		}
	}
}

// stop sends SIGTERM and waits for the process to exit.
func (p *bkServeProc) stop() (time.Duration, error) {
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case err := <-p.exited:
		return time.Since(start), err
	case <-time.After(2 * time.Minute):
		p.cmd.Process.Kill()
		<-p.exited
		return 0, errors.New("herald serve did not exit within 2 minutes of SIGTERM")
	}
}

func bkOpenFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

func bkFDLimit(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			if len(f) >= 5 {
				return f[3] + " soft, " + f[4] + " hard"
			}
		}
	}
	return "?"
}

func bkRunPartitions(ctx context.Context, bin, dir string, topics, perTopic int, stderr io.Writer) (_ *bkPartitionsReport, err error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "herald-bench-partitions-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	rep := &bkPartitionsReport{Date: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Topics: topics, Partitions: topics * perTopic}
	srv, took, err := bkStartServe(ctx, bin, dir, stderr)
	if err != nil {
		return nil, err
	}
	defer func() {
		if srv != nil {
			srv.stop()
		}
	}()
	rep.FirstStartSec = took.Seconds()
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("parts-%04d", i)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.kafka), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	progress("creating %d topics of %d partitions ...", topics, perTopic)
	start := time.Now()
	for i := 0; i < len(names); i += 100 {
		resp, err := adm.CreateTopics(ctx, int32(perTopic), 1, nil, names[i:min(i+100, len(names))]...)
		if err != nil {
			return nil, fmt.Errorf("create topics: %w", err)
		}
		if err := resp.Error(); err != nil {
			return nil, fmt.Errorf("create topics: %w", err)
		}
	}
	rep.CreateSec = time.Since(start).Seconds()
	progress("    %.2fs; producing one record to each of %d partitions ...", rep.CreateSec, rep.Partitions)
	start = time.Now()
	var failed atomic.Int64
	var firstErr atomic.Value
	for _, t := range names {
		for p := 0; p < perTopic; p++ {
			cl.Produce(ctx, &kgo.Record{Topic: t, Partition: int32(p), Value: []byte("x")}, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, err
	}
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("produce: %d records failed, first: %v", n, firstErr.Load())
	}
	rep.ProduceSec = time.Since(start).Seconds()
	cl.Close()
	pid := srv.cmd.Process.Pid
	rep.OpenFDs, rep.FDLimit = bkOpenFDs(pid), bkFDLimit(pid)
	if kb, err := bkVmRSSKiB(pid); err == nil {
		rep.RSSMiB = float64(kb) / 1024
	}
	progress("    %.2fs; %d open fds; SIGTERM ...", rep.ProduceSec, rep.OpenFDs)
	d, err := srv.stop()
	srv = nil
	if err != nil {
		return nil, fmt.Errorf("stop herald serve: %w", err)
	}
	rep.ShutdownSec = d.Seconds()
	progress("    exited in %.2fs; restarting ...", rep.ShutdownSec)
	srv, took, err = bkStartServe(ctx, bin, dir, stderr)
	if err != nil {
		return nil, err
	}
	rep.RestartReadySec = took.Seconds()
	rep.OpenFDsRestart = bkOpenFDs(srv.cmd.Process.Pid)
	progress("    ready in %.3fs; checking the records ...", rep.RestartReadySec)

	cl2, err := kgo.NewClient(kgo.SeedBrokers(srv.kafka))
	if err != nil {
		return nil, err
	}
	defer cl2.Close()
	ends, err := kadm.NewClient(cl2).ListEndOffsets(ctx, names...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets after restart: %w", err)
	}
	var bad []string
	ends.Each(func(o kadm.ListedOffset) {
		rep.RecordsAfter += o.Offset
		if o.Offset != 1 && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("%s/%d at %d", o.Topic, o.Partition, o.Offset))
		}
	})
	if rep.RecordsAfter != int64(rep.Partitions) || len(bad) > 0 {
		return rep, fmt.Errorf("after restart: %d records in %d partitions, want one each (%s)", rep.RecordsAfter, rep.Partitions, strings.Join(bad, ", "))
	}
	rep.Load1 = bkLoadAvg1()
	return rep, nil
}
