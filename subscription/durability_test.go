package subscription

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/eventlog"
)

// TestRestart: definitions, acks, delivery attempts and snapshots survive
// a clean restart and a crash (no final checkpoint), whatever part of the
// state was checkpointed and whatever was only in the journal.
func TestRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "clean", true: "crash"}[crash]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.topic("t", 3)
			e.create("s", map[string]any{"topic": "t", "filter": `attributes.type != "Skip"`, "ackDeadlineSeconds": 30})
			e.create("x", map[string]any{"topic": "t", "enableExactlyOnceDelivery": true})
			keys := make([]string, 60)
			for i := range keys {
				keys[i] = string(rune('a' + i%26))
			}
			e.publish("t", "E", "src", keys...)
			e.publish("t", "Skip", "src", "k")
			got := e.pullN("s", 60)
			slices.SortFunc(got, func(a, b Received) int { return bytes.Compare(a.Message.Data, b.Message.Data) })
			e.ack("s", ackIDs(got[:20])...)
			time.Sleep(300 * time.Millisecond) // a checkpoint or two
			e.ack("s", ackIDs(got[20:30])...)
			xs := e.pullN("x", 61)
			e.ack("x", ackIDs(xs[:40])...)
			e.do("PUT", "/v1/snapshots/sn", map[string]any{"subscription": "s"}, nil)

			e.closeManager(crash)
			e.openManager()

			// Ack ids from before the restart stay valid: the delivery
			// state was durable.
			if inv := e.ack("s", got[30].AckID); len(inv) != 0 {
				t.Fatalf("an ack id from before the restart was refused: %v", inv)
			}
			if inv := e.ack("s", got[0].AckID); len(inv) != 1 {
				t.Fatalf("a message acked before the restart was acked again")
			}
			if inv := e.modack("s", 0, ackIDs(got[31:])...); len(inv) != 0 {
				t.Fatalf("nack after restart: invalid %v", inv)
			}
			again := e.pullN("s", 29)
			want := datas(got[31:])
			gotD := datas(again)
			slices.Sort(gotD)
			slices.Sort(want)
			if !slices.Equal(gotD, want) {
				t.Fatalf("after restart got %v, want %v", gotD, want)
			}
			for _, r := range again {
				if r.DeliveryAttempt != 2 {
					t.Fatalf("delivery attempt %d after restart, want 2", r.DeliveryAttempt)
				}
			}
			if more := e.pull("s", 10, true); len(more) != 0 {
				t.Fatalf("extra after restart: %v", datas(more))
			}
			// Exactly-once: acked messages never return; the latest ack
			// ids stay valid.
			if inv := e.ack("x", xs[40].AckID); len(inv) != 0 {
				t.Fatalf("exactly-once ack after restart refused: %v", inv)
			}
			if inv := e.ack("x", xs[0].AckID); len(inv) != 1 {
				t.Fatalf("exactly-once: acked twice across a restart")
			}
			e.modack("x", 0, ackIDs(xs[41:])...)
			xa := e.pullN("x", 20)
			for _, r := range xa {
				for _, a := range xs[:41] {
					if a.Message.MessageID == r.Message.MessageID {
						t.Fatalf("exactly-once: acked message %s redelivered", r.Message.MessageID)
					}
				}
			}
			var sn Snapshot
			if st := e.do("GET", "/v1/snapshots/sn", nil, &sn); st != 200 || sn.Subscription != "s" {
				t.Fatalf("snapshot after restart: %d %+v", st, sn)
			}
			var sub Subscription
			e.do("GET", "/v1/subscriptions/s", nil, &sub)
			if sub.Filter != `attributes.type != "Skip"` || sub.AckDeadlineSeconds != 30 || sub.Stats.Backlog != 29 {
				t.Fatalf("after restart: %+v %+v", sub, sub.Stats)
			}
			// And once more, after acking all: nothing comes back.
			e.ack("s", ackIDs(again)...)
			e.closeManager(crash)
			e.openManager()
			if more := e.pull("s", 10, true); len(more) != 0 {
				t.Fatalf("after the second restart: %v", datas(more))
			}
		})
	}
}

// TestRestartOrdering: after a crash, a key's unacked messages come back in
// order, one at a time.
func TestRestartOrdering(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("o", map[string]any{"topic": "t", "enableMessageOrdering": true})
	e.publish("t", "E", "s", "A", "A", "A", "B")
	first := e.pullN("o", 2) // E-0 (A), E-3 (B)
	e.closeManager(true)
	e.openManager()
	for _, want := range []string{"E-0", "E-1", "E-2"} {
		var r Received
		for _, m := range e.pullN("o", 1+boolInt(want == "E-0")) {
			if m.Message.OrderingKey == "A" {
				r = m
			}
		}
		if string(r.Message.Data) != want {
			t.Fatalf("got %q, want %q (first pull %v)", r.Message.Data, want, datas(first))
		}
		e.ack("o", r.AckID)
	}
}

