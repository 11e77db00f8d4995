package saga

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// view holds the latest committed state of every instance, read from the
// state topic (all partitions, read_committed), so any engine answers
// lookups by id in a map access.
type view struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	// updates counts state records applied.
	updates atomic.Int64
	mu      struct {
		sync.RWMutex
		m map[string]*Instance
	}
}

func startView(cfg Config) (*view, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.StateTopic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100e6)}, cfg.KgoOptions...)...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &view{cl: cl, cancel: cancel, done: make(chan struct{})}
	v.mu.m = map[string]*Instance{}
	log := cfg.Logger.With("component", "saga-view")
	go func() {
		defer close(v.done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			for _, fe := range fs.Errors() {
				if !errors.Is(fe.Err, context.Canceled) {
					log.Warn("state view fetch error", "partition", fe.Partition, "err", fe.Err)
				}
			}
			fs.EachRecord(func(r *kgo.Record) {
				id := string(r.Key)
				if r.Value == nil {
					v.mu.Lock()
					delete(v.mu.m, id)
					v.mu.Unlock()
					return
				}
				var in Instance
				if err := json.Unmarshal(r.Value, &in); err != nil {
					log.Error("skipping an undecodable saga state", "partition", r.Partition, "offset", r.Offset, "err", err)
					return
				}
				v.mu.Lock()
				if old := v.mu.m[id]; old == nil || old.Seq <= in.Seq {
					v.mu.m[id] = &in
				}
				v.mu.Unlock()
				v.updates.Add(1)
			})
		}
	}()
	return v, nil
}

func (v *view) close() {
	v.cancel()
	<-v.done
	v.cl.Close()
}

func (v *view) get(id string) *Instance {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.mu.m[id]
}

func (v *view) list(f Filter) []*Instance {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 10000)
	v.mu.RLock()
	var out []*Instance
	for _, in := range v.mu.m {
		if (f.Status == "" || in.Status == f.Status) && (f.Definition == "" || in.Definition == f.Definition) {
			out = append(out, in)
		}
	}
	v.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Instance) int {
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

// count returns the number of instances per status.
func (v *view) count() map[Status]int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	c := map[Status]int{}
	for _, in := range v.mu.m {
		c[in.Status]++
	}
	return c
}

// Counts returns how many instances the view holds per status.
func (e *Engine) Counts() map[Status]int { return e.view.count() }
