package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldhq/herald/examples/orders"
)

// TestDemoOrders runs herald demo orders in both modes against an
// in-process server and checks the summary it prints.
func TestDemoOrders(t *testing.T) {
	s := startCLITestServer(t)
	for _, mode := range []string{"choreography", "orchestration"} {
		out := s.ok(t, "", "demo", "orders", "--mode", mode, "--orders", "60", "--payment-decline-rate", "0.2",
			"--shipping-failure-rate", "0.2", "--seed", "7", "--brokers", s.addr, "-o", "json")
		var sum orders.Summary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		if sum.Mode != mode || sum.Completed+sum.Compensated != 60 || sum.Stuck != 0 || sum.Compensated == 0 || len(sum.Problems) != 0 {
			t.Errorf("%s: %+v", mode, sum)
		}
	}
	out := s.ok(t, "", "demo", "orders", "--orders", "10", "--brokers", s.addr)
	for _, want := range []string{"Mode:          orchestration", "Stuck:         0", "Balances:      OK", "HOUR"} {
		if !strings.Contains(out, want) {
			t.Errorf("table output lacks %q:\n%s", want, out)
		}
	}
	s.fails(t, exitUsage, `--mode "both": want choreography or orchestration`, "", "demo", "orders", "--mode", "both")
	s.fails(t, exitUsage, `--payment-decline-rate 2: want a fraction`, "", "demo", "orders", "--payment-decline-rate", "2")
}
