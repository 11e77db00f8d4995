package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/client"
)

// dlqHeaderPrefix is the prefix of the headers the SDK's dead-letter
// middleware adds (client.HeaderDLQ*); redrive strips every one of them.
const dlqHeaderPrefix = "herald-dlq-"

func newDLQCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := parentCommand(&cobra.Command{
		Use:   "dlq",
		Short: "Inspect dead-letter topics and redrive their records",
		Long: `Investigate and reprocess the records a subscriber dead-lettered (the SDK's
WithDeadLetter). A dead letter is the original record (key, value, headers)
plus herald-dlq-* headers: the original topic, partition and offset, the
consumer group, the reason (failed or malformed), the attempts, the first
and last failure times and the last error.

  dlq list TOPIC      counts and breakdowns of a dead-letter topic
  dlq show TOPIC      the dead letters with their metadata
  dlq redrive TOPIC   re-publish them to their original topics

The three share filters: --error or --error-regexp, --reason, --source-topic,
--group (the consumer group that gave up), --since and --until (on the last
failure time), --partition and --offsets (dead-letter topic positions).

Records are read with read_committed up to the last stable offset, so dead
letters of aborted transactions (ExactlyOnce subscribers) are never shown
or redriven. Exit codes: herald help exit-codes.`,
	})
	addClientFlags(cmd, cf)
	cmd.AddCommand(newDLQListCmd(cf), newDLQShowCmd(cf), newDLQRedriveCmd(cf))
	return cmd
}

// dlqFilterFlags are the filter flags of every dlq subcommand.
type dlqFilterFlags struct {
	errSub, errRE string
	reason        string
	sourceTopic   string
	group         string
	since, until  string
	offsets       []string
	partitions    []int32
}

func (f *dlqFilterFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.errSub, "error", "", "only records whose error contains `TEXT`")
	fs.StringVar(&f.errRE, "error-regexp", "", "only records whose error matches the regular expression `RE`")
	fs.StringVar(&f.reason, "reason", "", "only records dead-lettered for `REASON`: failed or malformed")
	fs.StringVar(&f.sourceTopic, "source-topic", "", "only records from original topic `T`")
	fs.StringVarP(&f.group, "group", "g", "", "only records consumer group `G` dead-lettered")
	fs.StringVar(&f.since, "since", "", "only records whose last failure is at or after `TIME` (RFC3339)")
	fs.StringVar(&f.until, "until", "", "only records whose last failure is before `TIME` (RFC3339)")
	fs.StringArrayVar(&f.offsets, "offsets", nil, "only dead-letter offsets `P:FROM-TO` of partition P, inclusive (also P:FROM- and P:N; repeatable)")
	fs.Int32SliceVarP(&f.partitions, "partition", "p", nil, "only dead-letter partition `N` (repeatable)")
}

// offsetRange is [from, to] inclusive; to < 0 is open.
type offsetRange struct{ from, to int64 }

func (r offsetRange) contains(o int64) bool { return o >= r.from && (r.to < 0 || o <= r.to) }

// dlqFilter is the parsed filters; a zero dlqFilter matches everything.
type dlqFilter struct {
	errSub       string
	errRE        *regexp.Regexp
	reason       string
	sourceTopic  string
	group        string
	since, until time.Time
	ranges       map[int32][]offsetRange // nil: every offset
	partitions   []int32                 // nil: every partition
}

func (f *dlqFilterFlags) parse() (*dlqFilter, error) {
	out := &dlqFilter{errSub: f.errSub, sourceTopic: f.sourceTopic, group: f.group}
	if f.errSub != "" && f.errRE != "" {
		return nil, usageErrorf("--error and --error-regexp: give one or the other")
	}
	if f.errRE != "" {
		re, err := regexp.Compile(f.errRE)
		if err != nil {
			return nil, usageErrorf("--error-regexp %q: %v", f.errRE, err)
		}
		out.errRE = re
	}
	switch f.reason {
	case "", client.DLQReasonFailed, client.DLQReasonMalformed:
		out.reason = f.reason
	default:
		return nil, usageErrorf("--reason %q: want %s or %s", f.reason, client.DLQReasonFailed, client.DLQReasonMalformed)
	}
	for _, t := range []struct {
		flag, val string
		dst       *time.Time
	}{{"since", f.since, &out.since}, {"until", f.until, &out.until}} {
		if t.val == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.val)
		if err != nil {
			return nil, usageErrorf("--%s %q: want an RFC3339 time such as 2026-01-02T15:04:05Z", t.flag, t.val)
		}
		*t.dst = v
	}
	if !out.since.IsZero() && !out.until.IsZero() && !out.until.After(out.since) {
		return nil, usageErrorf("--since %s and --until %s: --until must be after --since", f.since, f.until)
	}
	for _, v := range f.offsets {
		p, r, err := parseOffsetRange(v)
		if err != nil {
			return nil, err
		}
		if out.ranges == nil {
			out.ranges = map[int32][]offsetRange{}
		}
		out.ranges[p] = append(out.ranges[p], r)
	}
	for _, p := range f.partitions {
		if p < 0 {
			return nil, usageErrorf("--partition %d: want a partition number (0 or more)", p)
		}
		if !slices.Contains(out.partitions, p) {
			out.partitions = append(out.partitions, p)
		}
	}
	return out, nil
}

