package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type produceOptions struct {
	key         string
	keySep      string
	headers     []string
	partition   int32
	acks        string
	compression string
	quiet       bool
}

func newProduceCmd() *cobra.Command {
	cf := &clientFlags{}
	var o produceOptions
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Write records to a topic, one per line of standard input",
		Long: `Write each line of standard input (without its line ending) to TOPIC as
one record's value. An empty line is a record with an empty value.

Keys: --key gives every record the same key; --key-separator splits each
line at the first separator into key and value (a line without it is an
error). Records go to the partition the client's partitioner picks (by key
hash, as Kafka's Java client does; keyless records stick to a partition per
batch) unless --partition names one.

A summary goes to standard error at the end (records, bytes, duration,
records/s), and a progress line every second while standard error is a
terminal (every 10 seconds otherwise). The command fails (exit 1) if any
record was not acknowledged, naming the first failure's partition.

-o json prints the summary on standard output instead:
  {"topic": NAME, "records": N, "failed": N, "bytes": N,
   "duration_ms": N, "records_per_sec": N}`,
		Example: `  echo hello | herald produce greetings
  printf 'alice:1\nbob:2\n' | herald produce scores --key-separator : --header source=cli
  herald produce events --acks 1 --compression zstd < events.jsonl`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			keySet := cmd.Flags().Changed("key")
			return commandError(cmd, runProduce(cmd.Context(), cf, &o, keySet, args[0], cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	addClientFlags(cmd, cf)
	f := cmd.Flags()
	f.StringVarP(&o.key, "key", "k", "", "the key of every record")
	f.StringVarP(&o.keySep, "key-separator", "K", "", "split each line at the first `SEP` into key and value")
	f.StringArrayVarP(&o.headers, "header", "H", nil, "add header `KEY=VALUE` to every record (repeatable)")
	f.Int32VarP(&o.partition, "partition", "p", -1, "write every record to partition `N` (default: by key)")
	f.StringVar(&o.acks, "acks", "all", "acknowledgement to wait for: all (durable on the server), 1 or 0 (none)")
	f.StringVar(&o.compression, "compression", "none", "batch compression: none, gzip, snappy, lz4 or zstd")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print no summary or progress")
	return cmd
}

// producerOpts turns the produce flags into client options.
func (o *produceOptions) producerOpts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	switch o.acks {
	case "all", "-1":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "1":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case "0":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	default:
		return nil, usageErrorf("--acks %q: want all, 1 or 0", o.acks)
	}
	var codec kgo.CompressionCodec
	switch o.compression {
	case "none":
		codec = kgo.NoCompression()
	case "gzip":
		codec = kgo.GzipCompression()
	case "snappy":
		codec = kgo.SnappyCompression()
	case "lz4":
		codec = kgo.Lz4Compression()
	case "zstd":
		codec = kgo.ZstdCompression()
	default:
		return nil, usageErrorf("--compression %q: want none, gzip, snappy, lz4 or zstd", o.compression)
	}
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	if o.partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	return opts, nil
}

// produceStats counts what the server acknowledged; the produce callbacks
// update it concurrently.
type produceStats struct {
	mu struct {
		sync.Mutex
		acked, failed, bytes int64
		firstErr             error
	}
}

func (s *produceStats) done(r *kgo.Record, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.mu.failed++
		if s.mu.firstErr == nil {
			where := r.Topic
			if r.Partition >= 0 {
				where = fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			}
			s.mu.firstErr = fmt.Errorf("%s: %w", where, err)
		}
		return
	}
	s.mu.acked++
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	s.mu.bytes += int64(n)
}

func (s *produceStats) snapshot() (acked, failed, bytes int64, firstErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.acked, s.mu.failed, s.mu.bytes, s.mu.firstErr
}

// readLines sends each line of r, without its line ending, on the returned
// channel, then the read error (nil at EOF) on errc.
//
// NB: a read from a terminal or pipe cannot be interrupted, so on SIGINT
// the caller stops waiting and this goroutine ends with the process.
func readLines(r io.Reader) (<-chan []byte, <-chan error) {
	lines := make(chan []byte, 256)
	errc := make(chan error, 1)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
				lines <- line
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errc <- err
				return
			}
		}
	}()
	return lines, errc
}

