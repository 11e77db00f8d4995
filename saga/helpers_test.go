package saga

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/broker/groups"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/server"
)

func testLogger() *slog.Logger {
	if os.Getenv("HERALD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer starts Herald in-process and returns its Kafka address.
func startServer(t testing.TB) []string {
	srv, err := server.Start(context.Background(), server.Config{
		Broker: broker.Config{DataDir: t.TempDir()},
		Groups: groups.Config{MinSessionTimeout: 100 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return []string{srv.KafkaAddr()}
}

func createTopics(t testing.TB, brokers []string, partitions int32, topics ...string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, 1, nil, topics...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// orderDef is the order saga of the tests: payment, inventory, shipping,
// then completing the order, which needs no compensation.
func orderDef(timeout time.Duration) *Definition {
	step := func(name, cmd, topic, ok, fail, comp, compOK string) Step {
		s := Step{Name: name, Command: Command{Type: cmd, Topic: topic}, Success: []string{ok},
			Timeout: Duration(timeout), Retry: RetryPolicy{MaxAttempts: 3}}
		if fail != "" {
			s.Failure = []string{fail}
		}
		if comp != "" {
			s.Compensation = &Compensation{Command: Command{Type: comp, Topic: topic}, Success: []string{compOK},
				Failure: []string{compOK + "Failed"}, Timeout: Duration(timeout),
				Retry: RetryPolicy{MaxAttempts: 3, Backoff: Duration(20 * time.Millisecond)}}
		}
		return s
	}
	return &Definition{
		Name: "order",
		Steps: []Step{
			step("payment", "ProcessPayment", "t.payments", "PaymentProcessed", "PaymentDeclined", "RefundPayment", "PaymentRefunded"),
			step("inventory", "ReserveInventory", "t.inventory", "InventoryReserved", "InventoryUnavailable", "ReleaseInventory", "InventoryReleased"),
			step("shipping", "CreateShipment", "t.shipping", "ShipmentCreated", "ShippingFailed", "CancelShipment", "ShipmentCancelled"),
			step("complete", "CompleteOrder", "t.orders", "OrderCompleted", "", "", ""),
		},
		OnCompensated: &Command{Type: "CancelOrder", Topic: "t.orders"},
	}
}

var testTopics = []string{"t.payments", "t.inventory", "t.shipping", "t.orders"}

// ledger records what participants did, by command id: a participant
// executes a command once (a duplicate delivery re-sends the recorded
// reply) and the test checks nothing ran twice.
type ledger struct {
	mu        sync.Mutex
	done      map[string]string // command id -> reply type sent
	execs     map[string]int    // command id -> executions
	dups      int
	cancelled map[string]int // saga id -> CancelOrder count
}

func newLedger() *ledger {
	return &ledger{done: map[string]string{}, execs: map[string]int{}, cancelled: map[string]int{}}
}

// decide returns the reply type for a command, or "" for no reply.
type decide func(cmd *event.Event, attempt int) string

// participant runs a service: it consumes topic and replies per decide.
func (l *ledger) participant(t testing.TB, ctx context.Context, brokers []string, topic string, d decide) {
	h := func(ctx context.Context, cmd *event.Event) error {
		if cmd.Type == "CancelOrder" {
			l.mu.Lock()
			l.cancelled[cmd.Extensions[ExtSagaID]]++
			l.mu.Unlock()
			return nil
		}
		l.mu.Lock()
		if typ, ok := l.done[cmd.ID]; ok {
			l.dups++
			l.mu.Unlock()
			return client.Publish(ctx, ReplyTopic(cmd), Reply(cmd, "/test", typ, nil))
		}
		attempt := 0
		fmt.Sscan(cmd.Extensions[ExtAttempt], &attempt)
		typ := d(cmd, attempt)
		if typ == "" {
			l.mu.Unlock()
			return nil
		}
		if !strings.HasSuffix(typ, "Failed") && typ != "PaymentDeclined" && typ != "InventoryUnavailable" {
			// NB: only what happened is recorded; a refusal changed
			// nothing, so a resend is decided afresh.
			l.done[cmd.ID] = typ
			l.execs[cmd.ID]++
		}
		l.mu.Unlock()
		return client.Publish(ctx, ReplyTopic(cmd), Reply(cmd, "/test", typ, nil))
	}
	s, err := client.NewSubscriber(brokers, "p-"+topic, []string{topic}, h, client.WithLogger(testLogger()),
		client.WithDeliveryMode(client.ExactlyOnce), client.WithFailurePause(50*time.Millisecond),
		client.WithKgoOptions(kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(100*time.Millisecond), kgo.RebalanceTimeout(2*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() { s.Close(); <-done })
}

// check verifies the ledger against final instances: every compensation
// matches a forward step that ran, nothing ran twice, and the saga's
// outcome agrees with what participants did.
func (l *ledger) check(t testing.TB, in *Instance) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range in.Steps {
		do, undo := CommandID(in.ID, s.Name, false), CommandID(in.ID, s.Name, true)
		if l.execs[do] > 1 || l.execs[undo] > 1 {
			t.Fatalf("saga %s step %s: executed %d times, compensated %d times", in.ID, s.Name, l.execs[do], l.execs[undo])
		}
		if l.execs[undo] == 1 && l.execs[do] == 0 {
			t.Fatalf("saga %s step %s: compensated but never executed", in.ID, s.Name)
		}
		switch in.Status {
		case StatusCompleted:
			if l.execs[do] != 1 || l.execs[undo] != 0 {
				t.Fatalf("completed saga %s step %s: executed %d, compensated %d", in.ID, s.Name, l.execs[do], l.execs[undo])
			}
		case StatusCompensated:
			if s.Name != "complete" && l.execs[do] != l.execs[undo] {
				t.Fatalf("compensated saga %s step %s: executed %d, compensated %d", in.ID, s.Name, l.execs[do], l.execs[undo])
			}
		}
	}
}

func waitUntil(t testing.TB, what string, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