// parseOffsetRange parses an --offsets value: P:FROM-TO, P:FROM- or P:N.
func parseOffsetRange(v string) (int32, offsetRange, error) {
	bad := func() (int32, offsetRange, error) {
		return 0, offsetRange{}, usageErrorf("--offsets %q: want PARTITION:FROM-TO (inclusive), PARTITION:FROM- or PARTITION:OFFSET", v)
	}
	ps, rs, ok := strings.Cut(v, ":")
	if !ok {
		return bad()
	}
	p, err := strconv.ParseInt(ps, 10, 32)
	if err != nil || p < 0 {
		return bad()
	}
	fs, ts, isRange := strings.Cut(rs, "-")
	from, err := strconv.ParseInt(fs, 10, 64)
	if err != nil || from < 0 {
		return bad()
	}
	r := offsetRange{from: from, to: from}
	if isRange {
		r.to = -1
		if ts != "" {
			if r.to, err = strconv.ParseInt(ts, 10, 64); err != nil || r.to < 0 {
				return bad()
			}
			if r.to < from {
				return 0, offsetRange{}, usageErrorf("--offsets %q: %d is before %d", v, r.to, from)
			}
		}
	}
	return int32(p), r, nil
}

// partitionSelected reports whether the filters can match anything in p.
func (f *dlqFilter) partitionSelected(p int32) bool {
	if f.partitions != nil && !slices.Contains(f.partitions, p) {
		return false
	}
	if f.ranges != nil {
		_, ok := f.ranges[p]
		return ok
	}
	return true
}

// bounds is the smallest [lo, hi) of partition p holding every offset the
// filters select, clipped to [start, end).
func (f *dlqFilter) bounds(p int32, start, end int64) (lo, hi int64) {
	rs, ok := f.ranges[p]
	if !ok {
		return start, end
	}
	lo, hi = end, start
	for _, r := range rs {
		lo = min(lo, r.from)
		if r.to < 0 {
			hi = end
		} else {
			hi = max(hi, r.to+1)
		}
	}
	return max(lo, start), min(hi, end)
}

// hasContent reports whether any filter looks at the records' metadata.
func (f *dlqFilter) hasContent() bool {
	return f.errSub != "" || f.errRE != nil || f.reason != "" || f.sourceTopic != "" || f.group != "" ||
		!f.since.IsZero() || !f.until.IsZero()
}

func (f *dlqFilter) matches(d *dlqRecord) bool {
	if rs, ok := f.ranges[d.rec.Partition]; f.ranges != nil {
		if !ok || !slices.ContainsFunc(rs, func(r offsetRange) bool { return r.contains(d.rec.Offset) }) {
			return false
		}
	}
	switch {
	case f.errSub != "" && !strings.Contains(d.errText, f.errSub),
		f.errRE != nil && !f.errRE.MatchString(d.errText),
		f.reason != "" && d.reason != f.reason,
		f.sourceTopic != "" && d.sourceTopic != f.sourceTopic,
		f.group != "" && d.group != f.group:
		return false
	}
	// NB: a record without a parseable last-failure time matches no time
	// filter: its age is unknown, so it is neither "since" nor "until".
	if !f.since.IsZero() && (d.last.IsZero() || d.last.Before(f.since)) {
		return false
	}
	if !f.until.IsZero() && (d.last.IsZero() || !d.last.Before(f.until)) {
		return false
	}
	return true
}

// dlqRecord is a dead letter with its herald-dlq-* headers parsed; a
// missing or unparseable header leaves its field zero ("", -1, zero time).
type dlqRecord struct {
	rec             *kgo.Record
	sourceTopic     string
	sourcePartition int32
	sourceOffset    int64
	group           string
	errText         string
	reason          string
	attempts        int
	first, last     time.Time
}

func parseDLQRecord(r *kgo.Record) *dlqRecord {
	d := &dlqRecord{rec: r, sourcePartition: -1, sourceOffset: -1, attempts: -1}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case client.HeaderDLQTopic:
			d.sourceTopic = v
		case client.HeaderDLQPartition:
			if n, err := strconv.ParseInt(v, 10, 32); err == nil && n >= 0 {
				d.sourcePartition = int32(n)
			}
		case client.HeaderDLQOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				d.sourceOffset = n
			}
		case client.HeaderDLQGroup:
			d.group = v
		case client.HeaderDLQError:
			d.errText = v
		case client.HeaderDLQReason:
			d.reason = v
		case client.HeaderDLQAttempts:
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				d.attempts = n
			}
		case client.HeaderDLQFirstFailure:
			d.first, _ = time.Parse(time.RFC3339Nano, v)
		case client.HeaderDLQLastFailure:
			d.last, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	return d
}

// timeText prints a failure time, "-" for none.
func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func timeJSON(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

// preview is the first line of s, cut to n runes with "..." when longer;
// control characters become spaces so a table stays a table.
func preview(s string, n int) string {
	line, _, cut := strings.Cut(s, "\n")
	line = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, line)
	if utf8.RuneCountInString(line) > n {
		line = string([]rune(line)[:n]) + "..."
	} else if cut {
		line += "..."
	}
	return line
}

// bytesPreview is preview for a key or value: "-" for null, a note for
// binary.
func bytesPreview(b []byte, n int) string {
	switch {
	case b == nil:
		return "-"
	case !utf8.Valid(b):
		return fmt.Sprintf("(%d bytes, binary)", len(b))
	case len(b) == 0:
		return `""`
	}
	return preview(string(b), n)
}

// dlqScan is a planned read of a dead-letter topic: for each partition,
// the offsets [from, stop) are read.
type dlqScan struct {
	topic string
	parts []int32
	start map[int32]int64 // the partition's start offset
	end   map[int32]int64 // its last stable offset when planned
	from  map[int32]int64
	stop  map[int32]int64
}

