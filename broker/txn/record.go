package txn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/heraldhq/herald/internal/binrec"
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
	return binrec.AppendStr16(b, id)
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
		b = binrec.AppendStr16(b, tp.Topic)
		b = binary.BigEndian.AppendUint32(b, uint32(tp.Partition))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(t.Groups)))
	for _, g := range t.Groups {
		b = binrec.AppendStr16(b, g)
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

// decodeKey returns the transactional id of a record key.
func decodeKey(b []byte) (string, error) {
	r := newReader(b)
	r.Version("key")
	id := r.Str16("transactional id")
	if r.Err() == nil && id == "" {
		r.Fail("empty transactional id")
	}
	return id, r.End("key")
}

// decodeValue decodes a record value for transactional id id.
func decodeValue(id string, b []byte) (Txn, error) {
	r := newReader(b)
	t := Txn{ID: id}
	r.Version("value")
	t.ProducerID = int64(r.U64("producer id"))
	t.Epoch = int16(r.U16("producer epoch"))
	t.Timeout = time.Duration(r.U32("timeout")) * time.Millisecond
	t.State = State(r.U8("state"))
	start, updated := int64(r.U64("start time")), int64(r.U64("update time"))
	t.Start, t.Updated = fromMilli(start), fromMilli(updated)
	if r.Err() == nil {
		switch {
		case start < -1 || updated < -1:
			r.Fail(fmt.Sprintf("times %d and %d", start, updated))
		case t.State < 0 || t.State >= numStates:
			r.Fail(fmt.Sprintf("unknown state %d", t.State))
		case t.ProducerID < 0 || t.Epoch < 0:
			r.Fail(fmt.Sprintf("producer id %d epoch %d", t.ProducerID, t.Epoch))
		case t.Timeout > math.MaxInt32*time.Millisecond:
			r.Fail("timeout out of range")
		}
	}
	n := r.Count("partition count", minPartBytes)
	for i := uint32(0); r.Err() == nil && i < n; i++ {
		tp := TopicPartition{Topic: r.Str16("topic")}
		tp.Partition = int32(r.U32("partition"))
		if r.Err() == nil && i > 0 && comparePart(t.Partitions[i-1], tp) >= 0 {
			r.Fail("partitions not sorted")
		}
		t.Partitions = append(t.Partitions, tp)
	}
	n = r.Count("group count", minGroupBytes)
	for i := uint32(0); r.Err() == nil && i < n; i++ {
		g := r.Str16("group")
		if r.Err() == nil && i > 0 && t.Groups[i-1] >= g {
			r.Fail("groups not sorted")
		}
		t.Groups = append(t.Groups, g)
	}
	if err := r.End("value"); err != nil {
		return Txn{}, err
	}
	return t, nil
}

// newReader reads a record of this package's format.
func newReader(b []byte) *binrec.Reader { return binrec.NewReader(b, ErrRecord, recordVersion) }
