package subscription

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestRandomized drives subscriptions with random pulls, acks, nacks,
// stale acks, seeks-free restarts and crashes, and checks after every step
// that ordering keys hold (a key's message is delivered only once every
// earlier message of the key was acknowledged), that no message is ever
// acknowledged twice, and at the end that every message was acknowledged.
func TestRandomized(t *testing.T) {
	for _, eod := range []bool{false, true} {
		t.Run(fmt.Sprintf("exactlyOnce=%v", eod), func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 7))
			e := newEnv(t)
			e.topic("t", 3)
			e.create("s", map[string]any{"topic": "t", "enableMessageOrdering": true, "enableExactlyOnceDelivery": eod})
			const n = 300
			keys := make([]string, n)
			for i := range keys {
				if k := rng.IntN(12); k < 10 {
					keys[i] = fmt.Sprintf("k%d", k)
				}
			}
			e.publish("t", "E", "s", keys...)
			ctx := context.Background()
			type pk struct {
				p   int
				off int64
			}
			acked := map[string]int{}    // message id -> successful acks
			keyOf := map[string]string{} // message id -> key
			pos := map[string]pk{}       // message id -> position
			var held []Received          // delivered, not yet acked or nacked by us
			restarts := 0
			ackedAt := map[string][]int64{} // partition/key -> acked offsets
			checkOrder := func(r Received) {
				if r.Message.OrderingKey == "" {
					return
				}
				_, p, off, _, _ := parseAckID(r.AckID)
				keyOf[r.Message.MessageID], pos[r.Message.MessageID] = r.Message.OrderingKey, pk{p, off}
				// Every earlier message of the key in the partition must be acked.
				for id, k := range keyOf {
					q := pos[id]
					if k == r.Message.OrderingKey && q.p == p && q.off < off && acked[id] == 0 {
						t.Fatalf("ordering: %s (key %s, offset %d) delivered before %s (offset %d) was acked", r.Message.MessageID, k, off, id, q.off)
					}
				}
			}
			ack := func(rs []Received) {
				if len(rs) == 0 {
					return
				}
				ids := ackIDs(rs)
				inv, err := e.m.Acknowledge(ctx, "s", ids)
				if err != nil {
					t.Fatal(err)
				}
				bad := map[string]bool{}
				for _, id := range inv {
					bad[id] = true
				}
				for _, r := range rs {
					if !bad[r.AckID] {
						acked[r.Message.MessageID]++
						if acked[r.Message.MessageID] > 1 {
							t.Fatalf("message %s acknowledged twice", r.Message.MessageID)
						}
						_, p, off, _, _ := parseAckID(r.AckID)
						ackedAt[fmt.Sprint(p, r.Message.OrderingKey)] = append(ackedAt[fmt.Sprint(p, r.Message.OrderingKey)], off)
					}
				}
			}
			for step := 0; step < 400 && len(acked) < n; step++ {
				switch op := rng.IntN(20); {
				case op < 10: // pull
					rs, err := e.m.Pull(ctx, "s", 1+rng.IntN(40), 0)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range rs {
						checkOrder(r)
					}
					held = append(held, rs...)
				case op < 15: // ack some held, sometimes twice
					rng.Shuffle(len(held), func(i, j int) { held[i], held[j] = held[j], held[i] })
					k := rng.IntN(len(held) + 1)
					ack(held[:k])
					if rng.IntN(4) == 0 {
						ack(held[:k]) // a second ack must be refused
					}
					held = held[k:]
				case op < 18: // nack some held
					k := rng.IntN(len(held) + 1)
					if k > 0 {
						if _, err := e.m.ModifyAckDeadline(ctx, "s", ackIDs(held[:k]), 0); err != nil {
							t.Fatal(err)
						}
					}
					held = held[k:]
				case op == 18: // clean restart; held ack ids stay valid
					e.closeManager(false)
					e.openManager()
					restarts++
				default: // crash
					e.closeManager(true)
					e.openManager()
					restarts++
				}
			}
			// Drain: nack what is held, then pull and ack until done.
			if len(held) > 0 {
				e.m.ModifyAckDeadline(ctx, "s", ackIDs(held), 0)
			}
			deadline := time.Now().Add(30 * time.Second)
			for len(acked) < n && time.Now().Before(deadline) {
				rs, err := e.m.Pull(ctx, "s", 100, 100*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					checkOrder(r)
				}
				ack(rs)
			}
			if len(acked) != n {
				t.Fatalf("%d of %d messages acknowledged", len(acked), n)
			}
			st := e.m.list()[0].stats(ctx)
			t.Logf("delivered %d, redeliveries %d, restarts %d", st.Delivered, st.Redeliveries, restarts)
		})
	}
}
