package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/commitlog"
	"github.com/heraldhq/herald/server"
)

// heraldSystem starts Herald in-process, wired as herald serve wires it, on
// a loopback port.
func heraldSystem(cfg config, durability string) func(context.Context, string) (driver, error) {
	return func(ctx context.Context, dir string) (driver, error) {
		dur, err := commitlog.ParseDurability(durability)
		if err != nil {
			return nil, err
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		srv, err := server.Start(ctx, server.Config{
			Broker: broker.Config{DataDir: dir, Durability: dur},
			Logger: logger, Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			return nil, err
		}
		return &kafkaDriver{seeds: []string{srv.KafkaAddr()}, partitions: cfg.partitions, closeFn: srv.Close}, nil
	}
}

// kfakeSystem starts a one-broker kfake cluster persisting to dir, with an
// fsync per batch if sync.
func kfakeSystem(cfg config, sync bool) func(context.Context, string) (driver, error) {
	return func(_ context.Context, dir string) (driver, error) {
		opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(dir)}
		if sync {
			opts = append(opts, kfake.SyncWrites())
		}
		c, err := kfake.NewCluster(opts...)
		if err != nil {
			return nil, err
		}
		return &kafkaDriver{seeds: c.ListenAddrs(), partitions: cfg.partitions, closeFn: func() error { c.Close(); return nil }}, nil
	}
}

// kafkaDriver runs the workloads with franz-go's kgo, as herald bench
// produce/consume/e2e do.
type kafkaDriver struct {
	seeds      []string
	partitions int
	topics     int
	closeFn    func() error
}

func (k *kafkaDriver) close() error { return k.closeFn() }

func (k *kafkaDriver) newTopic(ctx context.Context) (string, error) {
	k.topics++
	topic := fmt.Sprintf("peers-%d", k.topics)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.seeds...))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, int32(k.partitions), 1, nil, topic); err != nil {
		return "", fmt.Errorf("create topic %s: %w", topic, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if md, err := adm.ListTopics(ctx, topic); err == nil && md[topic].Err == nil && len(md[topic].Partitions) == k.partitions {
			return topic, nil
		}
	}
	return "", fmt.Errorf("topic %s not in metadata after 10s", topic)
}

func (k *kafkaDriver) producer(topic string) (*kgo.Client, error) {
	return kgo.NewClient(kgo.SeedBrokers(k.seeds...), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(0), kgo.RecordRetries(3))
}