// planDLQScan looks the topic up and plans a read of what the filters
// select.
func planDLQScan(ctx context.Context, cf *clientFlags, adm *kadm.Client, topic string, f *dlqFilter) (*dlqScan, error) {
	tds, err := adm.ListTopicsWithInternal(ctx, topic)
	if err != nil {
		return nil, cf.requestError(err)
	}
	if err := tds[topic].Err; err != nil {
		return nil, kafkaError(topicRef(topic), err, "")
	}
	all := tds[topic].Partitions.Numbers()
	n := len(all)
	for _, p := range f.partitions {
		if !slices.Contains(all, p) {
			return nil, usageErrorf("--partition %d: topic %s has %d partitions (0 to %d)", p, topic, n, n-1)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(f.ranges)) {
		if !slices.Contains(all, p) {
			return nil, usageErrorf("--offsets %d:...: topic %s has %d partitions (0 to %d)", p, topic, n, n-1)
		}
		if f.partitions != nil && !slices.Contains(f.partitions, p) {
			return nil, usageErrorf("--offsets %d:... and --partition: partition %d is not among the --partition ones", p, p)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, cf.requestError(err)
	}
	// NB: the last stable offset, not the high-water mark: records of an
	// open transaction are not readable with read_committed yet.
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, cf.requestError(err)
	}
	s := &dlqScan{topic: topic, start: map[int32]int64{}, end: map[int32]int64{}, from: map[int32]int64{}, stop: map[int32]int64{}}
	for _, p := range all {
		so, _ := starts.Lookup(topic, p)
		eo, _ := ends.Lookup(topic, p)
		for _, err := range []error{so.Err, eo.Err} {
			if err != nil {
				return nil, kafkaError(fmt.Sprintf("partition %s/%d", topic, p), err, "")
			}
		}
		s.start[p], s.end[p] = so.Offset, eo.Offset
		if !f.partitionSelected(p) {
			continue
		}
		lo, hi := f.bounds(p, so.Offset, eo.Offset)
		s.parts = append(s.parts, p)
		s.from[p], s.stop[p] = lo, hi
	}
	return s, nil
}

// total is the number of offsets the scan covers.
func (s *dlqScan) total() int64 {
	var n int64
	for _, p := range s.parts {
		n += max(s.stop[p]-s.from[p], 0)
	}
	return n
}

// errStopScan ends a scan early without an error.
var errStopScan = errors.New("stop scan")

// run reads the planned offsets in order per partition and calls visit for
// each record (not for transaction markers). Progress goes to errOut every
// second on a terminal (every 10 seconds otherwise) once a scan takes that
// long.
func (s *dlqScan) run(ctx context.Context, cf *clientFlags, errOut io.Writer, visit func(*kgo.Record) error) error {
	pos := map[int32]int64{}
	startAt := map[int32]kgo.Offset{}
	for _, p := range s.parts {
		pos[p] = s.from[p]
		if s.from[p] < s.stop[p] {
			startAt[p] = kgo.NewOffset().At(s.from[p])
		}
	}
	if len(startAt) == 0 {
		return nil
	}
	cl, err := cf.newClient(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.topic: startAt}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// NB: a transaction marker can be a partition's last offset;
		// seeing it is how the scan knows the partition is done.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(time.Second),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	total := s.total()
	var read int64
	start := time.Now()
	prog := newProgress(errOut, false, start)
	defer prog.stop()
	done := func() bool {
		for _, p := range s.parts {
			if pos[p] < s.stop[p] {
				return false
			}
		}
		return true
	}
	lastProgress := time.Now()
	for !done() {
		pctx, cancel := context.WithDeadline(ctx, lastProgress.Add(cf.timeout))
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) {
				return fmt.Errorf("no records from %s within %s (--timeout), though the end offsets were not reached", cf.brokers, cf.timeout)
			}
			return kafkaError(fmt.Sprintf("partition %s/%d", fe.Topic, fe.Partition), fe.Err, "")
		}
		var visitErr error
		fs.EachRecord(func(r *kgo.Record) {
			if visitErr != nil || r.Offset < pos[r.Partition] || r.Offset >= s.stop[r.Partition] {
				return
			}
			read += r.Offset + 1 - pos[r.Partition]
			pos[r.Partition] = r.Offset + 1
			lastProgress = time.Now()
			if r.Attrs.IsControl() {
				return
			}
			visitErr = visit(r)
		})
		if errors.Is(visitErr, errStopScan) {
			return nil
		}
		if visitErr != nil {
			return visitErr
		}
		select {
		case now := <-prog.tick():
			line := fmt.Sprintf("scanned %d of %d offsets of %s (%.0f%%) in %s", read, total, s.topic,
				100*float64(read)/float64(max(total, 1)), now.Sub(start).Round(time.Second))
			if prog.tty {
				fmt.Fprintf(prog.w, "\r\033[K%s", line)
				prog.printed = true
			} else {
				fmt.Fprintln(prog.w, line)
			}
		default:
		}
	}
	return nil
}

// newDLQAdmin checks the flags and connects an admin client whose requests
// are bounded by --timeout each (a scan itself is not: it may be long).
func newDLQAdmin(cf *clientFlags, ff *dlqFilterFlags) (*kadm.Client, *dlqFilter, error) {
	if err := cf.check(); err != nil {
		return nil, nil, err
	}
	f, err := ff.parse()
	if err != nil {
		return nil, nil, err
	}
	adm, err := cf.newAdmin()
	if err != nil {
		return nil, nil, err
	}
	return adm, f, nil
}

// ---- dlq list

