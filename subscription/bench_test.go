package subscription

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventlog"
)

// fill appends n records of size bytes to topic, spread over its
// partitions, in batches.
func fill(tb testing.TB, e *env, topic string, parts, n, size int) {
	tb.Helper()
	val := make([]byte, size)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	hs := []eventlog.Header{
		{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("x")},
		{Key: "ce_source", Value: []byte("bench")}, {Key: "ce_type", Value: []byte("Bench")},
	}
	// Small batches: encoding a batch costs more than linear time in its size.
	batch := max(1, min(1000, (16<<10)/(size+64)))
	for done := 0; done < n; {
		k := min(batch, n-done)
		recs := make([]eventlog.Record, k)
		for i := range recs {
			recs[i] = eventlog.Record{Value: val, Headers: hs}
		}
		if _, err := e.log.Append(context.Background(), topic, int32((done/batch)%parts), recs); err != nil {
			tb.Fatal(err)
		}
		done += k
	}
}

// BenchmarkPullAck: pull in batches of 1,000 and ack each batch with one
// call, over the HTTP API (or the Go API), with concurrent pullers; 1 KiB
// events. Over HTTP the client is a child process (a raw keep-alive
// HTTP/1.1 client, TestRawPullClientProcess), so the server's CPU per
// event (server-µs/event) is this process's CPU time and the client's
// (client-µs/event) is the child's.
func BenchmarkPullAck(b *testing.B) {
	for _, bc := range []struct {
		via     string
		pullers int
	}{{"http", 2}, {"http", 4}, {"go", 4}} {
		via := bc.via
		b.Run(fmt.Sprintf("via=%s/pullers=%d", via, bc.pullers), func(b *testing.B) {
			e := newEnv(b)
			const parts = 4
			e.topic("t", parts)
			e.create("s", map[string]any{"topic": "t"})
			fill(b, e, "t", parts, b.N, 1024)
			b.SetBytes(1024)
			runtime.GC()
			b.ResetTimer()
			cpu0, child0 := cpuTime(), childCPUTime()
			if via == "http" {
				cmd := exec.Command(os.Args[0], "-test.run=^TestRawPullClientProcess$", "-test.bench=^$")
				cmd.Env = append(os.Environ(), "HERALD_BENCH_PULL_ADDR="+e.srv.Listener.Addr().String(),
					"HERALD_BENCH_SUB=s", fmt.Sprintf("HERALD_BENCH_PULLERS=%d", bc.pullers), fmt.Sprintf("HERALD_BENCH_N=%d", b.N))
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("client: %v\n%s", err, out)
				}
			} else {
				var got atomic.Int64
				var wg sync.WaitGroup
				for range bc.pullers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for got.Load() < int64(b.N) {
							rs, err := e.m.Pull(context.Background(), "s", 1000, time.Second)
							if err != nil {
								b.Error(err)
								return
							}
							if len(rs) > 0 {
								if _, err := e.m.Acknowledge(context.Background(), "s", ackIDs(rs)); err != nil {
									b.Error(err)
									return
								}
							}
							got.Add(int64(len(rs)))
						}
					}()
				}
				wg.Wait()
			}
			b.StopTimer()
			server, client := cpuSince(cpu0), childCPUTime()-child0
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-µs/event")
			if via == "http" {
				b.ReportMetric(float64(client.Microseconds())/float64(b.N), "client-µs/event")
			}
			b.ReportMetric((server+client).Seconds()/b.Elapsed().Seconds(), "cpus")
		})
	}
}

