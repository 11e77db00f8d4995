package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Tests with kcat, which is librdkafka underneath.

const kcatInstall = "apt-get install -y kcat"

// kcatFormat prints what a record is: partition, offset, key, value and
// headers ("k=v,k=v"), tab-separated.
const kcatFormat = `%p\t%o\t%k\t%s\t%h\n`

// TestKcat: kcat -P with keys and headers (idempotent), read back by
// kcat -C and by a balanced consumer group (kcat -G), which commits.
func TestKcat(t *testing.T) {
	t.Parallel()
	kcat := requireTool(t, "kcat", kcatInstall)
	s := startServer(t)
	const topic, group = "kcat", "kcat-group"
	s.createTopic(t, topic, 3)

	want := makeRecords("kcat", 200)
	var in strings.Builder
	for i := range want {
		want[i].Headers = []header{{"client", "kcat"}, {"run", "compat"}} // -H applies to every record
		fmt.Fprintf(&in, "%s:%s\n", want[i].Key, want[i].Value)
	}
	runCmd(t, 60*time.Second, in.String(), kcat, "-b", s.kafkaAddr, "-P", "-t", topic, "-K:",
		"-H", "client=kcat", "-H", "run=compat", "-X", "enable.idempotence=true")
	if end := s.endOffsets(t, topic); end[0]+end[1]+end[2] != int64(len(want)) {
		t.Fatalf("end offsets %v after kcat -P of %d records", end, len(want))
	}

	out := runCmd(t, 60*time.Second, "", kcat, "-b", s.kafkaAddr, "-C", "-t", topic, "-e", "-o", "beginning",
		"-q", "-f", kcatFormat)
	got := parseKcat(t, out)
	requireSameRecords(t, "kcat -C", want, got, true)
	requireOrderedByPartition(t, "kcat -C", want, got)

	// franz-go reads what librdkafka wrote, headers included.
	cl := s.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	requireSameRecords(t, "franz-go reading kcat's records", want, pollN(t, cl, len(want), 30*time.Second), true)

	out = runCmd(t, 90*time.Second, "", kcat, "-b", s.kafkaAddr, "-G", group, topic, "-e", "-q", "-f", kcatFormat,
		"-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500")
	got = parseKcat(t, out)
	requireSameRecords(t, "kcat -G", want, got, true)
	if c, end := s.committed(t, group, topic), s.endOffsets(t, topic); !mapsEqual(c, end) {
		t.Fatalf("kcat -G committed %v, want the end offsets %v", c, end)
	}
}

// TestKcatReadCommitted: kcat (librdkafka) with isolation.level
// read_committed reads only the committed transaction's records of a topic
// holding an aborted and a committed one; read_uncommitted reads both.
func TestKcatReadCommitted(t *testing.T) {
	t.Parallel()
	kcat := requireTool(t, "kcat", kcatInstall)
	s := startServer(t)
	const topic = "kcat-txn"
	s.createTopic(t, topic, 1)
	produceTxns(t, s, topic, "kcat")
	for _, tc := range []struct {
		iso  string
		want string
	}{
		{"read_committed", "kcat-committed-0,kcat-committed-1"},
		{"read_uncommitted", "kcat-aborted-0,kcat-aborted-1,kcat-committed-0,kcat-committed-1"},
	} {
		out := runCmd(t, 60*time.Second, "", kcat, "-b", s.kafkaAddr, "-C", "-t", topic, "-e", "-o", "beginning",
			"-q", "-f", "%s\\n", "-X", "isolation.level="+tc.iso)
		if got := strings.Join(strings.Fields(out), ","); got != tc.want {
			t.Errorf("kcat -X isolation.level=%s read %q, want %q", tc.iso, got, tc.want)
		}
	}
}

func parseKcat(t *testing.T, out string) []record {
	t.Helper()
	var recs []record
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 5 {
			t.Fatalf("kcat printed %q, want partition, offset, key, value, headers", line)
		}
		p, _ := strconv.Atoi(f[0])
		o, _ := strconv.ParseInt(f[1], 10, 64)
		r := record{Partition: int32(p), Offset: o, Key: f[2], Value: f[3]}
		if f[4] != "" {
			for kv := range strings.SplitSeq(f[4], ",") {
				k, v, _ := strings.Cut(kv, "=")
				r.Headers = append(r.Headers, header{k, v})
			}
		}
		recs = append(recs, r)
	}
	return recs
}