func newDLQListCmd(cf *clientFlags) *cobra.Command {
	var ff dlqFilterFlags
	var top int
	cmd := &cobra.Command{
		Use:   "list TOPIC",
		Short: "Summarize a dead-letter topic",
		Long: `Summarize dead-letter topic TOPIC: its partitions and offsets, the records
that match the filters (all of them without filters), their first and last
failure, and how they break down by original topic, by consumer group, by
reason and by error (the error's first line, cut to 80 characters). Each
breakdown shows its --top entries by count.

The topic is read from the start: a large one takes a while (progress goes
to standard error).

-o json prints
  {"topic": T, "partitions": [{"partition": N, "start_offset": N, "end_offset": N}, ...],
   "stored": N, "matched": N, "first_failure": TIME|null, "last_failure": TIME|null,
   "by_source_topic": BREAKDOWN, "by_group": BREAKDOWN, "by_reason": BREAKDOWN,
   "by_error": BREAKDOWN}
where stored is the sum of end - start offsets (transaction markers
included), matched the records that match, and a BREAKDOWN is
  {"entries": [{"name": S, "records": N, "first_failure": TIME|null,
                "last_failure": TIME|null}, ...], "omitted": N}
sorted by records, then name; omitted counts the records of entries past
--top. A missing header is the name "".`,
		Example: `  herald dlq list orders.dlq
  herald dlq list orders.dlq --group billing --since 2026-01-02T00:00:00Z -o json`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runDLQList(cmd, cf, &ff, top, args[0]))
		},
	}
	ff.register(cmd)
	cmd.Flags().IntVar(&top, "top", 10, "show the `N` largest entries of each breakdown")
	return cmd
}

type dlqBucket struct {
	Name         string  `json:"name"`
	Records      int64   `json:"records"`
	FirstFailure *string `json:"first_failure"`
	LastFailure  *string `json:"last_failure"`
	first, last  time.Time
}

type dlqBreakdown struct {
	Entries []*dlqBucket `json:"entries"`
	Omitted int64        `json:"omitted"`
	m       map[string]*dlqBucket
}

func (b *dlqBreakdown) add(name string, d *dlqRecord) {
	if b.m == nil {
		b.m = map[string]*dlqBucket{}
	}
	e := b.m[name]
	if e == nil {
		e = &dlqBucket{Name: name}
		b.m[name] = e
	}
	e.Records++
	e.first, e.last = earliest(e.first, d.first), latest(e.last, d.last)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// finish sorts the entries and keeps the top n.
func (b *dlqBreakdown) finish(n int) {
	b.Entries = []*dlqBucket{}
	for _, e := range b.m {
		e.FirstFailure, e.LastFailure = timeJSON(e.first), timeJSON(e.last)
		b.Entries = append(b.Entries, e)
	}
	slices.SortFunc(b.Entries, func(x, y *dlqBucket) int {
		return cmp.Or(cmp.Compare(y.Records, x.Records), strings.Compare(x.Name, y.Name))
	})
	if len(b.Entries) > n {
		for _, e := range b.Entries[n:] {
			b.Omitted += e.Records
		}
		b.Entries = b.Entries[:n]
	}
}

type dlqSummary struct {
	Topic         string             `json:"topic"`
	Partitions    []partitionOffsets `json:"partitions"`
	Stored        int64              `json:"stored"`
	Matched       int64              `json:"matched"`
	FirstFailure  *string            `json:"first_failure"`
	LastFailure   *string            `json:"last_failure"`
	BySourceTopic dlqBreakdown       `json:"by_source_topic"`
	ByGroup       dlqBreakdown       `json:"by_group"`
	ByReason      dlqBreakdown       `json:"by_reason"`
	ByError       dlqBreakdown       `json:"by_error"`
}

// errorWidth is how much of an error dlq list and show print.
const errorWidth = 80

func runDLQList(cmd *cobra.Command, cf *clientFlags, ff *dlqFilterFlags, top int, topic string) error {
	adm, f, err := newDLQAdmin(cf, ff)
	if err != nil {
		return err
	}
	defer adm.Close()
	if top < 1 {
		return usageErrorf("--top %d: want 1 or more", top)
	}
	ctx := cmd.Context()
	pctx, cancel := cf.withTimeout(ctx)
	scan, err := planDLQScan(pctx, cf, adm, topic, f)
	cancel()
	if err != nil {
		return err
	}
	sum := dlqSummary{Topic: topic, Partitions: []partitionOffsets{}}
	for _, p := range slices.Sorted(maps.Keys(scan.start)) {
		sum.Partitions = append(sum.Partitions, partitionOffsets{Partition: p, StartOffset: scan.start[p], EndOffset: scan.end[p]})
		sum.Stored += scan.end[p] - scan.start[p]
	}
	var first, last time.Time
	err = scan.run(ctx, cf, cmd.ErrOrStderr(), func(r *kgo.Record) error {
		d := parseDLQRecord(r)
		if !f.matches(d) {
			return nil
		}
		sum.Matched++
		first, last = earliest(first, d.first), latest(last, d.last)
		sum.BySourceTopic.add(d.sourceTopic, d)
		sum.ByGroup.add(d.group, d)
		sum.ByReason.add(d.reason, d)
		sum.ByError.add(preview(d.errText, errorWidth), d)
		return nil
	})
	if err != nil {
		return err
	}
	sum.FirstFailure, sum.LastFailure = timeJSON(first), timeJSON(last)
	for _, b := range []*dlqBreakdown{&sum.BySourceTopic, &sum.ByGroup, &sum.ByReason, &sum.ByError} {
		b.finish(top)
	}

	out := cmd.OutOrStdout()
	if cf.json() {
		return printJSON(out, sum)
	}
	matched := fmt.Sprintf("%d", sum.Matched)
	if f.hasContent() || f.ranges != nil || f.partitions != nil {
		matched += " match the filters"
	}
	fmt.Fprintf(out, "Topic:          %s\nPartitions:     %d\nStored:         %d offsets\nRecords:        %s\nFirst failure:  %s\nLast failure:   %s\n",
		topic, len(sum.Partitions), sum.Stored, matched, timeText(first), timeText(last))
	for _, s := range []struct {
		title string
		b     *dlqBreakdown
	}{{"SOURCE-TOPIC", &sum.BySourceTopic}, {"GROUP", &sum.ByGroup}, {"REASON", &sum.ByReason}, {"ERROR", &sum.ByError}} {
		if len(s.b.Entries) == 0 {
			continue
		}
		fmt.Fprintln(out)
		rows := [][]string{}
		for _, e := range s.b.Entries {
			rows = append(rows, []string{strconv.FormatInt(e.Records, 10), timeText(e.first), timeText(e.last), cmp.Or(e.Name, "-")})
		}
		if s.b.Omitted > 0 {
			rows = append(rows, []string{strconv.FormatInt(s.b.Omitted, 10), "", "", fmt.Sprintf("(%d more; see --top)", len(s.b.m)-len(s.b.Entries))})
		}
		// The name last: errors are long and vary in length.
		if err := printTable(out, []string{"RECORDS", "FIRST-FAILURE", "LAST-FAILURE", s.title}, rows); err != nil {
			return err
		}
	}
	return nil
}

// ---- dlq show

func newDLQShowCmd(cf *clientFlags) *cobra.Command {
	var ff dlqFilterFlags
	var maxN int
	cmd := &cobra.Command{
		Use:   "show TOPIC",
		Short: "Print dead letters with their metadata",
		Long: `Print the dead letters of TOPIC that match the filters, in offset order per
partition: where each came from (original topic/partition/offset), the
consumer group, the reason, the attempts, the last failure, the key, a
preview of the value and the error (first line, cut to 80 characters).
--max stops after N records.

-o json prints one JSON object per record and line, with the whole error
and value:
  {"partition": N, "offset": N, "timestamp": TIME,
   "source_topic": T, "source_partition": N|null, "source_offset": N|null,
   "group": G, "reason": R, "attempts": N|null,
   "first_failure": TIME|null, "last_failure": TIME|null, "error": TEXT,
   "key": STRING|null, "value": STRING|null,
   "headers": [{"key": K, "value": STRING}, ...]}
headers are the record's other headers (not herald-dlq-*). A key, value or
header value that is not valid UTF-8 is base64, marked as in consume -o json.`,
		Example: `  herald dlq show orders.dlq --reason malformed --max 20
  herald dlq show orders.dlq --error-regexp 'timeout|deadline' -o json`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runDLQShow(cmd, cf, &ff, maxN, args[0]))
		},
	}
	ff.register(cmd)
	cmd.Flags().IntVarP(&maxN, "max", "n", 0, "stop after `N` records (0: no limit)")
	return cmd
}

