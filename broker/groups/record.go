package groups

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
	b = binrec.AppendStr16(b, group)
	b = binrec.AppendStr16(b, tp.Topic)
	return binary.BigEndian.AppendUint32(b, uint32(tp.Partition))
}

func groupKey(group string) []byte {
	b := make([]byte, 0, 2+1+2+len(group))
	b = binary.BigEndian.AppendUint16(b, recordVersion)
	b = append(b, kindGroup)
	return binrec.AppendStr16(b, group)
}

func encodeOffset(o Offset) []byte {
	b := make([]byte, 0, 2+8+4+8+4+len(o.Metadata))
	b = binary.BigEndian.AppendUint16(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(o.Offset))
	b = binary.BigEndian.AppendUint32(b, uint32(o.LeaderEpoch))
	b = binary.BigEndian.AppendUint64(b, uint64(o.CommitTime.UnixMilli()))
	return binrec.AppendBytes32(b, []byte(o.Metadata))
}

func encodeGroup(r *groupRecord) []byte {
	b := binary.BigEndian.AppendUint16(nil, recordVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(r.generation))
	b = binrec.AppendBytes32(b, []byte(r.protocolType))
	b = binrec.AppendBytes32(b, []byte(r.protocol))
	b = binrec.AppendBytes32(b, []byte(r.leader))
	b = binary.BigEndian.AppendUint64(b, uint64(r.stateTime.UnixMilli()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.members)))
	for _, m := range r.members {
		b = binrec.AppendBytes32(b, []byte(m.id))
		b = binrec.AppendBytes32(b, []byte(m.instanceID))
		b = binrec.AppendBytes32(b, []byte(m.clientID))
		b = binrec.AppendBytes32(b, []byte(m.clientHost))
		b = binary.BigEndian.AppendUint32(b, durMillis(m.session))
		b = binary.BigEndian.AppendUint32(b, durMillis(m.rebalance))
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.protocols)))
		for _, p := range m.protocols {
			b = binrec.AppendBytes32(b, []byte(p.Name))
			b = binrec.AppendBytes32(b, p.Metadata)
		}
		b = binrec.AppendBytes32(b, m.assignment)
	}
	return b
}

func durMillis(d time.Duration) uint32 {
	return uint32(min(max(d.Milliseconds(), 0), math.MaxUint32))
}

func decodeKey(b []byte) (recordKey, error) {
	r := newReader(b)
	var k recordKey
	r.Version("key")
	k.kind = r.U8("key kind")
	k.group = r.Str16("group id")
	switch k.kind {
	case kindOffset:
		k.tp.Topic = r.Str16("topic")
		k.tp.Partition = int32(r.U32("partition"))
	case kindGroup:
	default:
		r.Fail(fmt.Sprintf("unknown key kind %d", k.kind))
	}
	return k, r.End("key")
}

func decodeOffset(b []byte) (Offset, error) {
	r := newReader(b)
	var o Offset
	r.Version("offset value")
	o.Offset = int64(r.U64("offset"))
	o.LeaderEpoch = int32(r.U32("leader epoch"))
	o.CommitTime = time.UnixMilli(int64(r.U64("commit time")))
	o.Metadata = r.Str32("metadata")
	return o, r.End("offset value")
}

func decodeGroup(b []byte) (*groupRecord, error) {
	r := newReader(b)
	g := &groupRecord{}
	r.Version("group value")
	g.generation = int32(r.U32("generation"))
	g.protocolType = r.Str32("protocol type")
	g.protocol = r.Str32("protocol")
	g.leader = r.Str32("leader")
	g.stateTime = time.UnixMilli(int64(r.U64("state time")))
	n := r.Count("member count", minMemberBytes)
	for i := uint32(0); r.Err() == nil && i < n; i++ {
		var m memberRecord
		m.id = r.Str32("member id")
		m.instanceID = r.Str32("instance id")
		m.clientID = r.Str32("client id")
		m.clientHost = r.Str32("client host")
		m.session = time.Duration(r.U32("session timeout")) * time.Millisecond
		m.rebalance = time.Duration(r.U32("rebalance timeout")) * time.Millisecond
		np := r.Count("protocol count", minProtoBytes)
		for j := uint32(0); r.Err() == nil && j < np; j++ {
			m.protocols = append(m.protocols, Protocol{Name: r.Str32("protocol name"), Metadata: r.Bytes32("protocol metadata")})
		}
		m.assignment = r.Bytes32("assignment")
		g.members = append(g.members, m)
	}
	if err := r.End("group value"); err != nil {
		return nil, err
	}
	return g, nil
}

// newReader reads a record of this package's format.
func newReader(b []byte) *binrec.Reader { return binrec.NewReader(b, errRecord, recordVersion) }
