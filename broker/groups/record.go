package groups

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
	kindOffset    byte   = 1
	kindGroup     byte   = 2
	// maxKeyString bounds group ids and topic names: they are written with
	// a u16 length.
	maxKeyString = math.MaxUint16
	// minMemberBytes is the smallest encoded member, which bounds how many
	// members a value of n bytes can claim before anything is allocated.
	minMemberBytes = 4*4 + 4 + 4 + 4 + 4 + 4
	minProtoBytes  = 4 + 4
)

// recordKey is a decoded key.
type recordKey struct {
	kind  byte
	group string
	tp    TopicPartition // kindOffset only
}

// groupRecord is the stored form of a group's metadata: written when a
// generation becomes Stable (with the leader's assignment) or Empty.
type groupRecord struct {
	generation             int32
	protocolType, protocol string
	leader                 string
	stateTime              time.Time
	members                []memberRecord
}

type memberRecord struct {
	id, instanceID, clientID, clientHost string
	session, rebalance                   time.Duration
	protocols                            []Protocol
	assignment                           []byte
}

var errRecord = errors.New("undecodable group record")

func offsetKey(group string, tp TopicPartition) []byte {
	b := make([]byte, 0, 2+1+2+len(group)+2+len(tp.Topic)+4)
	b = binary.BigEndian.AppendUint16(b, recordVersion)
	b = append(b, kindOffset)
	b = appendStr16(b, group)
	b = appendStr16(b, tp.Topic)
	return binary.BigEndian.AppendUint32(b, uint32(tp.Partition))
}

func groupKey(group string) []byte {
	b := make([]byte, 0, 2+1+2+len(group))
	b = binary.BigEndian.AppendUint16(b, recordVersion)
	b = append(b, kindGroup)
	return appendStr16(b, group)
}

func encodeOffset(o Offset) []byte {
	b := make([]byte, 0, 2+8+4+8+4+len(o.Metadata))
	b = binary.BigEndian.AppendUint16(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(o.Offset))
	b = binary.BigEndian.AppendUint32(b, uint32(o.LeaderEpoch))
	b = binary.BigEndian.AppendUint64(b, uint64(o.CommitTime.UnixMilli()))
	return appendBytes32(b, []byte(o.Metadata))
}

func encodeGroup(r *groupRecord) []byte {
	b := binary.BigEndian.AppendUint16(nil, recordVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(r.generation))
	b = appendBytes32(b, []byte(r.protocolType))
	b = appendBytes32(b, []byte(r.protocol))
	b = appendBytes32(b, []byte(r.leader))
	b = binary.BigEndian.AppendUint64(b, uint64(r.stateTime.UnixMilli()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.members)))
	for _, m := range r.members {
		b = appendBytes32(b, []byte(m.id))
		b = appendBytes32(b, []byte(m.instanceID))
		b = appendBytes32(b, []byte(m.clientID))
		b = appendBytes32(b, []byte(m.clientHost))
		b = binary.BigEndian.AppendUint32(b, durMillis(m.session))
		b = binary.BigEndian.AppendUint32(b, durMillis(m.rebalance))
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.protocols)))
		for _, p := range m.protocols {
			b = appendBytes32(b, []byte(p.Name))
			b = appendBytes32(b, p.Metadata)
		}
		b = appendBytes32(b, m.assignment)
	}
	return b
}

func durMillis(d time.Duration) uint32 {
	return uint32(min(max(d.Milliseconds(), 0), math.MaxUint32))
}

func appendStr16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBytes32(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// reader decodes with bounds checks; the first failure sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errRecord, what)
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

// bytes32 returns nil for a zero length, so decoded values compare equal
// to what callers usually pass.
func (r *reader) bytes32(what string) []byte {
	n := r.u32(what)
	if uint64(n) > uint64(len(r.b)) {
		r.fail(what + " length runs past the end")
		return nil
	}
	v := r.take(int(n), what)
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (r *reader) str32(what string) string { return string(r.bytes32(what)) }

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

func decodeKey(b []byte) (recordKey, error) {
	r := reader{b: b}
	var k recordKey
	r.version("key")
	k.kind = r.u8("key kind")
	k.group = r.str16("group id")
	switch k.kind {
	case kindOffset:
		k.tp.Topic = r.str16("topic")
		k.tp.Partition = int32(r.u32("partition"))
	case kindGroup:
	default:
		r.fail(fmt.Sprintf("unknown key kind %d", k.kind))
	}
	return k, r.end("key")
}

func decodeOffset(b []byte) (Offset, error) {
	r := reader{b: b}
	var o Offset
	r.version("offset value")
	o.Offset = int64(r.u64("offset"))
	o.LeaderEpoch = int32(r.u32("leader epoch"))
	o.CommitTime = time.UnixMilli(int64(r.u64("commit time")))
	o.Metadata = r.str32("metadata")
	return o, r.end("offset value")
}

func decodeGroup(b []byte) (*groupRecord, error) {
	r := reader{b: b}
	g := &groupRecord{}
	r.version("group value")
	g.generation = int32(r.u32("generation"))
	g.protocolType = r.str32("protocol type")
	g.protocol = r.str32("protocol")
	g.leader = r.str32("leader")
	g.stateTime = time.UnixMilli(int64(r.u64("state time")))
	n := r.u32("member count")
	if r.err == nil && uint64(n) > uint64(len(r.b)/minMemberBytes) {
		r.fail(fmt.Sprintf("member count %d exceeds the value", n))
	}
	for i := uint32(0); r.err == nil && i < n; i++ {
		var m memberRecord
		m.id = r.str32("member id")
		m.instanceID = r.str32("instance id")
		m.clientID = r.str32("client id")
		m.clientHost = r.str32("client host")
		m.session = time.Duration(r.u32("session timeout")) * time.Millisecond
		m.rebalance = time.Duration(r.u32("rebalance timeout")) * time.Millisecond
		np := r.u32("protocol count")
		if r.err == nil && uint64(np) > uint64(len(r.b)/minProtoBytes) {
			r.fail(fmt.Sprintf("protocol count %d exceeds the value", np))
		}
		for j := uint32(0); r.err == nil && j < np; j++ {
			m.protocols = append(m.protocols, Protocol{Name: r.str32("protocol name"), Metadata: r.bytes32("protocol metadata")})
		}
		m.assignment = r.bytes32("assignment")
		g.members = append(g.members, m)
	}
	if err := r.end("group value"); err != nil {
		return nil, err
	}
	return g, nil
}
