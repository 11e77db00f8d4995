package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog/batch"
)

// Publish deduplication.
//
// Every event published over HTTP carries its deduplication key in the
// record header DedupHeader: the Idempotency-Key request header (with the
// event's index in the request when it holds several), or else the
// event's source and id. Within a topic's window (the topic config
// herald.dedup.window.ms, default 2 minutes, 0 = off) a key seen again is
// acknowledged with the original partition and offset and not stored.
//
// The index of keys is memory only; it is rebuilt after a restart the
// first time a topic is published to, by reading each partition from the
// offset of (now - window) to its end and collecting the header. So the
// window survives restarts exactly as far as the log does.

// DedupHeader is the record header holding an HTTP-published event's
// deduplication key. Frozen: restarts rebuild the window from it.
const DedupHeader = "herald-dedup-key"

// CfgDedupWindowMs is the topic config naming the deduplication window in
// milliseconds (0 turns deduplication off).
const CfgDedupWindowMs = broker.CfgDedupWindowMs

// DefaultDedupWindow is the window of a topic that does not set one.
const DefaultDedupWindow = 2 * time.Minute

// dedupWindow reads a topic's window from its configs.
func dedupWindow(configs map[string]string) time.Duration {
	v, ok := configs[CfgDedupWindowMs]
	if !ok {
		return DefaultDedupWindow
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return DefaultDedupWindow // the broker validated it; not reached
	}
	return time.Duration(n) * time.Millisecond
}

type dedupIndex struct {
	b   *broker.Broker
	now func() time.Time
	log *slog.Logger

	mu        sync.Mutex
	topics    map[string]*topicDedup
	lastSweep time.Time
}

// topicDedup is one topic's window. Lock order: dedupIndex.mu, then
// topicDedup.mu (never held together in practice).
type topicDedup struct {
	name string
	id   [16]byte

	mu      sync.Mutex
	loaded  bool
	entries map[string]*dedupEntry
	fifo    []*dedupEntry // resolved entries, oldest first
}

// dedupEntry is one key: pending while its publish is in flight (done
// open), then resolved with the stored position.
type dedupEntry struct {
	key       string
	partition int32
	offset    int64
	at        time.Time
	pending   bool
	done      chan struct{}
}

func newDedupIndex(b *broker.Broker, now func() time.Time, log *slog.Logger) *dedupIndex {
	return &dedupIndex{b: b, now: now, log: log, topics: map[string]*topicDedup{}}
}

// topic returns the window of the topic with this id; a topic deleted and
// created again under the same name starts empty.
func (d *dedupIndex) topic(name string, id [16]byte) *topicDedup {
	d.mu.Lock()
	defer d.mu.Unlock()
	// NB: topics deleted behind the API's back (over Kafka) would keep
	// their windows forever; drop them now and then.
	if now := time.Now(); now.Sub(d.lastSweep) > time.Minute {
		d.lastSweep = now
		for n, td := range d.topics {
			if ti, err := d.b.Topic(n); err != nil || ti.ID != td.id {
				delete(d.topics, n)
			}
		}
	}
	td := d.topics[name]
	if td == nil || td.id != id {
		td = &topicDedup{name: name, id: id, entries: map[string]*dedupEntry{}}
		d.topics[name] = td
	}
	return td
}

func (d *dedupIndex) forget(name string) {
	d.mu.Lock()
	delete(d.topics, name)
	d.mu.Unlock()
}

// reservation is reserve's answer for one key of a request.
type reservation struct {
	entry *dedupEntry // nil for records without a key
	own   bool        // this request must store it and resolve the entry
	alias int         // >= 0: same key as an earlier record of this request
}

