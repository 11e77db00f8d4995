package httpapi

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/commitlog/batch"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/internal/httpjson"
)

// RedriveRequest is the body of POST /v1/topics/{topic}/deadletters:redrive.
// The filters are GET .../deadletters's.
type RedriveRequest struct {
	Partitions  []int32 `json:"partitions"`
	Reason      string  `json:"reason"`
	SourceTopic string  `json:"sourceTopic"`
	Group       string  `json:"group"`
	Error       string  `json:"error"`
	Since       string  `json:"since"`
	Until       string  `json:"until"`
	// To publishes every record to this topic instead of its original.
	To string `json:"to"`
	// SamePartition publishes to the original partition instead of the
	// key's.
	SamePartition bool `json:"samePartition"`
	// DryRun counts without publishing or committing progress.
	DryRun bool `json:"dryRun"`
	// ProgressGroup is the consumer group progress is committed under
	// (default: as `herald dlq redrive` names it, so both share it).
	ProgressGroup string `json:"progressGroup"`
	// FromStart ignores earlier progress.
	FromStart bool `json:"fromStart"`
	// MaxRecords bounds the records one request redrives (default 10,000);
	// More says when there are more to do: call again.
	MaxRecords int `json:"maxRecords"`
}

type redriveTarget struct {
	Topic     string `json:"topic"`
	Records   int64  `json:"records"`
	Published int64  `json:"published"`
}

type redrivePartition struct {
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
	Committed *int64 `json:"committed"`
}

type redriveResponse struct {
	Topic         string             `json:"topic"`
	Executed      bool               `json:"executed"`
	ProgressGroup string             `json:"progressGroup"`
	Matched       int64              `json:"matched"`
	Published     int64              `json:"published"`
	Targets       []redriveTarget    `json:"targets"`
	Partitions    []redrivePartition `json:"partitions"`
	More          bool               `json:"more"`
}

// maxRedriveBytes bounds the record bytes one redrive request holds.
const maxRedriveBytes = 16 << 20

// redriveRec is a dead letter to publish.
type redriveRec struct {
	dlqOffset     int64
	target        string
	origPartition int32
	rec           batch.Rec
}

func defaultProgressGroup(topic string, f *dlFilter, parts []int32) string {
	var kv []string
	for _, k := range []string{"error", "reason", "source-topic", "group", "since", "until"} {
		if v := f.raw[k]; v != "" {
			kv = append(kv, k+"="+v)
		}
	}
	ps := slices.Clone(parts)
	slices.Sort(ps)
	for _, p := range slices.Compact(ps) {
		kv = append(kv, "partition="+strconv.Itoa(int(p)))
	}
	name := "herald-dlq-redrive-" + topic
	if len(kv) == 0 {
		return name
	}
	h := fnv.New32a()
	io.WriteString(h, strings.Join(kv, "\x00"))
	return fmt.Sprintf("%s-%08x", name, h.Sum32())
}

