package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type consumeOptions struct {
	group      string
	from       string
	partitions []int32
	max        int
	follow     bool
	format     string
}

func newConsumeCmd() *cobra.Command {
	cf := &clientFlags{}
	var o consumeOptions
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print records of a topic",
		Long: `Print the records of TOPIC, by default each value on a line, from the
earliest record up to the end offsets current when the command started.
--follow keeps waiting for new records instead; --max stops after N.

Without --group every partition (or each --partition) is read from --from:
earliest, latest, an OFFSET (the same in every partition; clamped to the
partition's offsets) or an RFC3339 time (the first record at or after it,
through the server's time index). With --group the command joins the
consumer group, reads the partitions the group assigns it from the group's
committed offsets, and commits what it printed; --from then applies only
to partitions without a committed offset.

--format prints each record through a template: %v value, %k key,
%t topic, %p partition, %o offset, %T timestamp (RFC3339, UTC),
%h headers (k=v,k=v), %% a percent sign; \n, \t and \\ are escapes.
The default is '%v\n'.

-o json prints one JSON object per record and line:
  {"topic": T, "partition": N, "offset": N, "timestamp": RFC3339,
   "key": STRING|null, "value": STRING|null,
   "headers": [{"key": K, "value": STRING}, ...]}
A key, value or header value that is not valid UTF-8 is base64 and marked
by "key_encoding", "value_encoding" or the header's "value_encoding":
"base64".`,
		Example: `  herald consume orders --max 10
  herald consume orders --from 2026-01-02T15:04:05Z -o json
  herald consume orders --group billing --follow --format '%k=%v\n'`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runConsume(cmd.Context(), cf, &o, args[0], cmd.OutOrStdout()))
		},
	}
	addClientFlags(cmd, cf)
	f := cmd.Flags()
	f.StringVarP(&o.group, "group", "g", "", "consume as a member of consumer group `G` and commit offsets")
	f.StringVar(&o.from, "from", "earliest", "where to start: earliest, latest, an `OFFSET` or an RFC3339 time")
	f.Int32SliceVarP(&o.partitions, "partition", "p", nil, "read only partition `N` (repeatable; not with --group)")
	f.IntVarP(&o.max, "max", "n", 0, "stop after `N` records (0: no limit)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep waiting for new records")
	f.StringVar(&o.format, "format", `%v\n`, "print each record through this `template` (see above)")
	return cmd
}

// startPosition is a parsed --from.
type startPosition struct {
	kind   string // "earliest", "latest", "offset", "time"
	offset int64
	millis int64
}

func parseFrom(s string) (startPosition, error) {
	switch s {
	case "earliest", "beginning":
		return startPosition{kind: "earliest"}, nil
	case "latest", "end":
		return startPosition{kind: "latest"}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return startPosition{kind: "offset", offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return startPosition{kind: "time", millis: t.UnixMilli()}, nil
	}
	return startPosition{}, usageErrorf("--from %q: want earliest, latest, an offset or an RFC3339 time", s)
}

// kgoOffset is where a group member starts in a partition without a
// committed offset.
func (sp startPosition) kgoOffset() kgo.Offset {
	switch sp.kind {
	case "latest":
		return kgo.NewOffset().AtEnd()
	case "offset":
		return kgo.NewOffset().At(sp.offset)
	case "time":
		return kgo.NewOffset().AfterMilli(sp.millis)
	}
	return kgo.NewOffset().AtStart()
}

// recordFormat is a parsed --format: literal text and directives.
type recordFormat []formatPart

type formatPart struct {
	lit  string
	verb byte // 0 for a literal
}

func parseFormat(s string) (recordFormat, error) {
	var f recordFormat
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			f = append(f, formatPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c != '%' && c != '\\') || i+1 == len(s) {
			if c == '%' {
				return nil, usageErrorf("--format %q: a lone %% at the end (write %%%% for a percent sign)", s)
			}
			lit.WriteByte(c)
			continue
		}
		i++
		switch d := s[i]; {
		case c == '\\' && d == 'n':
			lit.WriteByte('\n')
		case c == '\\' && d == 't':
			lit.WriteByte('\t')
		case c == '\\' && d == '\\':
			lit.WriteByte('\\')
		case c == '\\':
			lit.WriteByte('\\')
			lit.WriteByte(d)
		case d == '%':
			lit.WriteByte('%')
		case strings.IndexByte("vktpoTh", d) >= 0:
			flush()
			f = append(f, formatPart{verb: d})
		default:
			return nil, usageErrorf("--format %q: unknown directive %%%c (want %%v %%k %%t %%p %%o %%T %%h or %%%%)", s, d)
		}
	}
	flush()
	return f, nil
}

