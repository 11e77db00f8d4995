package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"
)

// runBenchKafkaCLI runs herald bench with args and decodes its JSON report.
func runBenchKafkaCLI(t *testing.T, args ...string) benchKafkaReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(append(append([]string{"bench"}, args...), "-o", "json"))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("herald bench %v: %v\nstderr:\n%s", args, err, errb.String())
	}
	var rep benchKafkaReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("herald bench %v: output does not parse: %v\n%s", args, err, out.String())
	}
	return rep
}

func TestBenchKafkaModes(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		produced int64
		consumed int64
		latency  bool
	}{
		{"produce/acks=all/always", []string{"produce", "--records", "3000", "--record-size", "100B", "--partitions", "3", "--producers", "2"}, 3000, 0, true},
		{"produce/acks=1/interval", []string{"produce", "--records", "2001", "--acks", "1", "--durability", "interval=5ms", "--linger", "1ms"}, 2001, 0, true},
		{"produce/acks=0/unsafe-none", []string{"produce", "--records", "1000", "--acks", "0", "--durability", "unsafe-none", "--producers", "1"}, 1000, 0, true},
		{"consume", []string{"consume", "--records", "5000", "--record-size", "100B", "--partitions", "4"}, 5000, 5000, false},
		{"e2e", []string{"e2e", "--records", "500", "--rate", "1000", "--partitions", "2", "--durability", "interval=2ms"}, 500, 500, true},
	}
	gcBefore := debug.SetGCPercent(100)
	debug.SetGCPercent(gcBefore)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := runBenchKafkaCLI(t, tt.args...)
			// e2e raises its own GC target (unless GOGC is set) and puts
			// it back afterwards; the other modes leave it.
			wantGC := strconv.Itoa(gcBefore)
			if env := os.Getenv("GOGC"); env != "" {
				wantGC = env
			} else if rep.Mode == bkModeE2E {
				wantGC = "400"
			}
			if rep.GOGC != wantGC {
				t.Errorf("report GOGC %q, want %q", rep.GOGC, wantGC)
			}
			if now := debug.SetGCPercent(gcBefore); now != gcBefore {
				t.Errorf("GC percent %d after the run, want it restored to %d", now, gcBefore)
			}
			if rep.Mode != tt.args[0] || rep.Server != "in-process" {
				t.Errorf("mode %q server %q, want %q in-process", rep.Mode, rep.Server, tt.args[0])
			}
			if rep.Produced != tt.produced || rep.Consumed != tt.consumed || rep.ProduceErr != 0 {
				t.Errorf("produced %d consumed %d errors %d, want %d, %d, 0", rep.Produced, rep.Consumed, rep.ProduceErr, tt.produced, tt.consumed)
			}
			if rep.RecordsSec <= 0 || rep.MBSec <= 0 || rep.Seconds <= 0 {
				t.Errorf("records/s %v MB/s %v seconds %v, want all > 0", rep.RecordsSec, rep.MBSec, rep.Seconds)
			}
			if got := rep.Latency != nil && rep.Latency.Samples > 0; got != tt.latency {
				t.Fatalf("latency %+v, want samples: %v", rep.Latency, tt.latency)
			}
			if tt.latency {
				want := tt.produced
				if rep.Mode == bkModeE2E {
					want = tt.consumed
				}
				if rep.Latency.Samples != want || rep.Latency.P50us <= 0 || rep.Latency.P99us < rep.Latency.P50us {
					t.Errorf("latency %+v: want %d samples and 0 < p50 <= p99", rep.Latency, want)
				}
			}
		})
	}
}

func TestBenchKafkaFlags(t *testing.T) {
	for _, args := range [][]string{
		{"produce", "--acks", "2"},
		{"produce", "--records", "10", "--duration", "1s"},
		{"produce", "--durability", "memory"},
		{"produce", "--brokers", "127.0.0.1:1", "--durability", "unsafe-none"},
		{"e2e", "--record-size", "4B"},
		{"e2e", "--acks", "0"},
		{"consume", "--compression", "gzip"},
		{"produce", "--user", "alice"},
		{"produce", "--tls-ca", "ca.pem"},
	} {
		cmd := newRootCmd()
		cmd.SetArgs(append([]string{"bench"}, args...))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("herald bench %v: no error", args)
		}
	}
}

// TestBenchPartitionsLong opens 10,000 partitions across 1,000 topics on a
// real herald serve process, produces a record to each, restarts it with
// SIGTERM and demands it be ready again within 5 s with every record there.
// It takes about a minute: set HERALD_LONG=1 to run it.
func TestBenchPartitionsLong(t *testing.T) {
	if os.Getenv("HERALD_LONG") == "" {
		t.Skip("set HERALD_LONG=1 to run (about a minute)")
	}
	bin := heraldBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := bkRunPartitions(ctx, bin, t.TempDir(), 1000, 10, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("%+v", *rep)
	if rep.RestartReadySec >= 5 {
		t.Errorf("restart with %d partitions ready in %.2fs, want under 5s", rep.Partitions, rep.RestartReadySec)
	}
	if rep.RecordsAfter != 10000 {
		t.Errorf("%d records after restart, want 10000", rep.RecordsAfter)
	}
}