// TestKcatQueryTimestamps: kcat -Q -t topic:partition:timestamp answers the
// same offsets as franz-go's ListOffsets for the same timestamps.
func TestKcatQueryTimestamps(t *testing.T) {
	t.Parallel()
	kcat := requireTool(t, "kcat", kcatInstall)
	s := startServer(t)
	const topic = "kcat-times"
	s.createTopic(t, topic, 2)

	// Ten records a second apart on partition 1, CreateTime set by us.
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	cl := s.client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var krs []*kgo.Record
	for i := range 10 {
		krs = append(krs, &kgo.Record{Topic: topic, Partition: 1, Key: []byte(itoa(i)),
			Timestamp: time.UnixMilli(base + int64(i)*1000)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	for _, tc := range []struct {
		ts   int64
		want int64
	}{
		{base - 60_000, 0},
		{base, 0},
		{base + 4500, 5},
		{base + 5000, 5},
		{base + 9000, 9},
		{base + 9001, -1}, // after the last record: no offset
	} {
		out := runCmd(t, 30*time.Second, "", kcat, "-b", s.kafkaAddr, "-Q", "-t", fmt.Sprintf("%s:1:%d", topic, tc.ts))
		var gotTopic string
		var gotPart int32
		var kcatOff int64
		if _, err := fmt.Sscanf(strings.TrimSpace(out), "%s [%d] offset %d", &gotTopic, &gotPart, &kcatOff); err != nil || gotTopic != topic || gotPart != 1 {
			t.Fatalf("kcat -Q printed %q, want %q", out, topic+" [1] offset N")
		}

		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = 1, tc.ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("ListOffsets: %v", err)
		}
		franzOff := resp.Topics[0].Partitions[0].Offset
		if kcatOff != tc.want || franzOff != tc.want {
			t.Errorf("timestamp base%+dms: kcat -Q says offset %d, franz-go ListOffsets %d, want %d",
				tc.ts-base, kcatOff, franzOff, tc.want)
		}
	}

	// kadm's view of the same thing, for a timestamp between records.
	offs, err := kadm.NewClient(cl).ListOffsetsAfterMilli(ctx, base+2500, topic)
	if err != nil {
		t.Fatalf("kadm ListOffsetsAfterMilli: %v", err)
	}
	if o, _ := offs.Lookup(topic, 1); o.Offset != 3 || o.Timestamp != base+3000 {
		t.Errorf("kadm ListOffsetsAfterMilli(base+2500) = offset %d time %d, want 3 and base+3000", o.Offset, o.Timestamp)
	}
}

// TestKcatMetadata: kcat -L -J lists the broker at the address the test
// connected to and every partition of a topic led by it.
func TestKcatMetadata(t *testing.T) {
	t.Parallel()
	kcat := requireTool(t, "kcat", kcatInstall)
	s := startServer(t)
	const topic = "kcat-meta"
	s.createTopic(t, topic, 4)

	out := runCmd(t, 30*time.Second, "", kcat, "-b", s.kafkaAddr, "-L", "-J")
	var md struct {
		Brokers []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Error      string `json:"error"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				Leader    int32 `json:"leader"`
				Replicas  []struct {
					ID int32 `json:"id"`
				} `json:"replicas"`
				ISRs []struct {
					ID int32 `json:"id"`
				} `json:"isrs"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(out), &md); err != nil {
		t.Fatalf("kcat -L -J printed %q: %v", out, err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Name != s.kafkaAddr {
		t.Fatalf("kcat -L brokers %+v, want one at %s", md.Brokers, s.kafkaAddr)
	}
	id := md.Brokers[0].ID
	found := false
	for _, tp := range md.Topics {
		if tp.Topic != topic {
			continue
		}
		found = true
		if tp.Error != "" || len(tp.Partitions) != 4 {
			t.Fatalf("kcat -L topic %s: error %q, %d partitions, want 4", topic, tp.Error, len(tp.Partitions))
		}
		seen := map[int32]bool{}
		for _, p := range tp.Partitions {
			seen[p.Partition] = true
			if p.Leader != id || len(p.Replicas) != 1 || p.Replicas[0].ID != id || len(p.ISRs) != 1 || p.ISRs[0].ID != id {
				t.Errorf("partition %d: leader %d replicas %v isrs %v, want broker %d everywhere", p.Partition, p.Leader, p.Replicas, p.ISRs, id)
			}
		}
		if len(seen) != 4 {
			t.Errorf("partitions %v, want 0..3", seen)
		}
	}
	if !found {
		t.Fatalf("kcat -L does not list topic %s: %s", topic, out)
	}
}
