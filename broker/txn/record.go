package txn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Frozen constants of the record format (see the package doc).
const (
	recordVersion uint16 = 1
	// minPartBytes and minGroupBytes are the smallest encoded partition
	// and group, which bound the counts a value may claim.
	minPartBytes  = 2 + 4
	minGroupBytes = 2
)

// ErrRecord is wrapped by every decoding error of a stored record.
var ErrRecord = errors.New("undecodable transaction record")

func encodeKey(id string) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 4+len(id)), recordVersion)
	return appendStr16(b, id)
}

func encodeValue(t Txn) []byte {
	b := binary.BigEndian.AppendUint16(nil, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(t.ProducerID))
	b = binary.BigEndian.AppendUint16(b, uint16(t.Epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(min(max(t.Timeout.Milliseconds(), 0), math.MaxInt32)))
	b = append(b, byte(t.State))
	b = binary.BigEndian.AppendUint64(b, uint64(unixMilli(t.Start)))
	b = binary.BigEndian.AppendUint64(b, uint64(unixMilli(t.Updated)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.Partitions)))
	for _, tp := range t.Partitions {
		b = appendStr16(b, tp.Topic)
		b = binary.BigEndian.AppendUint32(b, uint32(tp.Partition))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.Groups)))
	for _, g := range t.Groups {
		b = appendStr16(b, g)
	}
	return b
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms < 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func appendStr16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// reader decodes with bounds checks; the first failure sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrRecord, what)
	}
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail(what + " runs past the end")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(what string) byte {
	if v := r.take(1, what); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if v := r.take(2, what); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if v := r.take(4, what); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if v := r.take(8, what); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str16(what string) string { return string(r.take(int(r.u16(what)), what)) }

func (r *reader) version(what string) {
	if v := r.u16(what + " version"); r.err == nil && v != recordVersion {
		r.fail(fmt.Sprintf("%s version %d (this build reads %d)", what, v, recordVersion))
	}
}

func (r *reader) end(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes after the %s", len(r.b), what))
	}
	return r.err
}

// decodeKey returns the transactional id of a record key.
func decodeKey(b []byte) (string, error) {
	r := reader{b: b}
	r.version("key")
	id := r.str16("transactional id")
	if r.err == nil && id == "" {
		r.fail("empty transactional id")
	}
	return id, r.end("key")
}

// decodeValue decodes a record value for transactional id id.
func decodeValue(id string, b []byte) (Txn, error) {
	r := reader{b: b}
	t := Txn{ID: id}
	r.version("value")
	t.ProducerID = int64(r.u64("producer id"))
	t.Epoch = int16(r.u16("producer epoch"))
	t.Timeout = time.Duration(r.u32("timeout")) * time.Millisecond
	t.State = State(r.u8("state"))
	start, updated := int64(r.u64("start time")), int64(r.u64("update time"))
	t.Start, t.Updated = fromMilli(start), fromMilli(updated)
	if r.err == nil {
		switch {
		case start < -1 || updated < -1:
			r.fail(fmt.Sprintf("times %d and %d", start, updated))
		case t.State < 0 || t.State >= numStates:
			r.fail(fmt.Sprintf("unknown state %d", t.State))
		case t.ProducerID < 0 || t.Epoch < 0:
			r.fail(fmt.Sprintf("producer id %d epoch %d", t.ProducerID, t.Epoch))
		case t.Timeout > math.MaxInt32*time.Millisecond:
			r.fail("timeout out of range")
		}
	}
	n := r.u32("partition count")
	if r.err == nil && uint64(n) > uint64(len(r.b)/minPartBytes) {
		r.fail(fmt.Sprintf("partition count %d exceeds the value", n))
	}
	for i := uint32(0); r.err == nil && i < n; i++ {
		tp := TopicPartition{Topic: r.str16("topic")}
		tp.Partition = int32(r.u32("partition"))
		if r.err == nil && i > 0 && comparePart(t.Partitions[i-1], tp) >= 0 {
			r.fail("partitions not sorted")
		}
		t.Partitions = append(t.Partitions, tp)
	}
	n = r.u32("group count")
	if r.err == nil && uint64(n) > uint64(len(r.b)/minGroupBytes) {
		r.fail(fmt.Sprintf("group count %d exceeds the value", n))
	}
	for i := uint32(0); r.err == nil && i < n; i++ {
		g := r.str16("group")
		if r.err == nil && i > 0 && t.Groups[i-1] >= g {
			r.fail("groups not sorted")
		}
		t.Groups = append(t.Groups, g)
	}
	if err := r.end("value"); err != nil {
		return Txn{}, err
	}
	return t, nil
}