// TestRestartOrderingExactlyOnce: on an ordered exactly-once subscription
// the ack ids outstanding at a restart (clean, crash, or crash right after
// a checkpoint) are accepted after it, and each key stays held by its
// outstanding message: its later messages come only after that ack.
func TestRestartOrderingExactlyOnce(t *testing.T) {
	for _, mode := range []string{"clean", "crash", "checkpointed"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.topic("t", 1)
			e.create("o", map[string]any{"topic": "t", "enableMessageOrdering": true, "enableExactlyOnceDelivery": true, "ackDeadlineSeconds": 60})
			e.publish("t", "E", "s", "A", "A", "A", "B", "B", "")
			first := e.pullN("o", 3) // E-0 (A), E-3 (B), E-5 (no key)
			slices.SortFunc(first, func(a, b Received) int { return bytes.Compare(a.Message.Data, b.Message.Data) })
			if got := datas(first); !slices.Equal(got, []string{"E-0", "E-3", "E-5"}) {
				t.Fatalf("first pull %v", got)
			}
			if mode == "checkpointed" {
				if err := e.m.checkpoint(context.Background(), true); err != nil {
					t.Fatal(err)
				}
			}
			e.closeManager(mode != "clean")
			e.openManager()

			// Nothing else is deliverable: A and B are held by E-0 and E-3.
			if more := e.pull("o", 10, true); len(more) != 0 {
				t.Fatalf("after restart, delivered %v while their keys are held", datas(more))
			}
			if inv := e.ack("o", first[0].AckID, first[2].AckID); len(inv) != 0 {
				t.Fatalf("ack ids from before the restart refused: %v", inv)
			}
			if inv := e.ack("o", first[0].AckID); len(inv) != 1 {
				t.Fatalf("exactly-once: an ack id accepted twice")
			}
			next := e.pullN("o", 1)
			if string(next[0].Message.Data) != "E-1" || next[0].DeliveryAttempt != 1 {
				t.Fatalf("after acking E-0 got %s (attempt %d), want E-1 (attempt 1)", next[0].Message.Data, next[0].DeliveryAttempt)
			}
			if more := e.pull("o", 10, true); len(more) != 0 {
				t.Fatalf("delivered %v while E-1 and E-3 hold their keys", datas(more))
			}
			// Nack B's holder with its pre-restart id: it comes back first.
			if inv := e.modack("o", 0, first[1].AckID); len(inv) != 0 {
				t.Fatalf("nack with an ack id from before the restart refused: %v", inv)
			}
			again := e.pullN("o", 1)
			if string(again[0].Message.Data) != "E-3" || again[0].DeliveryAttempt != 2 {
				t.Fatalf("after the nack got %s (attempt %d), want E-3 (attempt 2)", again[0].Message.Data, again[0].DeliveryAttempt)
			}
			e.ack("o", next[0].AckID, again[0].AckID)
			rest := e.pullN("o", 2)
			slices.SortFunc(rest, func(a, b Received) int { return bytes.Compare(a.Message.Data, b.Message.Data) })
			if got := datas(rest); !slices.Equal(got, []string{"E-2", "E-4"}) {
				t.Fatalf("last messages %v, want E-2 and E-4", got)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte("s"), encDef([]byte(`{"topic":"t"}`), positions{{Base: 3, Acked: [][2]int64{{5, 7}}}}, 7))
	f.Add([]byte("s"), encAck(1, []int64{4, 9, 10}))
	f.Add([]byte("s"), encState(0, []stateEnt{{Off: 3, Attempts: 2, Due: 123}}))
	f.Add([]byte("s"), encCkpt([]byte(`{}`), [5]int64{1, 2, 3, 4, 5}, []int64{0, 7}, 9))
	f.Add([]byte("s"), encRuns(0, 10, []run{{N: 3, Acked: true}, {N: 2, Attempts: 4, Due: 9}}))
	f.Add([]byte(""), encSnap("n", "s", "t", 99, positions{{Base: 1}}))
	f.Add([]byte(""), encSnapDelete("n"))
	f.Add([]byte("s"), encHold(2, []holdEnt{{Off: 4, Key: "k"}, {Off: 9}}))
	f.Add([]byte(""), []byte{1, kBegin})
	f.Add([]byte(""), []byte{2, 1})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := decodeRecord(key, value)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error does not wrap errCorrupt: %v", err)
			}
			return
		}
		if r.part < 0 {
			t.Fatalf("negative partition")
		}
	})
}

