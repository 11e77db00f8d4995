package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsSystem embeds a nats-server with JetStream file storage in dir; with
// syncAlways every write is fsynced before it is acknowledged
// (sync_interval: always), otherwise the server's default applies (a
// background sync every 2 minutes).
func natsSystem(syncAlways bool) func(context.Context, string) (driver, error) {
	return func(_ context.Context, dir string) (driver, error) {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
			SyncAlways: syncAlways, NoLog: true, NoSigs: true})
		if err != nil {
			return nil, err
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			s.Shutdown()
			return nil, errors.New("nats-server not ready after 10s")
		}
		return &natsDriver{s: s, url: s.ClientURL()}, nil
	}
}

type natsDriver struct {
	s       *server.Server
	url     string
	streams int
}

func (n *natsDriver) close() error {
	n.s.Shutdown()
	n.s.WaitForShutdown()
	return nil
}

func (n *natsDriver) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(n.url)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// newStream creates a file-backed stream with one subject.
func (n *natsDriver) newStream(ctx context.Context) (jetstream.Stream, string, error) {
	n.streams++
	name := fmt.Sprintf("PEERS%d", n.streams)
	subj := fmt.Sprintf("peers.%d", n.streams)
	nc, js, err := n.connect()
	if err != nil {
		return nil, "", err
	}
	defer nc.Close()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.FileStorage, Replicas: 1})
	if err != nil {
		return nil, "", fmt.Errorf("create stream %s: %w", name, err)
	}
	return st, subj, nil
}

// publishN publishes asynchronously (up to 4096 unacknowledged per
// connection) with producers connections until n records (n > 0) or until
// end, at rate records/s in all if rate > 0, and waits for every ack.
// Latency is publish to ack.
func (n *natsDriver) publishN(ctx context.Context, subj string, size, producers int, cnt int64, end time.Time, rate int, stamp bool) (cellStats, error) {
	value := randomValue(size)
	hist := newHist()
	var mu sync.Mutex
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < producers; i++ {
		nc, js, err := n.connect()
		if err != nil {
			return cellStats{}, err
		}
		defer nc.Close()
		quota := cnt / int64(producers)
		if int64(i) < cnt%int64(producers) {
			quota++
		}
		pc := pacer{start: start, end: end, rate: float64(rate) / float64(producers)}
		type pending struct {
			f  jetstream.PubAckFuture
			t0 time.Time
		}
		futures := make(chan pending, 8192)
		wg.Add(2)
		go func() { // acks arrive in order: wait for each in turn
			defer wg.Done()
			for p := range futures {
				select {
				case <-p.f.Ok():
					acked.Add(1)
					mu.Lock()
					_ = hist.RecordValue(int64(time.Since(p.t0)))
					mu.Unlock()
				case err := <-p.f.Err():
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			defer close(futures)
			for j := int64(0); ctx.Err() == nil; j++ {
				if cnt > 0 && j >= quota || cnt == 0 && j%64 == 0 && time.Now().After(end) {
					break
				}
				if rate > 0 && !pc.wait(j) {
					break
				}
				v := value
				if stamp {
					v = stamped(value)
				}
				t0 := time.Now()
				f, err := js.PublishAsync(subj, v)
				for errors.Is(err, jetstream.ErrTooManyStalledMsgs) && ctx.Err() == nil {
					f, err = js.PublishAsync(subj, v)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				futures <- pending{f, t0}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if f := failed.Load(); f > 0 {
		return cellStats{}, fmt.Errorf("%d publishes failed, first: %v", f, firstErr.Load())
	}
	return cellStats{records: acked.Load(), seconds: secs, hist: hist}, ctx.Err()
}

func (n *natsDriver) produce(ctx context.Context, size, producers int, d time.Duration) (cellStats, error) {
	_, subj, err := n.newStream(ctx)
	if err != nil {
		return cellStats{}, err
	}
	return n.publishN(ctx, subj, size, producers, 0, time.Now().Add(d), 0, false)
}

// pull returns an iterator over a new pull consumer on st (no acks, from
// the first message), prefetching up to 1000 messages.
func (n *natsDriver) pull(ctx context.Context, st jetstream.Stream) (*nats.Conn, jetstream.MessagesContext, error) {
	nc, js, err := n.connect()
	if err != nil {
		return nil, nil, err
	}
	st, err = js.Stream(ctx, st.CachedInfo().Config.Name)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	c, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, it, nil
}

func (n *natsDriver) consume(ctx context.Context, size int, cnt int64) (cellStats, error) {
	st, subj, err := n.newStream(ctx)
	if err != nil {
		return cellStats{}, err
	}
	if _, err := n.publishN(ctx, subj, size, 2, cnt, time.Now().Add(time.Hour), 0, false); err != nil {
		return cellStats{}, fmt.Errorf("fill: %w", err)
	}
	start := time.Now()
	nc, it, err := n.pull(ctx, st)
	if err != nil {
		return cellStats{}, err
	}
	defer nc.Close()
	defer it.Stop()
	var got int64
	for got < cnt {
		if _, err := it.Next(); err != nil {
			return cellStats{}, err
		}
		got++
	}
	return cellStats{records: got, seconds: time.Since(start).Seconds()}, nil
}

func (n *natsDriver) e2e(ctx context.Context, size, rate int, d time.Duration) (cellStats, error) {
	st, subj, err := n.newStream(ctx)
	if err != nil {
		return cellStats{}, err
	}
	return e2eRun(ctx, d, func(ctx context.Context, rec func(int64, []byte), ready func()) error {
		nc, it, err := n.pull(ctx, st)
		if err != nil {
			return err
		}
		defer nc.Close()
		defer it.Stop()
		ready()
		for ctx.Err() == nil {
			m, err := it.Next(jetstream.NextMaxWait(100 * time.Millisecond))
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			if err != nil {
				return err
			}
			rec(time.Now().UnixNano(), m.Data())
		}
		return nil
	}, func(end time.Time) (int64, error) {
		st, err := n.publishN(ctx, subj, size, 1, 0, end, rate, true)
		return st.records, err
	})
}
