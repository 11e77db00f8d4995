package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/heraldhq/herald/commitlog/batch"
)

// refuseBad is a Validator that refuses values containing "bad".
type refuseBad struct{ seen int }

func (v *refuseBad) ValidateRecord(topic string, rule SchemaRule, rec *batch.Record) error {
	v.seen++
	if rule.Value && bytes.Contains(rec.Value, []byte("bad")) {
		return fmt.Errorf("value: field /x: bad")
	}
	return nil
}

func encodeValues(t *testing.T, vals ...string) []byte {
	t.Helper()
	var recs []batch.Rec
	for _, v := range vals {
		recs = append(recs, batch.Rec{Timestamp: 1, Value: []byte(v)})
	}
	b, err := batch.Encode(nil, batch.BuildOptions{}, recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSchemaValidationHook: topics with herald.schema.validation hand
// every record to Config.Validator before anything is appended; a refused
// record fails the whole batch with a RecordError naming its index.
func TestSchemaValidationHook(t *testing.T) {
	ctx := context.Background()
	v := &refuseBad{}
	b := openBroker(t, t.TempDir(), func(c *Config) { c.Validator = v })
	defer b.Close()
	if err := b.CreateTopic(ctx, "x", 1, map[string]string{CfgSchemaValidation: "sometimes"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad validation value: %v", err)
	}
	if err := b.CreateTopic(ctx, "x", 1, map[string]string{CfgSchemaSubjectStrategy: "by-color"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad strategy: %v", err)
	}
	if err := b.CreateTopic(ctx, "checked", 1, map[string]string{CfgSchemaValidation: "value"}); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateTopic(ctx, "free", 1, nil); err != nil {
		t.Fatal(err)
	}
	_, err := b.Produce(ctx, "checked", 0, encodeValues(t, "ok", "bad", "ok"), AcksAll)
	var re *RecordError
	if !errors.As(err, &re) || re.Index != 1 || !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "field /x") {
		t.Fatalf("bad record: %v", err)
	}
	if hw, _ := b.HighWatermark("checked", 0); hw != 0 {
		t.Fatalf("high-water mark %d after a refused batch", hw)
	}
	if _, err := b.Produce(ctx, "checked", 0, encodeValues(t, "ok", "fine"), AcksAll); err != nil {
		t.Fatal(err)
	}
	seen := v.seen
	if _, err := b.Produce(ctx, "free", 0, encodeValues(t, "bad"), AcksAll); err != nil || v.seen != seen {
		t.Fatalf("unvalidated topic: %v, validator called %d times", err, v.seen-seen)
	}
	// Turned on later, by altering the config.
	on := "value"
	if err := b.AlterConfigs(ctx, "free", map[string]*string{CfgSchemaValidation: &on}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(ctx, "free", 0, encodeValues(t, "bad"), AcksAll); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("after enabling validation: %v", err)
	}
}

// TestSchemaValidationWithoutValidator: a topic asking for validation on
// a broker without a validator refuses every produce (fails closed).
func TestSchemaValidationWithoutValidator(t *testing.T) {
	ctx := context.Background()
	b := openBroker(t, t.TempDir())
	defer b.Close()
	if err := b.CreateTopic(ctx, "checked", 1, map[string]string{CfgSchemaValidation: "both"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Produce(ctx, "checked", 0, encodeValues(t, "ok"), AcksAll); !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "no schema registry") {
		t.Fatalf("produce without a validator: %v", err)
	}
}