// BenchmarkPush: push to a local webhook that answers 204 at once, with
// concurrency 64; 1 KiB events. The webhook is a net/http server in a
// child process (TestWebhookProcess), so server-µs/event is Herald's CPU
// per event and webhook-µs/event the receiver's.
func BenchmarkPush(b *testing.B) {
	e := newEnv(b)
	e.topic("t", 4)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWebhookProcess$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), "HERALD_BENCH_WEBHOOK=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cmd.StdinPipe(); err != nil { // the child ends when it closes
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	defer stop()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("webhook: %v", err)
	}
	fill(b, e, "t", 4, b.N, 1024)
	b.SetBytes(1024)
	runtime.GC()
	b.ResetTimer()
	start, cpu0, child0 := time.Now(), cpuTime(), childCPUTime()
	// Created at the topic's end; seek to the start so the events published
	// above are delivered.
	e.create("p", map[string]any{"topic": "t", "pushConfig": map[string]any{"pushEndpoint": "http://" + strings.TrimSpace(addr) + "/", "maxOutstandingMessages": 64}})
	if err := e.m.SeekTime(context.Background(), "p", time.Time{}); err != nil {
		b.Fatal(err)
	}
	s, _ := e.m.get("p")
	for {
		s.mu.Lock()
		acked := s.mu.counters[cAcked]
		s.mu.Unlock()
		if acked >= int64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	server := cpuSince(cpu0)
	stop()
	hook := childCPUTime() - child0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-µs/event")
	b.ReportMetric(float64(hook.Microseconds())/float64(b.N), "webhook-µs/event")
	b.ReportMetric((server+hook).Seconds()/elapsed.Seconds(), "cpus")
}

// TestWebhookProcess is BenchmarkPush's webhook when run as a child
// process: it prints its address and answers 204 until SIGTERM. It does
// nothing otherwise.
func TestWebhookProcess(t *testing.T) {
	if os.Getenv("HERALD_BENCH_WEBHOOK") == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})}
	go srv.Serve(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { <-sig; os.Exit(0) }()
	exitWithParent()
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuSince(t time.Duration) time.Duration { return cpuTime() - t }

// childCPUTime is the user+system CPU time of the child processes waited
// for so far.
func childCPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestMemoryPerUnacked measures the bookkeeping of delivered, unacked
// messages (200,000 of them, 50,000 under -race; 1,000,000 with
// HERALD_LONG=1), and that
// another subscription's pull and ack latency is not hurt by them.
func TestMemoryPerUnacked(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes many events")
	}
	n := 200_000
	if raceEnabled {
		n = 50_000 // the race detector makes it slow; the figure holds
	}
	if os.Getenv("HERALD_LONG") != "" {
		n = 1_000_000
	}
	e := newEnv(t)
	e.topic("t", 2)
	e.create("big", map[string]any{"topic": "t", "ackDeadlineSeconds": 600})
	e.create("other", map[string]any{"topic": "t"})
	other := func() time.Duration { // pull+ack 1000 on the other subscription
		start := time.Now()
		rs, err := e.m.Pull(context.Background(), "other", 1000, time.Second)
		if err != nil || len(rs) == 0 {
			t.Fatalf("other: %d %v", len(rs), err)
		}
		if _, err := e.m.Acknowledge(context.Background(), "other", ackIDs(rs)); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	fill(t, e, "t", 2, n, 16)
	var baseline time.Duration
	for range 5 {
		baseline += other()
	}
	ms := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	big, _ := e.m.get("big")
	before := ms()
	pulled := 0
	for pulled < n {
		rs, err := e.m.Pull(context.Background(), "big", 1000, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pulled += len(rs)
	}
	// Let the fetchers finish reading ahead (nothing is left to read).
	waitFor(t, "the read-ahead to drain", 10*time.Second, func() bool {
		big.mu.Lock()
		defer big.mu.Unlock()
		return len(big.mu.ready) == 0
	})
	big.mu.Lock()
	out := 0
	for _, p := range big.mu.parts {
		out += len(p.ents) - p.acked
	}
	big.mu.Unlock()
	if out != n {
		t.Fatalf("%d unacked, want %d", out, n)
	}
	var loaded time.Duration
	for range 5 {
		loaded += other()
	}
	// The bookkeeping is what the subscription holds: measure the heap with
	// it, then after deleting the subscription.
	with := ms()
	big = nil
	if err := e.m.Delete(context.Background(), "big"); err != nil {
		t.Fatal(err)
	}
	without := ms()
	per := float64(int64(with)-int64(without)) / float64(n)
	t.Logf("%d unacked messages: %.1f bytes each (heap %d MiB before pulling, %d MiB after); other subscription pull+ack of 1000: %v before, %v with the backlog",
		n, per, before>>20, with>>20, baseline/5, loaded/5)
	if per > 100 {
		t.Errorf("%.1f bytes per unacked message, more than the floor of 100", per)
	}
	if loaded > 5*baseline+50*time.Millisecond {
		t.Errorf("the other subscription slowed from %v to %v", baseline/5, loaded/5)
	}
}
