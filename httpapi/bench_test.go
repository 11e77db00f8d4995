package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublish publishes 1 KiB CloudEvents over real HTTP (loopback)
// to a topic with the default durability (fsync before the answer):
// single events in binary mode from 16 concurrent clients, and batches of
// 100 or 1,000 in the batched mode. b.N counts events.
func BenchmarkPublish(b *testing.B) {
	data := strings.Repeat("x", 1024)
	for _, tc := range []struct {
		name  string
		batch int
	}{{"mode=binary/batch=1", 1}, {"mode=batch/batch=100", 100}, {"mode=batch/batch=1000", 1000}} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEnv(b)
			e.createTopic("bench", 1, nil)
			var seq atomic.Int64
			url := e.url + "/v1/topics/bench/events"
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			if tc.batch == 1 {
				b.SetParallelism(8) // 16 clients on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						req, _ := http.NewRequest("POST", url, strings.NewReader(data))
						req.Header.Set("Ce-Specversion", "1.0")
						req.Header.Set("Ce-Id", fmt.Sprint(seq.Add(1)))
						req.Header.Set("Ce-Source", "/bench")
						req.Header.Set("Ce-Type", "bench")
						req.Header.Set("Content-Type", "text/plain")
						post(b, req)
					}
				})
				return
			}
			for n := 0; n < b.N; n += tc.batch {
				var buf bytes.Buffer
				buf.WriteByte('[')
				for i := 0; i < tc.batch; i++ {
					if i > 0 {
						buf.WriteByte(',')
					}
					fmt.Fprintf(&buf, `{"specversion":"1.0","id":"%d","source":"/bench","type":"bench","datacontenttype":"text/plain","data":"%s"}`, seq.Add(1), data)
				}
				buf.WriteByte(']')
				req, _ := http.NewRequest("POST", url, &buf)
				req.Header.Set("Content-Type", "application/cloudevents-batch+json")
				post(b, req)
			}
		})
	}
}

func post(b *testing.B, req *http.Request) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkRead reads 1 KiB events back as CloudEvents, 1,000 a request.
// b.N counts events.
func BenchmarkRead(b *testing.B) {
	e := benchEnv(b)
	e.createTopic("bench", 1, map[string]string{CfgDedupWindowMs: "0"})
	data := strings.Repeat("x", 1024)
	const stored = 20000
	for n := 0; n < stored; n += 1000 {
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i := 0; i < 1000; i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, `{"specversion":"1.0","id":"%d","source":"/bench","type":"bench","datacontenttype":"text/plain","data":"%s"}`, n+i, data)
		}
		buf.WriteByte(']')
		req, _ := http.NewRequest("POST", e.url+"/v1/topics/bench/events", &buf)
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		post(b, req)
	}
	b.SetBytes(1024)
	b.ReportAllocs()
	b.ResetTimer()
	off := 0
	for n := 0; n < b.N; n += 1000 {
		if off >= stored {
			off = 0
		}
		resp, err := http.Get(fmt.Sprintf("%s/v1/topics/bench/events?offset=%d&limit=1000", e.url, off))
		if err != nil {
			b.Fatal(err)
		}
		nb, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || nb < 1000*1024 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, nb)
		}
		off += 1000
	}
}

// benchEnv is newEnv for benchmarks.
func benchEnv(b *testing.B) *env { return newEnv(b) }

// BenchmarkDedupMemory measures the heap the deduplication window holds
// per event (keys of 40 bytes: a source and a UUID), reported as
// bytes/entry.
func BenchmarkDedupMemory(b *testing.B) {
	e := benchEnv(b)
	e.createTopic("mem", 1, nil)
	ti, err := e.srv.Broker.Topic("mem")
	if err != nil {
		b.Fatal(err)
	}
	const n = 200000
	for i := 0; i < b.N; i++ {
		d := newDedupIndex(e.srv.Broker, time.Now, quietLogger())
		td := d.topic("mem", ti.ID)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		keys := make([]string, 1)
		for j := 0; j < n; j++ {
			keys[0] = fmt.Sprintf("ce:/orders/eu\x00%036d", j)
			res, err := d.reserve(context.Background(), td, time.Hour, keys)
			if err != nil {
				b.Fatal(err)
			}
			d.complete(td, res, []bool{true}, []int32{0}, []int64{int64(j)})
		}
		keys = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/entry")
		runtime.KeepAlive(td)
	}
}
