package txn

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeRecord: the decoder of __transaction_state records never
// panics, never allocates more than the input allows, and what it accepts
// re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	full := Txn{ID: "tx", ProducerID: 9, Epoch: 3, Timeout: time.Minute, State: Ongoing, Start: t0, Updated: t0,
		Partitions: []TopicPartition{tpA, tpB}, Groups: []string{"g"}}
	f.Add(encodeKey("tx"), encodeValue(full))
	f.Add(encodeKey("tx"), encodeValue(Txn{ID: "tx", State: CompleteAbort}))
	f.Add([]byte{0, 1, 0, 0}, []byte{0, 1})
	f.Add([]byte{0, 2, 0, 1, 'x'}, []byte{0, 1, 0xff, 0xff, 0xff, 0xff})
	v := encodeValue(full)
	f.Add(encodeKey("tx"), v[:len(v)-1])
	f.Add(encodeKey("tx"), append(bytes.Clone(v), 0))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		id, err := decodeKey(key)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeKey(id), key) {
			t.Fatalf("key %x re-encodes as %x", key, encodeKey(id))
		}
		tx, err := decodeValue(id, value)
		if err != nil {
			return
		}
		if got := encodeValue(tx); !bytes.Equal(got, value) {
			t.Fatalf("value %x re-encodes as %x", value, got)
		}
	})
}
