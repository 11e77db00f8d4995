package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisSystem starts redis-server on a spare loopback port with dir as its
// working directory: with aof, appendonly yes and appendfsync always (an
// fsync per event-loop iteration, before replies are sent); otherwise no
// persistence at all.
func redisSystem(cfg config, aof bool) func(context.Context, string) (driver, error) {
	return func(ctx context.Context, dir string) (driver, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
			"--protected-mode", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}
		if aof {
			args = append(args, "--appendonly", "yes", "--appendfsync", "always")
		} else {
			args = append(args, "--appendonly", "no")
		}
		cmd := exec.Command(cfg.redisServer, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w (install Debian's redis-server)", cfg.redisServer, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		r := &redisDriver{addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, exited: exited, pipeline: cfg.redisPipeline}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c := r.client()
			err := c.Ping(ctx).Err()
			c.Close()
			if err == nil {
				return r, nil
			}
			if time.Now().After(deadline) {
				r.close()
				return nil, fmt.Errorf("redis-server on %s: %w", r.addr, err)
			}
		}
	}
}

type redisDriver struct {
	addr     string
	cmd      *exec.Cmd
	exited   chan error
	pipeline int
	keys     int
}

func (r *redisDriver) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: 2, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
}

func (r *redisDriver) close() error {
	r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
	return nil
}

func (r *redisDriver) newKey() string {
	r.keys++
	return fmt.Sprintf("peers-%d", r.keys)
}

// addN XADDs with producers connections, each sending pipelines of batch
// XADDs, until n records (n > 0) or until end. Every record of a pipeline
// gets the pipeline's round trip as its latency.
func (r *redisDriver) addN(ctx context.Context, key string, size, producers, batch int, n int64, end time.Time) (cellStats, error) {
	value := randomValue(size)
	hist := newHist()
	var mu sync.Mutex
	var acked atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < producers; i++ {
		c := r.client()
		defer c.Close()
		quota := n / int64(producers)
		if int64(i) < n%int64(producers) {
			quota++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sent := int64(0); ctx.Err() == nil; {
				if n > 0 && sent >= quota || n == 0 && time.Now().After(end) {
					return
				}
				k := batch
				if n > 0 {
					k = int(min(int64(batch), quota-sent))
				}
				p := c.Pipeline()
				for j := 0; j < k; j++ {
					p.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"v", value}})
				}
				t0 := time.Now()
				if _, err := p.Exec(ctx); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				d := int64(time.Since(t0))
				mu.Lock()
				_ = hist.RecordValues(d, int64(k))
				mu.Unlock()
				sent += int64(k)
				acked.Add(int64(k))
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		return cellStats{}, fmt.Errorf("XADD: %v", err)
	}
	return cellStats{records: acked.Load(), seconds: time.Since(start).Seconds(), hist: hist}, ctx.Err()
}

func (r *redisDriver) produce(ctx context.Context, size, producers int, d time.Duration) (cellStats, error) {
	return r.addN(ctx, r.newKey(), size, producers, r.pipeline, 0, time.Now().Add(d))
}

func (r *redisDriver) consume(ctx context.Context, size int, n int64) (cellStats, error) {
	key := r.newKey()
	if _, err := r.addN(ctx, key, size, 2, r.pipeline, n, time.Now().Add(time.Hour)); err != nil {
		return cellStats{}, fmt.Errorf("fill: %w", err)
	}
	c := r.client()
	defer c.Close()
	var got int64
	last := "0"
	start := time.Now()
	for got < n {
		res, err := c.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: 1000, Block: -1}).Result()
		if err != nil {
			return cellStats{}, err
		}
		for _, s := range res {
			got += int64(len(s.Messages))
			if len(s.Messages) > 0 {
				last = s.Messages[len(s.Messages)-1].ID
			}
		}
	}
	return cellStats{records: got, seconds: time.Since(start).Seconds()}, nil
}

func (r *redisDriver) e2e(ctx context.Context, size, rate int, d time.Duration) (cellStats, error) {
	key := r.newKey()
	return e2eRun(ctx, d, func(ctx context.Context, rec func(int64, []byte), ready func()) error {
		c := r.client()
		defer c.Close()
		last := "0"
		ready()
		for ctx.Err() == nil {
			res, err := c.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: 1000, Block: 100 * time.Millisecond}).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			now := time.Now().UnixNano()
			for _, s := range res {
				for _, m := range s.Messages {
					v, _ := m.Values["v"].(string)
					rec(now, []byte(v))
					last = m.ID
				}
			}
		}
		return nil
	}, func(end time.Time) (int64, error) {
		// One XADD per record, paced: the producer waits for each reply.
		c := r.client()
		defer c.Close()
		value := randomValue(size)
		pc := pacer{start: time.Now(), end: end, rate: float64(rate)}
		var n int64
		for ; ctx.Err() == nil && pc.wait(n); n++ {
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"v", stamped(value)}}).Err(); err != nil {
				return n, err
			}
		}
		return n, ctx.Err()
	})
}