type dlqShowJSON struct {
	Partition       int32        `json:"partition"`
	Offset          int64        `json:"offset"`
	Timestamp       string       `json:"timestamp"`
	SourceTopic     string       `json:"source_topic"`
	SourcePartition *int32       `json:"source_partition"`
	SourceOffset    *int64       `json:"source_offset"`
	Group           string       `json:"group"`
	Reason          string       `json:"reason"`
	Attempts        *int         `json:"attempts"`
	FirstFailure    *string      `json:"first_failure"`
	LastFailure     *string      `json:"last_failure"`
	Error           string       `json:"error"`
	Key             *string      `json:"key"`
	KeyEncoding     string       `json:"key_encoding,omitempty"`
	Value           *string      `json:"value"`
	ValueEncoding   string       `json:"value_encoding,omitempty"`
	Headers         []jsonHeader `json:"headers"`
}

func toDLQShowJSON(d *dlqRecord) dlqShowJSON {
	r := d.rec
	j := dlqShowJSON{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano),
		SourceTopic: d.sourceTopic, Group: d.group, Reason: d.reason, Error: d.errText,
		FirstFailure: timeJSON(d.first), LastFailure: timeJSON(d.last), Headers: []jsonHeader{}}
	if d.sourcePartition >= 0 {
		j.SourcePartition = &d.sourcePartition
	}
	if d.sourceOffset >= 0 {
		j.SourceOffset = &d.sourceOffset
	}
	if d.attempts >= 0 {
		j.Attempts = &d.attempts
	}
	j.Key, j.KeyEncoding = jsonBytes(r.Key)
	j.Value, j.ValueEncoding = jsonBytes(r.Value)
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, dlqHeaderPrefix) {
			continue
		}
		jh := jsonHeader{Key: h.Key}
		jh.Value, jh.ValueEncoding = jsonBytes(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	return j
}

// sourceText is "topic/partition/offset" of a dead letter's original.
func (d *dlqRecord) sourceText() string {
	if d.sourceTopic == "" {
		return "-"
	}
	return fmt.Sprintf("%s/%s/%s", d.sourceTopic, offsetText(int64(d.sourcePartition)), offsetText(d.sourceOffset))
}