func TestJournalRoundTrip(t *testing.T) {
	pos := positions{{Base: 3, Acked: [][2]int64{{5, 7}, {9, 9}}}, {Base: 0}}
	r, err := decodeRecord([]byte("s"), encDef([]byte(`{"topic":"t"}`), pos, 5))
	if err != nil || string(r.def) != `{"topic":"t"}` || len(r.pos) != 2 || !slices.Equal(r.pos[0].Acked, pos[0].Acked) {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = decodeRecord([]byte("s"), encRuns(2, 10, []run{{N: 3, Acked: true}, {N: 2, Attempts: 4, Due: 9, Out: true}}))
	if err != nil || r.part != 2 || r.first != 10 || len(r.runs) != 2 || r.runs[1] != (run{N: 2, Attempts: 4, Due: 9, Out: true}) || !r.runs[0].Acked {
		t.Fatalf("%+v %v", r, err)
	}
	hs := []holdEnt{{Off: 4, Key: "k"}, {Off: 9}, {Off: 1 << 40, Key: "é"}}
	r, err = decodeRecord([]byte("s"), encHold(3, hs))
	if err != nil || r.kind != kHold || r.part != 3 || !slices.Equal(r.holds, hs) {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range [][]byte{nil, {1}, {1, 99}, {2, kAck}, append(encAck(0, []int64{1}), 0), {1, kHold, 0, 1, 2, 5}} {
		if _, err := decodeRecord(nil, bad); !errors.Is(err, errCorrupt) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

// TestRetention: unacked messages older than messageRetentionDuration are
// dropped (counted as acknowledged).
func TestRetention(t *testing.T) {
	e := newEnv(t)
	e.topic("t", 1)
	e.create("r", map[string]any{"topic": "t", "messageRetentionDuration": "600s"})
	old := time.Now().Add(-20 * time.Minute)
	var recs []eventlog.Record
	for i := range 5 {
		recs = append(recs, eventlog.Record{Value: []byte{byte(i)}, Timestamp: old})
	}
	recs = append(recs, eventlog.Record{Value: []byte("new")})
	if _, err := e.log.Append(context.Background(), "t", 0, recs); err != nil {
		t.Fatal(err)
	}
	e.m.enforceRetention(context.Background())
	got := e.pullN("r", 1)
	if string(got[0].Message.Data) != "new" {
		t.Fatalf("got %q: an expired message was delivered", got[0].Message.Data)
	}
	if more := e.pull("r", 10, true); len(more) != 0 {
		t.Fatalf("more: %v", datas(more))
	}
	var sub Subscription
	e.do("GET", "/v1/subscriptions/r", nil, &sub)
	if sub.Stats.Backlog != 1 || sub.MessageRetentionDuration != "600s" {
		t.Fatalf("%+v %+v", sub, sub.Stats)
	}
}

// TestJournalCorruptNamesField: a corrupt journal record fails with
// errCorrupt, naming the kind and the field that was wrong.
func TestJournalCorruptNamesField(t *testing.T) {
	ack := encAck(0, []int64{1, 300})
	pos := encPositions(positions{{Base: 1}}, 0)
	bigInc := binary.AppendUvarint(pos[:len(pos)-1], 1<<32) // the incarnation is the last byte
	for _, tc := range []struct {
		name  string
		value []byte
		want  string
	}{
		{"truncated", ack[:len(ack)-1], "kind 3: subscription journal: corrupt record: offset delta runs past the end"},
		{"trailing", append(slices.Clone(ack), 0), "kind 3: subscription journal: corrupt record: 1 bytes after the record"},
		{"count", []byte{recVersion, kAck, 0, 5}, "kind 3: subscription journal: corrupt record: offset count 5 exceeds what the 0 bytes left can hold"},
		{"overlong", append([]byte{recVersion, kRuns}, bytes.Repeat([]byte{0xff}, 11)...), "kind 7: subscription journal: corrupt record: partition overflows 64 bits"},
		{"definition", []byte{recVersion, kDef, 9, '{'}, "kind 1: subscription journal: corrupt record: definition length 9 exceeds the 1 bytes left"},
		{"incarnation", bigInc, "kind 5: subscription journal: corrupt record: incarnation out of range"},
		{"ranges", []byte{recVersion, kPositions, 1, 4, 1, 1, 0, 0}, "kind 5: subscription journal: corrupt record: acked ranges out of order"},
	} {
		_, err := decodeRecord([]byte("s"), tc.value)
		if !errors.Is(err, errCorrupt) || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
