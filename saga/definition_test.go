package saga

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

func TestValidate(t *testing.T) {
	known := func(topic string) bool { return strings.HasPrefix(topic, "t.") }
	tests := []struct {
		name string
		edit func(d *Definition)
		want string // "" = valid
	}{
		{"valid", func(*Definition) {}, ""},
		{"unknown topic", func(d *Definition) { d.Steps[1].Command.Topic = "elsewhere" },
			`step "inventory": steps[1].command.topic: unknown topic "elsewhere"`},
		{"unknown compensation topic", func(d *Definition) { d.Steps[0].Compensation.Topic = "nowhere" },
			`step "payment": steps[0].compensation.topic: unknown topic "nowhere"`},
		{"missing compensation", func(d *Definition) { d.Steps[1].Compensation = nil },
			`step "inventory": steps[1].compensation: required`},
		{"explicitly nothing to undo", func(d *Definition) { d.Steps[1].Compensation, d.Steps[1].NoCompensation = nil, true }, ""},
		{"cycle", func(d *Definition) { d.Steps[0].After = []string{"shipping"} },
			`cycle: payment -> shipping -> inventory -> payment`},
		{"self", func(d *Definition) { d.Steps[2].After = []string{"shipping"} }, `a step cannot follow itself`},
		{"unknown after", func(d *Definition) { d.Steps[2].After = []string{"packing"} }, `step "shipping": steps[2].after: unknown step "packing"`},
		{"duplicate step", func(d *Definition) { d.Steps[2].Name = "payment" }, `steps[2].name: duplicate step name`},
		{"no success types", func(d *Definition) { d.Steps[0].Success = nil }, `steps[0].success: at least one reply event type is required`},
		{"bad name", func(d *Definition) { d.Name = "no spaces" }, `name: "no spaces"`},
		{"no steps", func(d *Definition) { d.Steps = nil }, `steps: a saga needs at least one step`},
		{"parallel branch needs compensation", func(d *Definition) {
			// complete runs in parallel with shipping: it is no longer last.
			d.Steps[3].After = []string{"inventory"}
		}, `step "complete": steps[3].compensation: required`},
		{"parallel branches", func(d *Definition) {
			d.Steps[1].After = []string{} // inventory starts with payment
			d.Steps[2].After = []string{"payment", "inventory"}
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := orderDef(time.Second)
			tc.edit(d)
			err := d.Validate(known)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidDefinition) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseDefinitionJSON(t *testing.T) {
	src := `{"name":"order","steps":[
	  {"name":"pay","command":{"type":"Pay","topic":"t.payments"},"success":["Paid"],"failure":["Declined"],
	   "timeout":"5s","retry":{"maxAttempts":5},
	   "compensation":{"type":"Refund","topic":"t.payments","success":["Refunded"],"retry":{"maxAttempts":10,"backoff":"200ms"}}},
	  {"name":"ship","command":{"type":"Ship","topic":"t.shipping"},"success":["Shipped"]}],
	 "onCompensated":{"type":"CancelOrder","topic":"t.orders"}}`
	d, err := ParseDefinition([]byte(src), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(d.Steps[0].Timeout) != 5*time.Second || d.Steps[0].Compensation.Retry.MaxAttempts != 10 ||
		time.Duration(d.Steps[0].Compensation.Retry.Backoff) != 200*time.Millisecond || d.OnCompensated.Type != "CancelOrder" {
		t.Fatalf("parsed %+v", d)
	}
	b, _ := json.Marshal(d)
	d2, err := ParseDefinition(b, nil)
	if err != nil || d2.Steps[0].Timeout != d.Steps[0].Timeout {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []struct{ src, want string }{
		{`{"name":"x","stepz":[]}`, `unknown field "stepz"`},
		{`{"name":"x","steps":[{"name":"a","command":{"type":"A","topic":"t"},"success":["ok"],"timeout":"soon"}]}`, `duration "soon"`},
		{`[1]`, `bad JSON`},
	} {
		if _, err := ParseDefinition([]byte(bad.src), nil); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v, want %q", bad.src, err, bad.want)
		}
	}
}

// TestMachineScripted drives the state machine with scripted inputs, no
// broker: parallel branches, a failure while a sibling is in flight, a
// late success after a timeout, and reverse-order compensation.
func TestMachineScripted(t *testing.T) {
	d := orderDef(time.Second)
	d.Steps[1].After = []string{} // payment and inventory in parallel
	d.Steps[2].After = []string{"payment", "inventory"}
	if err := d.Validate(nil); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &machine{def: d, now: now, replyTo: "inbox"}
	m.start("s1", nil)
	if len(m.outs) != 2 || m.outs[0].ev.Type != "ProcessPayment" || m.outs[1].ev.Type != "ReserveInventory" {
		t.Fatalf("start sent %v", m.outs)
	}
	reply := func(step string, undo bool, typ string) {
		m.outs, m.changed = nil, false
		cmd := &event.Event{ID: CommandID("s1", step, undo), PartitionKey: "s1", Source: "/x", Type: "cmd"}
		m.reply(Reply(cmd, "/p", typ, nil))
	}
	// Payment declines while inventory is in flight: wait for it.
	reply("payment", false, "PaymentDeclined")
	if m.in.Status != StatusCompensating || len(m.outs) != 0 {
		t.Fatalf("after decline: %s, sent %v", m.in.Status, m.outs)
	}
	// Inventory times out (no resend while compensating)...
	m.now = now.Add(2 * time.Second)
	m.outs = nil
	m.timers()
	if m.in.Steps[1].Status != StepTimedOut || m.in.Status != StatusCompensated || len(m.outs) != 1 || m.outs[0].ev.Type != "CancelOrder" {
		t.Fatalf("after timeout: %+v %s %v", m.in.Steps[1], m.in.Status, m.outs)
	}
	// ... then its success arrives late: it is compensated after all.
	reply("inventory", false, "InventoryReserved")
	if m.in.Status != StatusCompensating || len(m.outs) != 1 || m.outs[0].ev.Type != "ReleaseInventory" ||
		m.outs[0].ev.ID != "s1/inventory/undo" {
		t.Fatalf("after late success: %s %v", m.in.Status, m.outs)
	}
	reply("inventory", true, "InventoryReleased")
	if m.in.Status != StatusCompensated {
		t.Fatalf("after release: %s", m.in.Status)
	}
	// Duplicates change only the history.
	reply("inventory", true, "InventoryReleased")
	reply("payment", false, "PaymentProcessed")
	if m.in.Status != StatusCompensated || len(m.outs) != 0 || m.in.History[len(m.in.History)-1].Event != "duplicate reply ignored" {
		t.Fatalf("after duplicates: %s %v %v", m.in.Status, m.outs, m.in.History[len(m.in.History)-1])
	}
}

func TestParseDefinitionYAML(t *testing.T) {
	src := `
name: order
steps:
  - name: pay
    command: {type: Pay, topic: t.payments}
    success: [Paid]
    failure: [Declined]
    timeout: 5s
    compensation:
      type: Refund
      topic: t.payments
      success: [Refunded]
      retry: {maxAttempts: 10, backoff: 200ms}
  - name: ship
    command: {type: Ship, topic: t.shipping}
    success: [Shipped]
onCompensated: {type: CancelOrder, topic: t.orders}
`
	d, err := ParseDefinitionYAML([]byte(src), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "order" || time.Duration(d.Steps[0].Timeout) != 5*time.Second || d.Steps[0].Compensation.Retry.MaxAttempts != 10 ||
		d.Steps[1].Command.Topic != "t.shipping" || d.OnCompensated.Type != "CancelOrder" {
		t.Fatalf("parsed %+v", d)
	}
	_, err = ParseDefinitionYAML([]byte(strings.Replace(src, "topic: t.shipping", "topic: elsewhere", 1)), func(s string) bool { return s != "elsewhere" })
	if err == nil || !strings.Contains(err.Error(), `step "ship": steps[1].command.topic: unknown topic "elsewhere"`) {
		t.Fatalf("unknown topic: %v", err)
	}
	if _, err := ParseDefinitionYAML([]byte("name: [unclosed"), nil); err == nil || !strings.Contains(err.Error(), "bad YAML") {
		t.Fatalf("bad YAML: %v", err)
	}
}