func runDLQShow(cmd *cobra.Command, cf *clientFlags, ff *dlqFilterFlags, maxN int, topic string) error {
	adm, f, err := newDLQAdmin(cf, ff)
	if err != nil {
		return err
	}
	defer adm.Close()
	if maxN < 0 {
		return usageErrorf("--max %d: want 0 (no limit) or more", maxN)
	}
	ctx := cmd.Context()
	pctx, cancel := cf.withTimeout(ctx)
	scan, err := planDLQScan(pctx, cf, adm, topic, f)
	cancel()
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var rows [][]string
	printed := 0
	err = scan.run(ctx, cf, cmd.ErrOrStderr(), func(r *kgo.Record) error {
		d := parseDLQRecord(r)
		if !f.matches(d) {
			return nil
		}
		if cf.json() {
			// One object per line, as consume -o json: a long scan
			// streams.
			if err := writeJSONLine(out, toDLQShowJSON(d)); err != nil {
				return err
			}
		} else {
			attempts := "-"
			if d.attempts >= 0 {
				attempts = strconv.Itoa(d.attempts)
			}
			rows = append(rows, []string{strconv.Itoa(int(r.Partition)), strconv.FormatInt(r.Offset, 10), d.sourceText(),
				cmp.Or(d.group, "-"), cmp.Or(d.reason, "-"), attempts, timeText(d.last),
				bytesPreview(r.Key, 20), bytesPreview(r.Value, 40), preview(d.errText, errorWidth)})
		}
		if printed++; maxN > 0 && printed >= maxN {
			return errStopScan
		}
		return nil
	})
	if err != nil {
		return err
	}
	if cf.json() || len(rows) == 0 {
		return nil
	}
	return printTable(out, []string{"PARTITION", "OFFSET", "SOURCE", "GROUP", "REASON", "ATTEMPTS", "LAST-FAILURE", "KEY", "VALUE", "ERROR"}, rows)
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ---- dlq redrive

type redriveOptions struct {
	to            string
	samePartition bool
	execute       bool
	progressGroup string
	fromStart     bool
}

func newDLQRedriveCmd(cf *clientFlags) *cobra.Command {
	var ff dlqFilterFlags
	var o redriveOptions
	cmd := &cobra.Command{
		Use:   "redrive TOPIC [--execute]",
		Short: "Re-publish dead letters to their original topics",
		Long: `Re-publish the dead letters of TOPIC that match the filters to their
original topic (the herald-dlq-topic header; --to TOPIC sends them all to
one topic instead), once the cause of their failure is fixed.

Each record keeps its key, value, timestamp and headers, without the
herald-dlq-* headers and with herald-redriven-from set to
"DLQTOPIC/PARTITION/OFFSET". It goes to the partition its key hashes to
(as the SDK's publisher and Kafka's Java client pick it; keyless records
are spread), or with --same-partition to its original partition.

Without --execute this is a dry run: it prints how many records would go to
each topic and changes nothing. With --execute the records are published
with an idempotent producer (acks=all), per dead-letter partition in order,
and the command fails (exit 1) if any was not acknowledged.

Progress: --execute commits, for each dead-letter partition it read, the
offset it reached as the committed offset of a consumer group
(--progress-group), and a later redrive with the same filters starts there
instead of at the start (--from-start: read from the start anyway). A
partition where a publish failed is committed only up to the first failed
record, so a retry publishes it, and those after it, again. The default
group is herald-dlq-redrive-TOPIC without filters and
herald-dlq-redrive-TOPIC-HASH with filters (HASH names the filter set), so
that a redrive of some errors does not make a later redrive of other
errors skip theirs. Redrives whose filter sets overlap (a filtered one,
then an unfiltered one) both publish the records they share; give them
one --progress-group to share one position instead, records the first one
skipped included. Nothing may consume with that group.

Before anything is published every target topic must exist (else exit 3,
nothing published) and, with --same-partition, have the original
partition.

-o json prints
  {"topic": T, "executed": BOOL, "progress_group": G, "matched": N,
   "published": N, "failed": N,
   "targets": [{"topic": T, "records": N, "published": N, "failed": N}, ...],
   "partitions": [{"partition": N, "from": N, "to": N, "committed": N|null}, ...]}
where each partition was read over offsets [from, to) and committed is the
progress committed (null: none, in a dry run or when nothing was reached).`,
		Example: `  herald dlq redrive orders.dlq --error "connection refused"
  herald dlq redrive orders.dlq --error "connection refused" --execute
  herald dlq redrive orders.dlq --offsets 0:100-199 --to orders.retry --execute`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runDLQRedrive(cmd, cf, &ff, &o, args[0]))
		},
	}
	ff.register(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.to, "to", "", "publish to `TOPIC` instead of each record's original topic")
	fs.BoolVar(&o.samePartition, "same-partition", false, "publish to the original partition instead of the key's")
	fs.BoolVar(&o.execute, "execute", false, "publish (default: a dry run)")
	fs.StringVar(&o.progressGroup, "progress-group", "", "commit progress under consumer group `G` (default: see above)")
	fs.BoolVar(&o.fromStart, "from-start", false, "ignore earlier progress: read the topic from the start")
	return cmd
}

// defaultProgressGroup is the group redrive progress is committed under:
// one per dead-letter topic and set of filters.
func defaultProgressGroup(topic string, ff *dlqFilterFlags) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("error", ff.errSub)
	add("error-regexp", ff.errRE)
	add("reason", ff.reason)
	add("source-topic", ff.sourceTopic)
	add("group", ff.group)
	add("since", ff.since)
	add("until", ff.until)
	for _, o := range slices.Sorted(slices.Values(ff.offsets)) {
		add("offsets", o)
	}
	ps := slices.Sorted(slices.Values(ff.partitions))
	for _, p := range slices.Compact(ps) {
		add("partition", strconv.Itoa(int(p)))
	}
	name := "herald-dlq-redrive-" + topic
	if len(parts) == 0 {
		return name
	}
	h := fnv.New32a()
	io.WriteString(h, strings.Join(parts, "\x00"))
	return fmt.Sprintf("%s-%08x", name, h.Sum32())
}

type redriveTarget struct {
	Topic     string `json:"topic"`
	Records   int64  `json:"records"`
	Published int64  `json:"published"`
	Failed    int64  `json:"failed"`
	maxPart   int32  // the largest original partition, for --same-partition
	example   string // a dead letter whose original partition is maxPart
}

type redrivePartition struct {
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
	Committed *int64 `json:"committed"`
}

