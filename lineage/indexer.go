package lineage

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
)

// Config configures an Indexer.
type Config struct {
	// Log is read for the events (required).
	Log eventlog.Log
	// Topics lists the topics to follow, by name, with their partition
	// counts (required); it is called every poll, so topics created later
	// are followed from their start.
	Topics func() map[string]int
	// Poll is how often the indexer looks for new records once it has
	// caught up (default 100 ms).
	Poll time.Duration
	// Dir, when set, keeps the index in a file there (lineage.idx, see
	// persist.go), so that a restart loads it and reads only the records
	// written after it instead of every topic from its start. The
	// directory is created if needed.
	Dir string
	// Logger (nil: slog.Default()) and Registerer (nil: no metrics).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

type tp struct {
	topic string
	part  int32
}

// Indexer follows the topics and indexes their events.
type Indexer struct {
	cfg      Config
	idx      *Index
	log      *slog.Logger
	next     map[tp]int64 // owned by the run goroutine
	caughtUp atomic.Bool
	file     *indexFile // nil: not persisted; owned by the run goroutine
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once

	indexed, skipped prometheus.Counter
}

// NewIndexer returns an indexer over cfg.Log; Start runs it.
func NewIndexer(cfg Config) (*Indexer, error) {
	if cfg.Log == nil || cfg.Topics == nil {
		return nil, errors.New("lineage: Config.Log and Config.Topics are required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	x := &Indexer{cfg: cfg, idx: NewIndex(), log: cfg.Logger, next: map[tp]int64{}, done: make(chan struct{}),
		indexed: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_lineage_indexed_events_total",
			Help: "Events added to the lineage index."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_lineage_skipped_records_total",
			Help: "Records the lineage indexer skipped: not CloudEvents, or an id seen before."}),
	}
	if r := cfg.Registerer; r != nil {
		events := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_lineage_events",
			Help: "Events in the lineage index."}, func() float64 { return float64(x.idx.Len()) })
		for _, c := range []prometheus.Collector{x.indexed, x.skipped, events} {
			if err := r.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return x, nil
}

// Index is the index the indexer fills.
func (x *Indexer) Index() *Index { return x.idx }

// CaughtUp says the indexer has read every partition to the end at least
// once since it started.
func (x *Indexer) CaughtUp() bool { return x.caughtUp.Load() }

// Start runs the indexer until Close or ctx ends.
func (x *Indexer) Start(ctx context.Context) {
	ctx, x.cancel = context.WithCancel(ctx)
	go x.run(ctx)
}

// Close stops the indexer and waits for it.
func (x *Indexer) Close() error {
	x.once.Do(func() {
		if x.cancel != nil {
			x.cancel()
			<-x.done
		}
	})
	return nil
}