func (f recordFormat) write(w *bufio.Writer, r *kgo.Record) {
	for _, p := range f {
		switch p.verb {
		case 0:
			w.WriteString(p.lit)
		case 'v':
			w.Write(r.Value)
		case 'k':
			w.Write(r.Key)
		case 't':
			w.WriteString(r.Topic)
		case 'p':
			w.WriteString(strconv.Itoa(int(r.Partition)))
		case 'o':
			w.WriteString(strconv.FormatInt(r.Offset, 10))
		case 'T':
			w.WriteString(r.Timestamp.UTC().Format(time.RFC3339Nano))
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					w.WriteByte(',')
				}
				w.WriteString(h.Key)
				w.WriteByte('=')
				w.Write(h.Value)
			}
		}
	}
}

// jsonRecord is a record as consume -o json prints it.
type jsonRecord struct {
	Topic         string       `json:"topic"`
	Partition     int32        `json:"partition"`
	Offset        int64        `json:"offset"`
	Timestamp     string       `json:"timestamp"`
	Key           *string      `json:"key"`
	KeyEncoding   string       `json:"key_encoding,omitempty"`
	Value         *string      `json:"value"`
	ValueEncoding string       `json:"value_encoding,omitempty"`
	Headers       []jsonHeader `json:"headers"`
}

type jsonHeader struct {
	Key           string  `json:"key"`
	Value         *string `json:"value"`
	ValueEncoding string  `json:"value_encoding,omitempty"`
}

// jsonBytes is b as a JSON string: itself if valid UTF-8, else base64 with
// encoding "base64"; nil stays null.
func jsonBytes(b []byte) (s *string, encoding string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		v := string(b)
		return &v, ""
	}
	v := base64.StdEncoding.EncodeToString(b)
	return &v, "base64"
}