type redriveResult struct {
	Topic         string             `json:"topic"`
	Executed      bool               `json:"executed"`
	ProgressGroup string             `json:"progress_group"`
	Matched       int64              `json:"matched"`
	Published     int64              `json:"published"`
	Failed        int64              `json:"failed"`
	Targets       []*redriveTarget   `json:"targets"`
	Partitions    []redrivePartition `json:"partitions"`
}

// redriveRecord is what redrive publishes for dead letter d.
func redriveRecord(d *dlqRecord, to string, samePartition bool) *kgo.Record {
	r := d.rec
	out := &kgo.Record{Topic: cmp.Or(to, d.sourceTopic), Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}
	if samePartition {
		out.Partition = d.sourcePartition
	}
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, dlqHeaderPrefix) || h.Key == client.HeaderRedrivenFrom {
			continue
		}
		out.Headers = append(out.Headers, h)
	}
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: client.HeaderRedrivenFrom,
		Value: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)})
	return out
}

func runDLQRedrive(cmd *cobra.Command, cf *clientFlags, ff *dlqFilterFlags, o *redriveOptions, topic string) error {
	adm, f, err := newDLQAdmin(cf, ff)
	if err != nil {
		return err
	}
	defer adm.Close()
	if cmd.Flags().Changed("to") && o.to == "" {
		return usageErrorf("--to \"\": want a topic name")
	}
	if cmd.Flags().Changed("progress-group") && o.progressGroup == "" {
		return usageErrorf("--progress-group \"\": want a group name")
	}
	group := cmp.Or(o.progressGroup, defaultProgressGroup(topic, ff))
	ctx := cmd.Context()
	errOut := cmd.ErrOrStderr()

	pctx, cancel := cf.withTimeout(ctx)
	defer cancel()
	scan, err := planDLQScan(pctx, cf, adm, topic, f)
	if err != nil {
		return err
	}
	var after map[int32]int64
	if !o.fromStart {
		ors, err := adm.FetchOffsetsForTopics(pctx, group, topic)
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return kafkaError(groupRef(group), cf.requestError(err), "")
		}
		after = map[int32]int64{}
		for p, r := range ors[topic] {
			if r.Err == nil && r.At >= 0 {
				after[p] = r.At
			}
		}
	}
	for p, a := range after {
		if _, ok := scan.from[p]; ok {
			scan.from[p] = max(scan.from[p], a)
		}
	}

	// Pass 1: what would go where. NB: nothing is held in memory but
	// counts, so --execute reads the same offsets a second time.
	res := redriveResult{Topic: topic, Executed: o.execute, ProgressGroup: group, Targets: []*redriveTarget{}, Partitions: []redrivePartition{}}
	targets := map[string]*redriveTarget{}
	var noSource int64
	var noSourceExample, noPartitionExample string
	err = scan.run(ctx, cf, errOut, func(r *kgo.Record) error {
		d := parseDLQRecord(r)
		if !f.matches(d) {
			return nil
		}
		res.Matched++
		name := cmp.Or(o.to, d.sourceTopic)
		if name == "" {
			noSource++
			noSourceExample = cmp.Or(noSourceExample, fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset))
			return nil
		}
		if o.samePartition && d.sourcePartition < 0 {
			noPartitionExample = cmp.Or(noPartitionExample, fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset))
		}
		t := targets[name]
		if t == nil {
			t = &redriveTarget{Topic: name, maxPart: -1}
			targets[name] = t
		}
		t.Records++
		if d.sourcePartition > t.maxPart {
			t.maxPart, t.example = d.sourcePartition, fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range slices.Sorted(maps.Keys(targets)) {
		res.Targets = append(res.Targets, targets[n])
	}
	for _, p := range scan.parts {
		res.Partitions = append(res.Partitions, redrivePartition{Partition: p, From: scan.from[p], To: max(scan.stop[p], scan.from[p])})
	}

	// Check before publishing anything: a record that cannot be published
	// must not be discovered halfway.
	if noSource > 0 {
		return fmt.Errorf("%d matching record(s) have no %s header, the first %s (not written by the dead-letter middleware?): give --to, or leave them out with --source-topic or --offsets",
			noSource, client.HeaderDLQTopic, noSourceExample)
	}
	if noPartitionExample != "" {
		return usageErrorf("--same-partition: record %s has no valid %s header", noPartitionExample, client.HeaderDLQPartition)
	}
	if len(res.Targets) > 0 {
		tctx, cancel := cf.withTimeout(ctx)
		tds, err := adm.ListTopicsWithInternal(tctx, slices.Sorted(maps.Keys(targets))...)
		cancel()
		if err != nil {
			return cf.requestError(err)
		}
		for _, t := range res.Targets {
			td := tds[t.Topic]
			if td.Err != nil {
				what := fmt.Sprintf("%s (the target of %d record(s))", topicRef(t.Topic), t.Records)
				if errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
					return cliError(exitNotFound, "%s not found: create it, give --to, or leave its records out with --source-topic; nothing was published", what)
				}
				return kafkaError(what, td.Err, "")
			}
			if n := int32(len(td.Partitions)); o.samePartition && t.maxPart >= n {
				return usageErrorf("--same-partition: record %s came from partition %d, but topic %s has %d partitions (0 to %d)",
					t.example, t.maxPart, t.Topic, n, n-1)
			}
		}
	}

	if o.execute {
		if err := executeRedrive(ctx, cf, errOut, adm, scan, f, o, group, &res); err != nil {
			return err
		}
	}

	out := cmd.OutOrStdout()
	if cf.json() {
		if err := printJSON(out, res); err != nil {
			return err
		}
	} else {
		rows := [][]string{}
		for _, t := range res.Targets {
			row := []string{t.Topic, strconv.FormatInt(t.Records, 10)}
			if o.execute {
				row = append(row, strconv.FormatInt(t.Published, 10), strconv.FormatInt(t.Failed, 10))
			}
			rows = append(rows, row)
		}
		header := []string{"TARGET-TOPIC", "RECORDS"}
		if o.execute {
			header = append(header, "PUBLISHED", "FAILED")
		}
		if len(rows) > 0 {
			if err := printTable(out, header, rows); err != nil {
				return err
			}
			fmt.Fprintln(out)
		}
	}
	resumed := ""
	if len(after) > 0 {
		resumed = fmt.Sprintf(" (resuming after the progress of group %s; --from-start to read from the start)", group)
	}
	switch {
	case !o.execute:
		fmt.Fprintf(errOut, "dry run: nothing published; %d record(s) of %s match%s; add --execute to redrive them\n",
			res.Matched, topic, resumed)
	case res.Failed > 0:
		return fmt.Errorf("%d of %d records failed, %d published; the progress of group %s stops at the first failure of each partition",
			res.Failed, res.Matched, res.Published, group)
	default:
		if !cf.json() {
			fmt.Fprintf(out, "redrove %d record(s) from %s%s; progress committed under group %s\n", res.Published, topic, resumed, group)
		}
	}
	return nil
}