// redrive serves POST /v1/topics/{topic}/deadletters:redrive: `herald dlq
// redrive` over HTTP. Matching dead letters are published to their
// original topic (or To) without the herald-dlq-* headers and with
// herald-redriven-from, per dead-letter partition in order, and the
// offset reached is committed under the progress group, so the next call
// continues there. Where a publish fails, progress stops before the first
// failed record (a retry publishes it, and those after it, again).
func (a *API) redrive(w http.ResponseWriter, r *http.Request) error {
	if err := a.needGroups(); err != nil {
		return err
	}
	name := r.PathValue("topic")
	ti, err := a.b.Topic(name)
	if err != nil {
		return topicErr(name, err)
	}
	var req RedriveRequest
	if err := httpjson.Decode(w, r, a.cfg.MaxBodyBytes, &req); err != nil {
		return err
	}
	f, err := parseDLFilter(func(k string) string {
		return map[string]string{"reason": req.Reason, "sourceTopic": req.SourceTopic, "group": req.Group,
			"error": req.Error, "since": req.Since, "until": req.Until}[k]
	})
	if err != nil {
		return err
	}
	if req.MaxRecords == 0 {
		req.MaxRecords = 10000
	}
	if req.MaxRecords < 1 || req.MaxRecords > 100000 {
		return invalid("maxRecords", "%d: want 1 to 100000", req.MaxRecords)
	}
	parts := req.Partitions
	for i, p := range parts {
		if p < 0 || int(p) >= ti.Partitions {
			return invalid("partitions["+strconv.Itoa(i)+"]", "%d: topic %q has partitions 0 to %d", p, name, ti.Partitions-1)
		}
	}
	group := cmp.Or(req.ProgressGroup, defaultProgressGroup(name, f, parts))
	if len(parts) == 0 {
		for p := 0; p < ti.Partitions; p++ {
			parts = append(parts, int32(p))
		}
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	ctx := r.Context()

	var progress map[groups.TopicPartition]groups.Offset
	if !req.FromStart {
		tps := make([]groups.TopicPartition, len(parts))
		for i, p := range parts {
			tps[i] = groups.TopicPartition{Topic: name, Partition: p}
		}
		if progress, err = a.g.FetchOffsets(ctx, group, tps); err != nil {
			return err
		}
	}

	// Pass 1: gather what to publish, bounded by MaxRecords and bytes.
	out := redriveResponse{Topic: name, Executed: !req.DryRun, ProgressGroup: group, Targets: []redriveTarget{}, Partitions: []redrivePartition{}}
	byPart := map[int32][]redriveRec{}
	targets := map[string]*redriveTarget{}
	budget, held := req.MaxRecords, 0
	for _, p := range parts {
		start, _, lso, err := a.b.StableOffsets(name, p)
		if err != nil {
			return topicErr(name, err)
		}
		from := start
		if o, ok := progress[groups.TopicPartition{Topic: name, Partition: p}]; ok {
			from = min(max(from, o.Offset), lso)
		}
		rp := redrivePartition{Partition: p, From: from, To: from}
		if budget > 0 && held < maxRedriveBytes && from < lso {
			next, _, err := a.scan(ctx, name, p, from, budget, 1<<30, 0, func(off, ts int64, rec *batch.Record) bool {
				if off >= lso || held >= maxRedriveBytes {
					return false
				}
				d, kept := parseDeadLetter(rec)
				if !f.matches(&d) {
					return false
				}
				target := cmp.Or(req.To, d.SourceTopic)
				orig := int32(-1)
				if d.SourcePartition != nil {
					orig = *d.SourcePartition
				}
				hs := make([]batch.RecordHeader, 0, len(kept)+1)
				for _, h := range kept {
					if string(h.Key) != client.HeaderRedrivenFrom {
						hs = append(hs, batch.RecordHeader{Key: clone(h.Key), Value: clone(h.Value)})
					}
				}
				hs = append(hs, batch.RecordHeader{Key: []byte(client.HeaderRedrivenFrom), Value: fmt.Appendf(nil, "%s/%d/%d", name, p, off)})
				byPart[p] = append(byPart[p], redriveRec{dlqOffset: off, target: target, origPartition: orig,
					rec: batch.Rec{Timestamp: ts, Key: clone(rec.Key), Value: clone(rec.Value), Headers: hs}})
				held += len(rec.Key) + len(rec.Value)
				return true
			})
			if err != nil {
				return err
			}
			// NB: scan may run past lso (records appended meanwhile); they
			// were not taken, so progress stops at lso.
			rp.To = min(next, lso)
			if held >= maxRedriveBytes && len(byPart[p]) > 0 {
				rp.To = min(rp.To, byPart[p][len(byPart[p])-1].dlqOffset+1)
			}
			budget -= len(byPart[p])
		}
		if rp.To < lso {
			out.More = true
		}
		out.Partitions = append(out.Partitions, rp)
	}

	// Check everything before publishing anything.
	tinfo := map[string]broker.TopicInfo{}
	for _, p := range parts {
		for _, rr := range byPart[p] {
			out.Matched++
			if rr.target == "" {
				return invalid("to", "dead letter %s/%d/%d has no %s header (not written by the dead-letter middleware?): give to, or filter it out", name, p, rr.dlqOffset, client.HeaderDLQTopic)
			}
			t := targets[rr.target]
			if t == nil {
				ti, err := a.b.Topic(rr.target)
				if err != nil {
					field := "to"
					if req.To == "" {
						field = "sourceTopic"
					}
					return notFoundf(field, "topic %q (the target of dead letter %s/%d/%d) does not exist: create it, give to, or filter its records out; nothing was published", rr.target, name, p, rr.dlqOffset)
				}
				tinfo[rr.target] = ti
				t = &redriveTarget{Topic: rr.target}
				targets[rr.target] = t
			}
			t.Records++
			if req.SamePartition && (rr.origPartition < 0 || int(rr.origPartition) >= tinfo[rr.target].Partitions) {
				return invalid("samePartition", "dead letter %s/%d/%d came from partition %d, which topic %q does not have", name, p, rr.dlqOffset, rr.origPartition, rr.target)
			}
		}
	}

	if !req.DryRun {
		for i := range out.Partitions {
			rp := &out.Partitions[i]
			reached, err := a.publishRedrive(r, byPart[rp.Partition], tinfo, req.SamePartition, targets)
			if err != nil {
				a.log.Warn("redrive publish failed", "topic", name, "partition", rp.Partition, "err", err)
			}
			commit := rp.To
			if reached >= 0 {
				commit = reached
			}
			if commit > rp.From {
				tp := groups.TopicPartition{Topic: name, Partition: rp.Partition}
				if cerr := a.g.SetOffsets(ctx, group, map[groups.TopicPartition]groups.Offset{tp: {Offset: commit, LeaderEpoch: -1}}); cerr != nil {
					return fmt.Errorf("commit redrive progress of %s/%d under group %s: %w", name, rp.Partition, group, cerr)
				}
				c := commit
				rp.Committed = &c
			}
			if err != nil {
				return fmt.Errorf("redrive of %s/%d failed at offset %d (progress committed up to it under group %s; call again to retry): %w", name, rp.Partition, reached, group, err)
			}
		}
	}
	for _, t := range targets {
		out.Targets = append(out.Targets, *t)
		out.Published += t.Published
	}
	slices.SortFunc(out.Targets, func(x, y redriveTarget) int { return strings.Compare(x.Topic, y.Topic) })
	httpjson.WriteJSON(w, http.StatusOK, out)
	return nil
}

// publishRedrive publishes one dead-letter partition's records, one batch
// per target partition (in dead-letter order within each), durably. On
// failure it returns the dead-letter offset of the first record not
// known to be published (progress may be committed up to it); else -1.
func (a *API) publishRedrive(r *http.Request, recs []redriveRec, tinfo map[string]broker.TopicInfo, same bool, targets map[string]*redriveTarget) (int64, error) {
	type key struct {
		topic string
		part  int32
	}
	var order []key
	groupsOf := map[key][]redriveRec{}
	for _, rr := range recs {
		ti := tinfo[rr.target]
		var p int32
		switch {
		case same:
			p = rr.origPartition
		case rr.rec.Key != nil:
			p = eventlog.PartitionFor(rr.rec.Key, ti.Partitions)
		default:
			p = a.rr.next(ti.Partitions)
		}
		k := key{rr.target, p}
		if _, ok := groupsOf[k]; !ok {
			order = append(order, k)
		}
		groupsOf[k] = append(groupsOf[k], rr)
	}
	failedAt := int64(-1)
	var firstErr error
	for _, k := range order {
		rs := groupsOf[k]
		// One batch per max.message.bytes' worth.
		for len(rs) > 0 {
			n, size := 0, 0
			limit := 1048588
			if v, ok := tinfo[k.topic].Configs[broker.CfgMaxMessageBytes]; ok {
				limit, _ = strconv.Atoi(v)
			}
			for n < len(rs) && (n == 0 || size+recSize(&rs[n].rec) < limit-batch.HeaderSize) {
				size += recSize(&rs[n].rec)
				n++
			}
			chunk := rs[:n]
			rs = rs[n:]
			brs := make([]batch.Rec, len(chunk))
			for i := range chunk {
				brs[i] = chunk[i].rec
			}
			raw, err := batch.Encode(make([]byte, 0, batch.HeaderSize+size+64), batch.BuildOptions{}, brs)
			if err == nil {
				_, err = a.b.Produce(r.Context(), k.topic, k.part, raw, broker.AcksAll)
			}
			if err != nil {
				if failedAt < 0 || chunk[0].dlqOffset < failedAt {
					failedAt = chunk[0].dlqOffset
				}
				if firstErr == nil {
					firstErr = err
				}
				break // the rest of this target partition would be out of order
			}
			targets[k.topic].Published += int64(n)
		}
	}
	return failedAt, firstErr
}

func recSize(r *batch.Rec) int {
	n := len(r.Key) + len(r.Value) + recOverhead
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