// reserve looks keys up, waiting while another request is storing one of
// them. For each key it returns the resolved entry (a duplicate), or a
// pending entry this request now owns and must resolve with complete.
func (d *dedupIndex) reserve(ctx context.Context, td *topicDedup, window time.Duration, keys []string) ([]reservation, error) {
	for {
		td.mu.Lock()
		if !td.loaded {
			if err := d.loadLocked(ctx, td, window); err != nil {
				td.mu.Unlock()
				return nil, err
			}
		}
		td.expireLocked(d.now().Add(-window))
		var wait chan struct{}
		for _, k := range keys {
			if e := td.entries[k]; k != "" && e != nil && e.pending {
				wait = e.done
				break
			}
		}
		if wait != nil {
			td.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		res := make([]reservation, len(keys))
		first := map[string]int{}
		for i, k := range keys {
			res[i].alias = -1
			if k == "" {
				continue
			}
			if j, ok := first[k]; ok {
				res[i].alias = j
				continue
			}
			first[k] = i
			if e := td.entries[k]; e != nil {
				res[i].entry = e
				continue
			}
			e := &dedupEntry{key: k, pending: true, done: make(chan struct{})}
			td.entries[k] = e
			res[i] = reservation{entry: e, own: true, alias: -1}
		}
		td.mu.Unlock()
		return res, nil
	}
}

// complete resolves the entries a request owns: stored[i] says whether
// record i was stored at pos[i]. Entries not stored are dropped so a retry
// can store them.
func (d *dedupIndex) complete(td *topicDedup, res []reservation, stored []bool, parts []int32, offs []int64) {
	now := d.now()
	td.mu.Lock()
	defer td.mu.Unlock()
	for i, r := range res {
		if !r.own {
			continue
		}
		e := r.entry
		if stored[i] {
			e.partition, e.offset, e.at, e.pending = parts[i], offs[i], now, false
			td.fifo = append(td.fifo, e)
		} else if td.entries[e.key] == e {
			delete(td.entries, e.key)
		}
		close(e.done)
		e.done = nil // waiters hold their own reference; keep the window small
	}
}

// expireLocked drops resolved entries older than cutoff.
func (td *topicDedup) expireLocked(cutoff time.Time) {
	n := 0
	for n < len(td.fifo) && td.fifo[n].at.Before(cutoff) {
		e := td.fifo[n]
		if td.entries[e.key] == e {
			delete(td.entries, e.key)
		}
		td.fifo[n] = nil
		n++
	}
	if n > 0 {
		td.fifo = td.fifo[n:]
		if cap(td.fifo) > 1024 && len(td.fifo) < cap(td.fifo)/4 {
			td.fifo = slices.Clone(td.fifo)
		}
	}
}

// loadLocked rebuilds the window from the log: every record of the last
// window with a DedupHeader.
func (d *dedupIndex) loadLocked(ctx context.Context, td *topicDedup, window time.Duration) error {
	start := time.Now()
	parts, err := d.b.Partitions(td.name)
	if err != nil {
		return err
	}
	since := d.now().Add(-window)
	n := 0
	var it batch.Iter
	for _, p := range parts {
		off, _, err := d.b.ListOffset(ctx, td.name, p.Partition, since.UnixMilli())
		if err != nil {
			return fmt.Errorf("rebuild deduplication window of %s/%d: %w", td.name, p.Partition, err)
		}
		if off < 0 {
			continue // nothing that new
		}
		var buf []byte
		for {
			f, err := d.b.Fetch(ctx, td.name, p.Partition, off, 1<<20, buf[:0])
			if err != nil {
				return fmt.Errorf("rebuild deduplication window of %s/%d at %d: %w", td.name, p.Partition, off, err)
			}
			if len(f.Records) == 0 {
				break
			}
			buf = f.Records
			next := off
			for pos := 0; pos < len(f.Records); {
				h, err := batch.ParseHeader(f.Records[pos:])
				if err != nil {
					return fmt.Errorf("rebuild deduplication window of %s/%d at %d: %w", td.name, p.Partition, off, err)
				}
				raw := f.Records[pos : pos+h.Size()]
				pos += h.Size()
				next = h.LastOffset() + 1
				if h.Control() {
					continue
				}
				if err := it.Reset(raw); err != nil {
					return fmt.Errorf("rebuild deduplication window of %s/%d: %w", td.name, p.Partition, err)
				}
				for it.Next() {
					if it.Offset() < off {
						continue
					}
					for _, hd := range it.Record().Headers {
						if string(hd.Key) == DedupHeader {
							e := &dedupEntry{key: string(hd.Value), partition: p.Partition, offset: it.Offset(),
								at: time.UnixMilli(it.Timestamp())}
							if old := td.entries[e.key]; old == nil {
								td.entries[e.key] = e
								td.fifo = append(td.fifo, e)
								n++
							}
							break
						}
					}
				}
				if err := it.Err(); err != nil {
					return fmt.Errorf("rebuild deduplication window of %s/%d: %w", td.name, p.Partition, err)
				}
			}
			if next <= off {
				break
			}
			off = next
		}
	}
	slices.SortStableFunc(td.fifo, func(a, b *dedupEntry) int { return a.at.Compare(b.at) })
	td.loaded = true
	d.log.Debug("deduplication window rebuilt", "topic", td.name, "keys", n, "window", window, "took", time.Since(start))
	return nil
}
