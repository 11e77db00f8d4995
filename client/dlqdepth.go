package client

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// watchDLQDepth keeps the herald_client_dlq_depth gauge of the subscriber's
// WithDeadLetter topic: the records in it, summed over its partitions as
// high watermark minus log start offset (so under ExactlyOnce transaction
// markers count too). It refreshes every WithDeadLetterDepthInterval and
// when poked (after a batch that dead-lettered). stop ends the refresher
// and waits for it.
func (s *Subscriber) watchDLQDepth(ctx context.Context, cl *kgo.Client) (poke, stop func()) {
	m := s.ev.metrics
	if s.cfg.dlq == "" || m == nil || s.cfg.dlqEvery <= 0 {
		return func() {}, func() {}
	}
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	wctx, cancel := context.WithCancel(ctx)
	adm := kadm.NewClient(cl)
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.dlqEvery)
		defer t.Stop()
		for {
			if depth, err := dlqDepth(wctx, adm, s.cfg.dlq); err == nil {
				m.dlqDepth.WithLabelValues(s.cfg.dlq).Set(float64(depth))
			} else if wctx.Err() == nil {
				s.cfg.logger.Debug("reading the dead-letter topic's depth failed", "dlq", s.cfg.dlq, "err", err)
			}
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			case <-kick:
			}
		}
	}()
	poke = func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	return poke, func() { cancel(); <-done }
}

// dlqDepth returns the records in topic: high watermark minus log start
// offset, summed over its partitions.
func dlqDepth(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, err
	}
	var depth int64
	var errs []error
	ends.Each(func(e kadm.ListedOffset) {
		st, ok := starts.Lookup(topic, e.Partition)
		if !ok {
			errs = append(errs, errors.New("partition missing from start offsets"))
			return
		}
		depth += e.Offset - st.Offset
	})
	return depth, errors.Join(errs...)
}