// executeRedrive publishes what pass 1 counted (reading the same offsets)
// and commits the progress.
func executeRedrive(ctx context.Context, cf *clientFlags, errOut io.Writer, adm *kadm.Client, scan *dlqScan, f *dlqFilter,
	o *redriveOptions, group string, res *redriveResult) error {
	part := kgo.StickyKeyPartitioner(nil)
	if o.samePartition {
		part = kgo.ManualPartitioner()
	}
	// kgo writes idempotently with acks=all: a retried batch is never
	// duplicated, and records of one partition keep their order.
	// NB: no RecordDeliveryTimeout: kgo measures it from the record's
	// timestamp, which redrive keeps, so old dead letters would fail at
	// once. The flush below is bounded by --timeout instead.
	cl, err := cf.newClient(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(part))
	if err != nil {
		return err
	}
	defer cl.Close()
	targets := map[string]*redriveTarget{}
	for _, t := range res.Targets {
		targets[t.Topic] = t
	}
	var mu struct {
		sync.Mutex
		firstFail map[int32]int64 // dead-letter offset of the first failure, by partition
		firstErr  error
	}
	mu.firstFail = map[int32]int64{}
	scanAgain := scan.run
	if res.Matched == 0 {
		// Nothing to publish, but the offsets read are still progress.
		scanAgain = func(context.Context, *clientFlags, io.Writer, func(*kgo.Record) error) error { return nil }
	}
	err = scanAgain(ctx, cf, errOut, func(r *kgo.Record) error {
		d := parseDLQRecord(r)
		if !f.matches(d) {
			return nil
		}
		src := fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
		dp, do := r.Partition, r.Offset
		cl.Produce(ctx, redriveRecord(d, o.to, o.samePartition), func(out *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			t := targets[out.Topic]
			if err != nil {
				t.Failed++
				if prev, ok := mu.firstFail[dp]; !ok || do < prev {
					mu.firstFail[dp] = do
				}
				if mu.firstErr == nil {
					mu.firstErr = fmt.Errorf("%s to %s: %w", src, out.Topic, err)
				}
				return
			}
			t.Published++
		})
		return nil
	})
	// Whatever was handed over gets its chance, even on an interrupt.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cf.timeout)
	defer cancel()
	flushErr := cl.Flush(fctx)
	mu.Lock()
	defer mu.Unlock()
	for _, t := range res.Targets {
		res.Published += t.Published
		res.Failed += t.Failed
	}
	if err != nil {
		// NB: no progress is committed after a failed scan: what was
		// published is published, a retry publishes it again.
		return fmt.Errorf("%w (%d record(s) published before it; no progress committed)", err, res.Published)
	}
	if flushErr != nil {
		return fmt.Errorf("waiting for acknowledgements: %w (no progress committed)", flushErr)
	}
	if mu.firstErr != nil {
		fmt.Fprintf(errOut, "herald: dlq redrive: the first failure: %v\n", mu.firstErr)
	}

	commit := kadm.Offsets{}
	meta := "herald dlq redrive " + time.Now().UTC().Format(time.RFC3339)
	for i, p := range res.Partitions {
		at := p.To
		if ff, ok := mu.firstFail[p.Partition]; ok {
			at = ff
		}
		if at <= p.From {
			continue // nothing reached: keep what is committed
		}
		res.Partitions[i].Committed = &at
		commit.Add(kadm.Offset{Topic: res.Topic, Partition: p.Partition, At: at, LeaderEpoch: -1, Metadata: meta})
	}
	if len(commit) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cf.timeout)
	defer cancel()
	rs, err := adm.CommitOffsets(cctx, group, commit)
	if err != nil {
		return fmt.Errorf("records published, but committing the progress of %s failed: %w", groupRef(group), cf.requestError(err))
	}
	var first error
	rs.Each(func(r kadm.OffsetResponse) {
		if first != nil || r.Err == nil {
			return
		}
		switch {
		case errors.Is(r.Err, kerr.UnknownMemberID), errors.Is(r.Err, kerr.RebalanceInProgress), errors.Is(r.Err, kerr.IllegalGeneration):
			first = cliError(exitConflict, "records published, but %s has live members, so its progress could not be committed: nothing may consume with a --progress-group", groupRef(group))
		default:
			first = fmt.Errorf("records published, but committing the progress of %s failed: %w", groupRef(group),
				kafkaError(fmt.Sprintf("partition %s/%d", r.Topic, r.Partition), r.Err, ""))
		}
	})
	return first
}
