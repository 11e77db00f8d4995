package broker

import (
	"fmt"
	"sync"

	"github.com/heraldhq/herald/commitlog/batch"
)

// Schema validation on produce. A topic opts in with
// herald.schema.validation (value, key or both); the broker then hands
// every record of a produce to Config.Validator before anything is
// appended. The broker knows nothing of schemas: the validator (the
// schema registry's) decides.

// Topic configs of schema validation.
const (
	CfgSchemaValidation      = "herald.schema.validation"
	CfgSchemaSubjectStrategy = "herald.schema.subject.strategy"
)

// SchemaRule is what a topic asks of its records.
type SchemaRule struct {
	Key, Value bool
	// Strategy names the subject a record's schema must belong to: "topic"
	// (TOPIC-key / TOPIC-value), "record" (the record type's full name) or
	// "topic-record" (TOPIC-FULLNAME).
	Strategy string
}

// Validator checks records against registered schemas. It must be safe for
// concurrent use and must not block on I/O for long: it runs on the
// produce path.
type Validator interface {
	// ValidateRecord returns nil if rec satisfies rule on topic, else an
	// error naming the field (or header) at fault.
	ValidateRecord(topic string, rule SchemaRule, rec *batch.Record) error
}

// RecordError is a produce refused because of one record: Index is the
// record's position in its batch (as Kafka's ProduceResponse v8+
// record_errors report it). It wraps ErrInvalidRecord.
type RecordError struct {
	Batch, Index int
	Err          error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("%v: record %d: %v", ErrInvalidRecord, e.Index, e.Err)
}

func (e *RecordError) Unwrap() error { return ErrInvalidRecord }

func parseSchemaValidation(v string) (SchemaRule, error) {
	switch v {
	case "", "none":
		return SchemaRule{}, nil
	case "value":
		return SchemaRule{Value: true}, nil
	case "key":
		return SchemaRule{Key: true}, nil
	case "both":
		return SchemaRule{Key: true, Value: true}, nil
	}
	return SchemaRule{}, fmt.Errorf("want none, value, key or both")
}

func validStrategy(v string) error {
	switch v {
	case "topic", "record", "topic-record":
		return nil
	}
	return fmt.Errorf("want topic, record or topic-record")
}

// schemaIters are Iters kept warm (their decompression buffers reused).
var schemaIters = sync.Pool{New: func() any { return new(batch.Iter) }}

// validateSchemas decodes every record of one batch, checking it as
// batch.ValidateRecords does and running the validator over it.
func (b *Broker) validateSchemas(topic string, rule SchemaRule, bi int, raw []byte) error {
	v := b.cfg.Validator
	if v == nil {
		return fmt.Errorf("%w: topic %s requires schema validation (%s) but this server has no schema registry", ErrInvalidRecord, topic, CfgSchemaValidation)
	}
	it := schemaIters.Get().(*batch.Iter)
	defer func() {
		_ = it.Reset(nil) // drops its reference to raw's records (fails, harmlessly)
		schemaIters.Put(it)
	}()
	if err := it.Reset(raw); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	for i := 0; it.Next(); i++ {
		if err := v.ValidateRecord(topic, rule, it.Record()); err != nil {
			b.m.schemaErrors.WithLabelValues(topic).Inc()
			return &RecordError{Batch: bi, Index: i, Err: err}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	return nil
}
