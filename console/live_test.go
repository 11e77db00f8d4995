package console

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLiveStreamsSummaries(t *testing.T) {
	reg := prometheus.NewRegistry()
	hwm := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_broker_partition_high_watermark"}, []string{"topic", "partition"})
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_group_lag"}, []string{"group", "topic", "partition"})
	produced := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_broker_produce_records_total"})
	reg.MustRegister(hwm, lag, produced)
	hwm.WithLabelValues("orders", "0").Set(5)
	hwm.WithLabelValues("orders", "1").Set(7)
	hwm.WithLabelValues("<script>", "0").Set(1)
	lag.WithLabelValues("billing", "orders", "0").Set(2)
	lag.WithLabelValues("billing", "orders", "1").Set(3)
	produced.Add(13)

	ctx, stop := context.WithCancel(context.Background())
	srv := httptest.NewServer(Live(ctx, reg, 20*time.Millisecond))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() Sample {
		t.Helper()
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var s Sample
				if err := json.Unmarshal([]byte(d), &s); err != nil {
					t.Fatalf("data %q: %v", d, err)
				}
				return s
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return Sample{}
	}
	s := next()
	if s.Produced != 13 || s.Topics["orders"] != 12 || s.Topics["<script>"] != 1 || s.Groups["billing"] != 5 || s.Time == 0 {
		t.Errorf("first sample %+v", s)
	}
	produced.Add(2)
	deadline := time.Now().Add(5 * time.Second)
	for s = next(); s.Produced != 15; s = next() {
		if time.Now().After(deadline) {
			t.Fatal("later samples do not follow the registry")
		}
	}
	// The server stopping ends the stream.
	stop()
	done := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when its context did")
	}
}

func TestLiveBoundsStreams(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	srv := httptest.NewServer(Live(ctx, prometheus.NewRegistry(), time.Hour))
	defer srv.Close()
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for range MaxLiveStreams {
		r, err := http.Get(srv.URL)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("stream: %v %v", r, err)
		}
		open = append(open, r)
	}
	r, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("stream %d: %d, want 503 with Retry-After", MaxLiveStreams+1, r.StatusCode)
	}
}