func (x *Indexer) run(ctx context.Context) {
	defer close(x.done)
	t := time.NewTicker(x.cfg.Poll)
	defer t.Stop()
	began := time.Now()
	if x.cfg.Dir != "" {
		x.load(ctx)
		defer func() {
			if x.file != nil {
				if err := x.file.close(x.next); err != nil {
					x.log.Error("lineage: closing the index file", "err", err)
				}
			}
		}()
	}
	for {
		if x.round(ctx) && !x.caughtUp.Load() {
			x.caughtUp.Store(true)
			x.log.Info("lineage index caught up", "events", x.idx.Len(), "took", time.Since(began).Round(time.Millisecond))
		}
		if x.file != nil && x.file.dirty && time.Since(x.file.lastCkpt) >= time.Second {
			if err := x.file.checkpoint(x.next, false); err != nil {
				x.filed(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round reads every partition to its end; it says whether it got there.
func (x *Indexer) round(ctx context.Context) bool {
	all := true
	lastReport := time.Now()
	for topic, parts := range x.cfg.Topics() {
		for p := range int32(parts) {
			for {
				if ctx.Err() != nil {
					return false
				}
				more, err := x.readOnce(ctx, tp{topic, p})
				if err != nil {
					if !errors.Is(err, context.Canceled) && !errors.Is(err, eventlog.ErrClosed) {
						x.log.Debug("lineage: reading", "topic", topic, "partition", p, "err", err)
					}
					all = false
					break
				}
				if !more {
					break
				}
				if !x.caughtUp.Load() && time.Since(lastReport) > 5*time.Second {
					lastReport = time.Now()
					x.log.Info("lineage index catching up", "events", x.idx.Len(), "topic", topic, "partition", p)
				}
			}
		}
	}
	return all
}

// readOnce indexes one read's worth of a partition; more says there may be
// more to read now.
func (x *Indexer) readOnce(ctx context.Context, k tp) (more bool, err error) {
	off, ok := x.next[k]
	start, end, err := x.cfg.Log.Offsets(ctx, k.topic, k.part)
	if err != nil {
		return false, err
	}
	if !ok || off < start || off > end {
		off = start // new, or retention passed us, or the topic was deleted and created again
	}
	if off >= end {
		x.next[k] = off
		return false, nil
	}
	recs, err := x.cfg.Log.Read(ctx, k.topic, k.part, off, eventlog.ReadOptions{MaxBytes: 1 << 20})
	if errors.Is(err, eventlog.ErrOffsetOutOfRange) {
		delete(x.next, k) // retention passed us: from the new start
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		off = r.Offset + 1
		e, ok := x.add(r)
		if !ok {
			x.skipped.Inc()
			continue
		}
		x.indexed.Inc()
		if x.file != nil {
			if err := x.file.entry(e); err != nil {
				x.filed(err)
			}
		}
	}
	x.next[k] = off
	return len(recs) > 0, nil
}

func (x *Indexer) add(r eventlog.Record) (*Entry, bool) {
	m := event.Message{Key: r.Key, Value: r.Value, Headers: make([]event.Header, len(r.Headers))}
	for i, h := range r.Headers {
		m.Headers[i] = event.Header{Key: h.Key, Value: h.Value}
	}
	e, err := event.DecodeAny(m)
	if err != nil {
		return nil, false
	}
	t := e.Time
	if t.IsZero() {
		t = r.Timestamp
	}
	en := &Entry{ID: e.ID, Source: e.Source, Type: e.Type, Subject: e.Subject,
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Time: t.UTC(),
		CorrelationID: e.CorrelationID, CausationID: e.CausationID}
	return en, x.idx.Add(*en)
}

// filed gives up the index file after a write failed: the index goes on in
// memory, and the next start rebuilds what the file lacks from the topics.
func (x *Indexer) filed(err error) {
	x.log.Error("lineage: writing the index file failed; going on in memory only", "file", x.file.path, "err", err)
	x.file.f.Close()
	x.file = nil
}

// load reads the index file into the index, keeping only the entries of
// partitions that exist and records retention has not removed (what a
// rebuild from the topics would index), and resumes the topics after its
// last checkpoint. A file that does not check is set aside and the topics
// are read from their start; a torn tail is cut; a file that held
// entries no longer wanted is rewritten.
func (x *Indexer) load(ctx context.Context) {
	began := time.Now()
	path := filepath.Join(x.cfg.Dir, indexFileName)
	if err := os.MkdirAll(x.cfg.Dir, 0o755); err != nil {
		x.log.Error("lineage: cannot create the index directory; the index is kept in memory only", "dir", x.cfg.Dir, "err", err)
		return
	}
	live := map[tp]int64{} // partition -> first offset still in the log
	for topic, parts := range x.cfg.Topics() {
		for p := range int32(parts) {
			start, _, err := x.cfg.Log.Offsets(ctx, topic, p)
			if err == nil {
				live[tp{topic, p}] = start
			}
		}
	}
	loaded, dropped, rewrite := 0, 0, false
	var next map[tp]int64
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		rewrite = true
	case err != nil:
		x.log.Error("lineage: cannot open the index file; the index is kept in memory only", "file", path, "err", err)
		return
	default:
		var valid int64
		next, valid, err = readIndexFile(f, func(e *Entry) {
			if start, ok := live[tp{e.Topic, e.Partition}]; !ok || e.Offset < start {
				dropped++
				return
			}
			if x.idx.Add(*e) {
				loaded++
			}
		})
		size := int64(-1)
		if st, serr := f.Stat(); serr == nil {
			size = st.Size()
		}
		f.Close()
		switch {
		case err != nil:
			bad := path + ".corrupt"
			x.log.Error("lineage: the index file is damaged; set aside, the index is rebuilt from the topics", "file", path, "moved_to", bad, "err", err)
			os.Rename(path, bad)
			next, rewrite = nil, true
		case valid != size:
			x.log.Warn("lineage: the index file ends in a torn write; cut", "file", path, "dropped_bytes", size-valid)
			rewrite = true
		}
	}
	for k, off := range next {
		if _, ok := live[k]; ok {
			x.next[k] = off
		}
	}
	if dropped > 0 {
		rewrite = true
	}
	if rewrite {
		x.file, err = createIndexFile(path, x.idx, x.next)
	} else {
		x.file, err = openIndexFile(path)
	}
	if err != nil {
		x.log.Error("lineage: cannot write the index file; the index is kept in memory only", "file", path, "err", err)
		x.file = nil
	}
	x.log.Info("lineage index loaded", "file", path, "events", loaded, "dropped", dropped, "partitions", len(x.next),
		"took", time.Since(began).Round(time.Millisecond))
}
