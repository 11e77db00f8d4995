package compat

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestConfluentSchemaRegistryJS runs js/schema_registry.js:
// @kafkajs/confluent-schema-registry registers Avro schemas with Herald's
// registry (on --registry-addr) and encodes records that kafkajs produces
// to a topic with herald.schema.validation=value; kafkajs consumes them and
// the registry client decodes them. A record that is not in the wire
// format is refused by the broker.
func TestConfluentSchemaRegistryJS(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node", "install Node.js 20 or later")
	if _, err := os.Stat(filepath.Join("js", "node_modules", "@kafkajs", "confluent-schema-registry", "package.json")); err != nil {
		t.Fatalf("@kafkajs/confluent-schema-registry is not installed in compat/js (%v); run: (cd compat/js && npm ci) (test.sh does)", err)
	}
	regAddr := sparePort(t)
	s := startServer(t, "--registry-addr", regAddr)
	const topic, n = "payments", 50
	adm := kadm.NewClient(s.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	validation := "value"
	resp, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"herald.schema.validation": &validation}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}

	out := runCmd(t, 90*time.Second, "", node, filepath.Join("js", "schema_registry.js"), "http://"+regAddr, s.kafkaAddr, topic, itoa(n))
	var sum struct {
		ID, IDV2, LatestID  int
		IncompatibleStatus  int
		IncompatibleMessage string
		Produced            int
		Consumed            []struct {
			Key   string
			Value struct {
				ID       string
				Cents    int
				Currency string
			}
		}
		PlainRefused bool
		PlainError   string
		Error        string
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("schema_registry.js printed %q: %v", out, err)
	}
	if sum.Error != "" {
		t.Fatalf("schema_registry.js: %s", sum.Error)
	}
	if sum.ID != 1 || sum.IDV2 != 2 || sum.LatestID != 2 {
		t.Fatalf("ids: v1 %d, v2 %d, latest %d; want 1, 2, 2", sum.ID, sum.IDV2, sum.LatestID)
	}
	if sum.IncompatibleStatus != 409 || !strings.Contains(sum.IncompatibleMessage, "required_now") {
		t.Fatalf("incompatible schema: status %d, %q", sum.IncompatibleStatus, sum.IncompatibleMessage)
	}
	if sum.Produced != n || len(sum.Consumed) != n {
		t.Fatalf("produced %d, consumed %d, want %d", sum.Produced, len(sum.Consumed), n)
	}
	seen := map[string]bool{}
	for _, c := range sum.Consumed {
		i, _ := strconv.Atoi(strings.TrimPrefix(c.Key, "k-"))
		want := "EUR"
		if i%2 == 1 {
			want = "USD"
		}
		if c.Value.ID != "p-"+itoa(i) || c.Value.Cents != 100+i || c.Value.Currency != want || seen[c.Key] {
			t.Fatalf("record %s decoded as %+v (or twice)", c.Key, c.Value)
		}
		seen[c.Key] = true
	}
	if !sum.PlainRefused || !strings.Contains(sum.PlainError, "magic byte") && !strings.Contains(sum.PlainError, "INVALID_RECORD") && !strings.Contains(strings.ToLower(sum.PlainError), "invalid record") {
		t.Fatalf("a plain record was not refused: %v %q", sum.PlainRefused, sum.PlainError)
	}

	// The same registry answers under /registry on the main HTTP port.
	r, err := http.Get("http://" + s.httpAddr + "/registry/schemas/ids/1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(body), "com.example.shop") || r.Header.Get("Content-Type") != "application/vnd.schemaregistry.v1+json" {
		t.Fatalf("/registry/schemas/ids/1: %d %s %q", r.StatusCode, body, r.Header.Get("Content-Type"))
	}
}