func runProduce(ctx context.Context, cf *clientFlags, o *produceOptions, keySet bool, topic string, in io.Reader, out, errOut io.Writer) error {
	if err := cf.check(); err != nil {
		return err
	}
	if keySet && o.keySep != "" {
		return usageErrorf("--key and --key-separator: give one or the other")
	}
	if o.partition < -1 {
		return usageErrorf("--partition %d: want a partition number (0 or more)", o.partition)
	}
	var headers []kgo.RecordHeader
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return usageErrorf("--header %q: want KEY=VALUE", h)
		}
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	opts, err := o.producerOpts()
	if err != nil {
		return err
	}
	opts = append(opts, kgo.DefaultProduceTopic(topic), kgo.RecordDeliveryTimeout(cf.timeout))
	cl, err := cf.newClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	// Check the topic first: an unknown one would otherwise fail every
	// record after retries.
	mctx, cancel := cf.withTimeout(ctx)
	tds, err := kadm.NewClient(cl).ListTopicsWithInternal(mctx, topic)
	cancel()
	if err != nil {
		return cf.requestError(err)
	}
	if err := tds[topic].Err; err != nil {
		return kafkaError(topicRef(topic), err, "")
	}
	if n := int32(len(tds[topic].Partitions)); o.partition >= n {
		return usageErrorf("--partition %d: topic %s has %d partitions (0 to %d)", o.partition, topic, n, n-1)
	}

	var stats produceStats
	start := time.Now()
	progress := newProgress(errOut, o.quiet || cf.json(), start)
	lines, readErr := readLines(in)
	var sent int64
	var inputErr error
	interrupted := false
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				inputErr = <-readErr
				break read
			}
			r := &kgo.Record{Value: line, Headers: headers, Partition: o.partition}
			switch {
			case keySet:
				r.Key = []byte(o.key)
			case o.keySep != "":
				k, v, ok := bytes.Cut(line, []byte(o.keySep))
				if !ok {
					inputErr = fmt.Errorf("input line %d: no key separator %q", sent+1, o.keySep)
					break read
				}
				r.Key, r.Value = k, v
			}
			sent++
			cl.Produce(ctx, r, stats.done)
		case now := <-progress.tick():
			acked, failed, n, _ := stats.snapshot()
			progress.print(now, acked, failed, n)
		case <-ctx.Done():
			interrupted = true
			break read
		}
	}
	// Records already handed over still get their chance; a second
	// interrupt is not awaited, --timeout bounds the wait instead.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cf.timeout)
	defer cancel()
	flushErr := cl.Flush(fctx)
	elapsed := time.Since(start)
	progress.stop()

	acked, failed, n, firstErr := stats.snapshot()
	if lost := sent - acked - failed; lost > 0 && firstErr == nil {
		firstErr = fmt.Errorf("not acknowledged within --timeout %s: %w", cf.timeout, flushErr)
		failed += lost
	}
	rate := float64(acked) / max(elapsed.Seconds(), 1e-9)
	if cf.json() {
		if err := printJSON(out, map[string]any{
			"topic": topic, "records": acked, "failed": failed, "bytes": n,
			"duration_ms": elapsed.Milliseconds(), "records_per_sec": int64(rate),
		}); err != nil {
			return err
		}
	} else if !o.quiet {
		msg := fmt.Sprintf("produced %d records (%s) to %s in %s, %.0f records/s", acked, humanBytes(n), topic, elapsed.Round(time.Millisecond), rate)
		if failed > 0 {
			msg += fmt.Sprintf("; %d failed", failed)
		}
		if interrupted {
			msg += "; interrupted"
		}
		fmt.Fprintln(errOut, msg)
	}
	switch {
	case inputErr != nil:
		return inputErr
	case failed > 0:
		return fmt.Errorf("%d of %d records failed; the first: %w", failed, sent, firstErr)
	}
	return nil
}

// progress prints a progress line every second on a terminal (rewriting
// it), every 10 seconds otherwise.
type progress struct {
	w        io.Writer
	tty      bool
	t        *time.Ticker
	start    time.Time
	printed  bool
	disabled bool
}

func newProgress(w io.Writer, disabled bool, start time.Time) *progress {
	p := &progress{w: w, tty: isTerminal(w), start: start, disabled: disabled}
	if disabled {
		return p
	}
	every := 10 * time.Second
	if p.tty {
		every = time.Second
	}
	p.t = time.NewTicker(every)
	return p
}

// tick is the ticker's channel, nil (never ready) when disabled.
func (p *progress) tick() <-chan time.Time {
	if p.t == nil {
		return nil
	}
	return p.t.C
}

func (p *progress) print(now time.Time, acked, failed, n int64) {
	el := now.Sub(p.start)
	line := fmt.Sprintf("%d records (%s) in %s, %.0f records/s", acked, humanBytes(n), el.Round(time.Second), float64(acked)/max(el.Seconds(), 1e-9))
	if failed > 0 {
		line += fmt.Sprintf(", %d failed", failed)
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.printed = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// stop ends the ticker and clears a terminal progress line.
func (p *progress) stop() {
	if p.t != nil {
		p.t.Stop()
	}
	if p.printed {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
