package compat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Tests with kafkajs, through js/roundtrip.js.

// TestKafkajsRoundtrip runs js/roundtrip.js: an idempotent kafkajs producer
// writes records with headers and a kafkajs consumer group reads them all
// and commits.
func TestKafkajsRoundtrip(t *testing.T) {
	t.Parallel()
	node := requireKafkajs(t)
	s := startServer(t)
	kafkajsRoundtrip(t, node, s, "kafkajs", "kafkajs-group", 300)
}

// TestKafkajsSASLSSL: the same over TLS with each SASL mechanism.
func TestKafkajsSASLSSL(t *testing.T) {
	t.Parallel()
	node := requireKafkajs(t)
	s, files := startSecureServer(t)
	for _, mech := range []string{"scram-sha-512", "scram-sha-256", "plain"} {
		t.Run(mech, func(t *testing.T) {
			kafkajsRoundtrip(t, node, s, "kafkajs-"+mech, "kafkajs-group-"+mech, 50, mech, saslUser, saslPassword, files.CA)
		})
	}
}

func requireKafkajs(t *testing.T) string {
	t.Helper()
	node := requireTool(t, "node", "install Node.js 20 or later")
	if _, err := os.Stat(filepath.Join("js", "node_modules", "kafkajs", "package.json")); err != nil {
		t.Fatalf("kafkajs is not installed in compat/js (%v); run: (cd compat/js && npm ci) (test.sh does)", err)
	}
	return node
}

// kafkajsRoundtrip runs js/roundtrip.js for n records of a new topic and
// checks what it produced and consumed.
func kafkajsRoundtrip(t *testing.T, node string, s *server, topic, group string, n int, security ...string) {
	t.Helper()
	s.createTopic(t, topic, 3)
	out := runCmd(t, 90*time.Second, "", node, append([]string{filepath.Join("js", "roundtrip.js"), s.kafkaAddr, topic, group, itoa(n)}, security...)...)
	var sum struct {
		Produced int `json:"produced"`
		Consumed []struct {
			Partition int32             `json:"partition"`
			Offset    string            `json:"offset"` // kafkajs offsets are strings
			Key       string            `json:"key"`
			Value     string            `json:"value"`
			Headers   map[string]string `json:"headers"`
		} `json:"consumed"`
		Duplicates int    `json:"duplicates"`
		Error      string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("roundtrip.js printed %q: %v", out, err)
	}
	if sum.Error != "" || sum.Produced != n {
		t.Fatalf("roundtrip.js: produced %d of %d, error %s", sum.Produced, n, sum.Error)
	}
	want := makeRecords("kafkajs", n)
	var got []record
	for _, c := range sum.Consumed {
		r := record{Key: c.Key, Value: c.Value, Partition: c.Partition, Offset: mustInt64(t, c.Offset)}
		// A JSON object has no order; kafkajs keeps headers as one, so
		// put them back in the order makeRecords writes them.
		for _, k := range []string{"client", "seq"} {
			if v, ok := c.Headers[k]; ok {
				r.Headers = append(r.Headers, header{k, v})
			}
		}
		if extra := len(c.Headers) - len(r.Headers); extra > 0 {
			keys := make([]string, 0, len(c.Headers))
			for k := range c.Headers {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			t.Fatalf("record %s has unexpected headers %v", c.Key, keys)
		}
		got = append(got, r)
	}
	requireSameRecords(t, "kafkajs consumer group", want, got, true)
	requireOrderedByPartition(t, "kafkajs consumer group", want, got)
	if sum.Duplicates != 0 {
		t.Fatalf("kafkajs consumed %d duplicates", sum.Duplicates)
	}

	// What kafkajs wrote is exactly what franz-go reads, and the group's
	// commit is at the end of every partition.
	cl := s.client(t)
	cl.AddConsumeTopics(topic)
	requireSameRecords(t, "franz-go reading kafkajs's records", want, pollN(t, cl, n, 30*time.Second), true)
	if c, end := s.committed(t, group, topic), s.endOffsets(t, topic); !mapsEqual(c, end) {
		t.Fatalf("kafkajs committed %v, want the end offsets %v", c, end)
	}
}

func mustInt64(t *testing.T, s string) int64 {
	t.Helper()
	var v int64
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("offset %q: %v", s, err)
	}
	return v
}
