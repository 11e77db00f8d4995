package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// MaxLiveStreams bounds the live streams served at once; each gathers the
// registry every tick.
const MaxLiveStreams = 32

// Sample is what the overview charts: counters (to be turned into rates by
// the page), records per topic (the sum of its partitions' high
// watermarks) and consumer lag per group in records.
type Sample struct {
	Time     int64              `json:"time"` // Unix milliseconds
	Produced float64            `json:"produced"`
	BytesIn  float64            `json:"bytesIn"`
	Fetched  float64            `json:"fetched"`
	Requests float64            `json:"requests"`
	Topics   map[string]float64 `json:"topics"`
	Groups   map[string]float64 `json:"groups"`
}

// Summarize reduces gathered metrics to a Sample.
func Summarize(mfs []*dto.MetricFamily, now time.Time) Sample {
	s := Sample{Time: now.UnixMilli(), Topics: map[string]float64{}, Groups: map[string]float64{}}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			switch mf.GetName() {
			case "herald_broker_produce_records_total":
				s.Produced += v
			case "herald_broker_produce_bytes_total":
				s.BytesIn += v
			case "herald_broker_fetch_bytes_total":
				s.Fetched += v
			case "herald_http_requests_total":
				s.Requests += v
			case "herald_broker_partition_high_watermark":
				s.Topics[label(m, "topic")] += v
			case "herald_group_lag":
				s.Groups[label(m, "group")] += v
			}
		}
	}
	return s
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Live serves Server-Sent Events: a "sample" event (a Sample as JSON) at
// once and then every interval, summarized from g, until the client goes.
// The console's overview charts them. At most MaxLiveStreams at once
// (503 beyond). Streams end when ctx does (the server shutting down: an
// open console must not hold up a clean stop).
func Live(ctx context.Context, g prometheus.Gatherer, interval time.Duration) http.Handler {
	var streams atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fl, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		if streams.Add(1) > MaxLiveStreams {
			streams.Add(-1)
			w.Header().Set("Retry-After", "10")
			http.Error(w, fmt.Sprintf("too many live streams (at most %d)", MaxLiveStreams), http.StatusServiceUnavailable)
			return
		}
		defer streams.Add(-1)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			mfs, err := g.Gather()
			if err != nil && len(mfs) == 0 {
				fmt.Fprintf(w, "event: failure\ndata: %q\n\n", err.Error())
			} else {
				b, _ := json.Marshal(Summarize(mfs, time.Now()))
				fmt.Fprintf(w, "retry: 5000\nevent: sample\ndata: %s\n\n", b)
			}
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}