// produceN produces with producers clients until n records (n > 0) or until
// end, at rate records/s in all if rate > 0, and waits for every ack.
func (k *kafkaDriver) produceN(ctx context.Context, topic string, size, producers int, n int64, end time.Time, rate int, stamp bool) (cellStats, error) {
	value := randomValue(size)
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	hist := newHist()
	var mu sync.Mutex
	cb := func(r *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
			return
		}
		acked.Add(1)
		mu.Lock()
		_ = hist.RecordValue(int64(time.Since(r.Timestamp)))
		mu.Unlock()
	}
	cls := make([]*kgo.Client, producers)
	for i := range cls {
		cl, err := k.producer(topic)
		if err != nil {
			return cellStats{}, err
		}
		defer cl.Close()
		cls[i] = cl
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, cl := range cls {
		quota := n / int64(producers)
		if int64(i) < n%int64(producers) {
			quota++
		}
		pc := pacer{start: start, end: end, rate: float64(rate) / float64(producers)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := int64(0); ctx.Err() == nil; j++ {
				if n > 0 && j >= quota || n == 0 && j%64 == 0 && time.Now().After(end) {
					break
				}
				if rate > 0 && !pc.wait(j) {
					break
				}
				r := &kgo.Record{Value: value}
				if stamp {
					r.Value = stamped(value)
				}
				r.Timestamp = time.Now()
				cl.Produce(ctx, r, cb)
			}
			if err := cl.Flush(ctx); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if f := failed.Load(); f > 0 {
		return cellStats{}, fmt.Errorf("%d records failed, first: %v", f, firstErr.Load())
	}
	return cellStats{records: acked.Load(), seconds: secs, hist: hist}, ctx.Err()
}

func (k *kafkaDriver) produce(ctx context.Context, size, producers int, d time.Duration) (cellStats, error) {
	topic, err := k.newTopic(ctx)
	if err != nil {
		return cellStats{}, err
	}
	return k.produceN(ctx, topic, size, producers, 0, time.Now().Add(d), 0, false)
}

func (k *kafkaDriver) consumer(topic string, from kgo.Offset) (*kgo.Client, error) {
	return kgo.NewClient(kgo.SeedBrokers(k.seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(from),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(8<<20), kgo.FetchMaxWait(500*time.Millisecond))
}

func (k *kafkaDriver) consume(ctx context.Context, size int, n int64) (cellStats, error) {
	topic, err := k.newTopic(ctx)
	if err != nil {
		return cellStats{}, err
	}
	if _, err := k.produceN(ctx, topic, size, 2, n, time.Now().Add(time.Hour), 0, false); err != nil {
		return cellStats{}, fmt.Errorf("fill: %w", err)
	}
	cl, err := k.consumer(topic, kgo.NewOffset().AtStart())
	if err != nil {
		return cellStats{}, err
	}
	defer cl.Close()
	var got int64
	start := time.Now()
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return cellStats{}, err
		}
		if err := fs.Err0(); err != nil {
			return cellStats{}, err
		}
		got += int64(fs.NumRecords())
	}
	return cellStats{records: got, seconds: time.Since(start).Seconds()}, nil
}

func (k *kafkaDriver) e2e(ctx context.Context, size, rate int, d time.Duration) (cellStats, error) {
	topic, err := k.newTopic(ctx)
	if err != nil {
		return cellStats{}, err
	}
	return e2eRun(ctx, d, func(ctx context.Context, rec func(now int64, v []byte), ready func()) error {
		cl, err := k.consumer(topic, kgo.NewOffset().AtStart())
		if err != nil {
			return err
		}
		defer cl.Close()
		for {
			pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			fs := cl.PollFetches(pctx)
			cancel()
			ready()
			if ctx.Err() != nil {
				return nil
			}
			now := time.Now().UnixNano()
			fs.EachRecord(func(r *kgo.Record) { rec(now, r.Value) })
		}
	}, func(end time.Time) (int64, error) {
		st, err := k.produceN(ctx, topic, size, 1, 0, end, rate, true)
		return st.records, err
	})
}

// e2eRun starts consume, waits until it is ready, runs produce until now+d,
// then waits until the consumer has seen every produced record (at most 30
// s) and stops it. consume calls rec for every record it receives, with its
// clock at receipt.
func e2eRun(ctx context.Context, d time.Duration,
	consume func(ctx context.Context, rec func(now int64, v []byte), ready func()) error,
	produce func(end time.Time) (int64, error)) (cellStats, error) {
	hist := newHist()
	var seen atomic.Int64
	rec := func(now int64, v []byte) {
		_ = hist.RecordValue(stampLatency(v, now)) // consumer goroutine only
		seen.Add(1)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readyCh := make(chan struct{})
	ready := sync.OnceFunc(func() { close(readyCh) })
	done := make(chan error, 1)
	go func() {
		err := consume(cctx, rec, ready)
		ready()
		done <- err
	}()
	<-readyCh
	start := time.Now()
	produced, err := produce(start.Add(d))
	secs := time.Since(start).Seconds()
	if err != nil {
		cancel()
		<-done
		return cellStats{}, err
	}
	for deadline := time.Now().Add(30 * time.Second); seen.Load() < produced && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return cellStats{}, err
	}
	if n := seen.Load(); n < produced {
		return cellStats{}, fmt.Errorf("consumer saw %d of %d records", n, produced)
	}
	return cellStats{records: seen.Load(), seconds: secs, hist: hist}, nil
}