func toJSONRecord(r *kgo.Record) jsonRecord {
	j := jsonRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano), Headers: []jsonHeader{}}
	j.Key, j.KeyEncoding = jsonBytes(r.Key)
	j.Value, j.ValueEncoding = jsonBytes(r.Value)
	for _, h := range r.Headers {
		jh := jsonHeader{Key: h.Key}
		jh.Value, jh.ValueEncoding = jsonBytes(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	return j
}

// consumeState tracks, without --follow, which partitions still have
// records before the end offsets of the start; the group callbacks update
// the assignment concurrently with the poll loop.
type consumeState struct {
	end map[int32]int64 // end offsets at the start
	mu  struct {
		sync.Mutex
		pos      map[int32]int64 // next offset to print
		assigned map[int32]bool  // with a group: the partitions this member has
		joined   bool
	}
}

// doneLocked reports whether partition p has nothing left to print.
func (s *consumeState) doneLocked(p int32) bool { return s.mu.pos[p] >= s.end[p] }

// allDone reports whether every partition this consumer reads is done.
func (s *consumeState) allDone(group bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if group && !s.mu.joined {
		return false
	}
	for p := range s.mu.pos {
		if group && !s.mu.assigned[p] {
			continue
		}
		if !s.doneLocked(p) {
			return false
		}
	}
	return true
}

func runConsume(ctx context.Context, cf *clientFlags, o *consumeOptions, topic string, out io.Writer) error {
	if err := cf.check(); err != nil {
		return err
	}
	from, err := parseFrom(o.from)
	if err != nil {
		return err
	}
	format, err := parseFormat(o.format)
	if err != nil {
		return err
	}
	if o.max < 0 {
		return usageErrorf("--max %d: want 0 (no limit) or more", o.max)
	}
	if o.group != "" && len(o.partitions) > 0 {
		return usageErrorf("--partition and --group: a group member reads the partitions the group assigns it")
	}

	// Plan with an admin client: the topic, its partitions and where each
	// one starts and ends.
	adm, err := cf.newAdmin()
	if err != nil {
		return err
	}
	defer adm.Close()
	pctx, cancel := cf.withTimeout(ctx)
	defer cancel()
	tds, err := adm.ListTopicsWithInternal(pctx, topic)
	if err != nil {
		return cf.requestError(err)
	}
	if err := tds[topic].Err; err != nil {
		return kafkaError(topicRef(topic), err, "")
	}
	all := tds[topic].Partitions.Numbers()
	parts := all
	if len(o.partitions) > 0 {
		parts = nil
		for _, p := range o.partitions {
			if !slices.Contains(all, p) {
				return usageErrorf("--partition %d: topic %s has %d partitions (0 to %d)", p, topic, len(all), len(all)-1)
			}
			if !slices.Contains(parts, p) {
				parts = append(parts, p)
			}
		}
	}
	starts, err := adm.ListStartOffsets(pctx, topic)
	if err != nil {
		return cf.requestError(err)
	}
	ends, err := adm.ListEndOffsets(pctx, topic)
	if err != nil {
		return cf.requestError(err)
	}
	var byTime kadm.ListedOffsets
	if from.kind == "time" {
		if byTime, err = adm.ListOffsetsAfterMilli(pctx, from.millis, topic); err != nil {
			return cf.requestError(err)
		}
	}
	committed := map[int32]int64{}
	if o.group != "" {
		ors, err := adm.FetchOffsetsForTopics(pctx, o.group, topic)
		if err != nil {
			return kafkaError(groupRef(o.group), cf.requestError(err), "")
		}
		for p, r := range ors[topic] {
			if r.Err == nil && r.At >= 0 {
				committed[p] = r.At
			}
		}
	}
	st := &consumeState{end: map[int32]int64{}}
	st.mu.pos = map[int32]int64{}
	st.mu.assigned = map[int32]bool{}
	startAt := map[int32]kgo.Offset{}
	for _, p := range parts {
		s, _ := starts.Lookup(topic, p)
		e, _ := ends.Lookup(topic, p)
		for _, err := range []error{s.Err, e.Err} {
			if err != nil {
				return kafkaError(fmt.Sprintf("partition %s/%d", topic, p), err, "")
			}
		}
		var pos int64
		if c, ok := committed[p]; ok {
			pos = c
		} else {
			switch from.kind {
			case "earliest":
				pos = s.Offset
			case "latest":
				pos = e.Offset
			case "offset":
				pos = from.offset
			case "time":
				t, _ := byTime.Lookup(topic, p)
				if t.Err != nil {
					return kafkaError(fmt.Sprintf("partition %s/%d", topic, p), t.Err, "")
				}
				pos = t.Offset
			}
		}
		pos = min(max(pos, s.Offset), e.Offset)
		st.end[p], st.mu.pos[p] = e.Offset, pos
		if o.follow || pos < e.Offset {
			startAt[p] = kgo.NewOffset().At(pos)
		}
	}
	if !o.follow && len(startAt) == 0 {
		return nil // nothing between the start positions and the end
	}
	if o.follow {
		st.end = nil // never done
		for p := range st.mu.pos {
			st.mu.pos[p] = -1
		}
	}

	// NB: control records (transaction markers) are kept so that the
	// position passes them; a marker can be a partition's last offset, and
	// without it a bounded consume would wait for a record that never comes.
	opts := []kgo.Opt{kgo.FetchMaxWait(time.Second), kgo.KeepControlRecords()}
	if o.group == "" {
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: startAt}))
	} else {
		assign := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
			return func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				st.mu.Lock()
				defer st.mu.Unlock()
				st.mu.joined = true
				for _, p := range m[topic] {
					st.mu.assigned[p] = add
				}
			}
		}
		opts = append(opts,
			kgo.ConsumerGroup(o.group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(from.kgoOffset()),
			kgo.AutoCommitMarks(),
			kgo.OnPartitionsAssigned(assign(true)), kgo.OnPartitionsRevoked(assign(false)), kgo.OnPartitionsLost(assign(false)),
		)
	}
	cl, err := cf.newClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	w := bufio.NewWriterSize(out, 64<<10)
	enc := json.NewEncoder(w)
	printed := 0
	runErr := func() error {
		lastProgress := time.Now()
		for (o.max == 0 || printed < o.max) && (o.follow || !st.allDone(o.group != "")) {
			pollCtx, cancel := ctx, context.CancelFunc(func() {})
			if !o.follow {
				// Without --follow there are records to come; a server
				// that stops sending them is an error, not a wait.
				pollCtx, cancel = context.WithDeadline(ctx, lastProgress.Add(cf.timeout))
			}
			n := 10000
			if o.max > 0 {
				n = o.max - printed
			}
			fs := cl.PollRecords(pollCtx, n)
			cancel()
			if fs.IsClientClosed() || ctx.Err() != nil {
				return nil
			}
			for _, fe := range fs.Errors() {
				if errors.Is(fe.Err, context.DeadlineExceeded) {
					return fmt.Errorf("no records from %s within %s (--timeout), though the end offsets were not reached", cf.brokers, cf.timeout)
				}
				return kafkaError(fmt.Sprintf("partition %s/%d", fe.Topic, fe.Partition), fe.Err, "")
			}
			var marks []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) {
				if o.max > 0 && printed >= o.max {
					return
				}
				st.mu.Lock()
				skip := !o.follow && (r.Offset >= st.end[r.Partition] || st.doneLocked(r.Partition))
				if !skip && st.mu.pos[r.Partition] < r.Offset+1 {
					st.mu.pos[r.Partition] = r.Offset + 1
				}
				st.mu.Unlock()
				if skip || r.Attrs.IsControl() {
					return
				}
				if cf.json() {
					enc.Encode(toJSONRecord(r))
				} else {
					format.write(w, r)
				}
				printed++
				marks = append(marks, r)
				lastProgress = time.Now()
			})
			if err := w.Flush(); err != nil {
				return err
			}
			if o.group != "" && len(marks) > 0 {
				cl.MarkCommitRecords(marks...)
			}
		}
		return nil
	}()
	if o.group != "" {
		// Commit exactly what was printed before leaving the group.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cf.timeout)
		defer cancel()
		if err := cl.CommitMarkedOffsets(cctx); err != nil && runErr == nil {
			runErr = fmt.Errorf("commit offsets of %s: %w", groupRef(o.group), err)
		}
	}
	return runErr
}
