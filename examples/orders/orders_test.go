package orders

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/server"
)

func startServer(t *testing.T) []string {
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return []string{srv.KafkaAddr()}
}

// TestRun runs the order flow in both modes with faults and crashes, and
// demands every order ends and the books balance.
func TestRun(t *testing.T) {
	brokers := startServer(t)
	for _, mode := range []string{Choreography, Orchestration} {
		t.Run(mode, func(t *testing.T) {
			s, err := Run(context.Background(), Config{Brokers: brokers, Mode: mode, Orders: orderCount(),
				PaymentDeclineRate: 0.1, ShippingFailureRate: 0.15, CrashEvery: crashEvery(mode),
				Timeout: 90 * time.Second, Seed: 42})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d completed, %d compensated, %d stuck, %d crashes, %.1fs", mode, s.Completed, s.Compensated, s.Stuck, s.Crashes, s.Seconds)
			if !s.OK() {
				t.Fatalf("run not sound: %+v", s)
			}
			if s.Completed+s.Compensated != orderCount() || s.Declined == 0 || s.ShippingFailed == 0 || s.Compensated < s.Declined+s.ShippingFailed {
				t.Fatalf("summary %+v", s)
			}
			if s.Crashes == 0 {
				t.Errorf("no crash was injected")
			}
			if len(s.Hourly) == 0 || s.Hourly[0].Orders == 0 {
				t.Errorf("analytics per hour: %+v", s.Hourly)
			}
		})
	}
}

// crashEvery is short enough that crashes land within a run of 1,000
// orders even without the race detector (0.3 s here); the crash loop waits
// for progress between crashes, so the run still ends.
func crashEvery(mode string) time.Duration {
	if mode == Orchestration {
		return 120 * time.Millisecond
	}
	return 60 * time.Millisecond
}

func orderCount() int {
	if n, err := strconv.Atoi(os.Getenv("HERALD_DEMO_ORDERS")); err == nil {
		return n
	}
	return 1000
}
