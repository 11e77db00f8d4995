package saga

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/heraldhq/herald/event"
)

// FuzzParseDefinition feeds arbitrary bytes to the definition decoder (the
// HTTP API's and the definitions topic's input): it must return a
// definition or an error, never panic, and a definition it accepts must
// survive a round trip.
func FuzzParseDefinition(f *testing.F) {
	b, _ := json.Marshal(orderDef(time.Second))
	f.Add(b)
	f.Add([]byte(`{"name":"a","steps":[{"name":"x","after":["x"],"command":{"type":"T","topic":"t"},"success":["ok"]}]}`))
	f.Add([]byte(`{"name":"a","steps":[{"name":"x","after":["y"],"command":{"type":"T","topic":"t"},"success":["ok"]},{"name":"y","after":["x"],"command":{"type":"T","topic":"t"},"success":["ok"]}]}`))
	f.Add([]byte(`{"name":"a","steps":[{"name":"x","command":{"type":"T","topic":"t"},"success":["ok"],"timeout":-5}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDefinition(b, nil)
		if err != nil {
			return
		}
		again, _ := json.Marshal(d)
		if _, err := ParseDefinition(again, nil); err != nil {
			t.Fatalf("accepted %s, refused its round trip %s: %v", b, again, err)
		}
	})
}

// FuzzParseDefinitionYAML is FuzzParseDefinition for the YAML form.
func FuzzParseDefinitionYAML(f *testing.F) {
	f.Add([]byte("name: a\nsteps:\n  - name: x\n    command: {type: T, topic: t}\n    success: [ok]\n"))
	f.Add([]byte("name: a\nsteps:\n  - {name: x, after: [x]}\n"))
	f.Add([]byte("{1: 2, [a]: b}"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseDefinitionYAML(b, nil); err != nil {
			return
		}
	})
}

// FuzzInstance feeds an arbitrary stored state (the state topic's bytes)
// and an arbitrary reply to the state machine: a state that decodes and
// fits the definition must take any reply and any timer without panicking.
func FuzzInstance(f *testing.F) {
	d := orderDef(time.Second)
	d.Version = 1
	m := &machine{def: d, now: time.Unix(1e9, 0).UTC(), replyTo: "inbox"}
	m.start("s", nil)
	b, _ := json.Marshal(m.in)
	f.Add(b, "s/payment/do", "PaymentProcessed", int64(0))
	f.Add(b, "s/shipping/undo", "ShipmentCancelled", int64(5e9))
	f.Add([]byte(`{"steps":[{"name":"payment","status":"parked","deadline":"2001-01-01T00:00:00Z"},{"name":"inventory"},{"name":"shipping"},{"name":"complete","status":"running"}],"status":"compensated"}`),
		"s/complete/do", "OrderCompleted", int64(9e9))
	f.Fuzz(func(t *testing.T, state []byte, causation, typ string, advance int64) {
		var in Instance
		if json.Unmarshal(state, &in) != nil || !in.fits(d) {
			return
		}
		m := &machine{def: d, in: &in, now: time.Unix(1e9, advance).UTC(), replyTo: "inbox", maxHistory: 10}
		m.reply(&event.Event{ID: "r", Source: "/f", Type: typ, CausationID: causation, PartitionKey: "s"})
		m.timers()
		_ = m.retry("payment")
		_ = m.abort("fuzz")
		if len(m.in.History) > 10 {
			t.Fatalf("history of %d entries beyond the bound", len(m.in.History))
		}
	})
}
