package broker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/commitlog"
)

// Topic config names (Kafka's, plus Herald's durability).
const (
	CfgCleanupPolicy     = "cleanup.policy"
	CfgRetentionMs       = "retention.ms"
	CfgRetentionBytes    = "retention.bytes"
	CfgMaxMessageBytes   = "max.message.bytes"
	CfgSegmentBytes      = "segment.bytes"
	CfgSegmentMs         = "segment.ms"
	CfgDeleteRetentionMs = "delete.retention.ms"
	CfgTimestampType     = "message.timestamp.type"
	CfgDurability        = "herald.durability"
	CfgMinInsyncReplicas = "min.insync.replicas"
	CfgCompressionType   = "compression.type"
	// CfgDedupWindowMs is the HTTP API's publish deduplication window
	// (httpapi); the broker only stores and validates it.
	CfgDedupWindowMs = "herald.dedup.window.ms"
)

// ConfigSource says where a config value comes from.
type ConfigSource int8

// Sources, numbered as Kafka's DescribeConfigs reports them.
const (
	SourceTopic   ConfigSource = 1 // set on the topic
	SourceBroker  ConfigSource = 4 // the broker's default (static config)
	SourceDefault ConfigSource = 5 // built in
)

// ConfigEntry is one config of a topic as DescribeConfigs shows it.
type ConfigEntry struct {
	Name      string
	Value     string
	Source    ConfigSource
	ReadOnly  bool
	Sensitive bool
}

// TopicConfig is a topic's parsed configuration.
type TopicConfig struct {
	CleanupPolicy   commitlog.Cleanup
	Retention       time.Duration // <0: forever
	RetentionBytes  int64         // <0: unlimited
	MaxMessageBytes int
	SegmentBytes    int64
	SegmentAge      time.Duration
	DeleteRetention time.Duration
	LogAppendTime   bool
	Durability      commitlog.Durability
	Schema          SchemaRule // records checked by Config.Validator
}

type configDef struct {
	def      func(b *Broker) string
	validate func(v string) error
	readOnly bool // may be set at creation only
}

func intIn(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("want an integer in [%d, %d]", lo, hi)
		}
		return nil
	}
}

func constant(v string) func(*Broker) string { return func(*Broker) string { return v } }

var configDefs = map[string]configDef{
	CfgCleanupPolicy: {def: constant("delete"), validate: func(v string) error {
		if _, err := parseCleanup(v); err != nil {
			return err
		}
		return nil
	}},
	CfgRetentionMs:       {def: constant("604800000"), validate: intIn(-1, 1<<62)},
	CfgRetentionBytes:    {def: constant("-1"), validate: intIn(-1, 1<<62)},
	CfgMaxMessageBytes:   {def: constant("1048588"), validate: intIn(64, commitlog.MaxBatchBytesLimit)},
	CfgSegmentBytes:      {def: constant("1073741824"), validate: intIn(14, 1<<32-1)},
	CfgSegmentMs:         {def: constant("604800000"), validate: intIn(1, 1<<62)},
	CfgDeleteRetentionMs: {def: constant("86400000"), validate: intIn(0, 1<<62)},
	CfgTimestampType: {def: constant("CreateTime"), validate: func(v string) error {
		if v != "CreateTime" && v != "LogAppendTime" {
			return fmt.Errorf("want CreateTime or LogAppendTime")
		}
		return nil
	}},
	CfgDurability: {def: func(b *Broker) string { return b.cfg.Durability.String() }, readOnly: true, validate: func(v string) error {
		_, err := commitlog.ParseDurability(v)
		return err
	}},
	CfgMinInsyncReplicas: {def: constant("1"), validate: intIn(1, 1)},
	CfgDedupWindowMs:     {def: constant("120000"), validate: intIn(0, 7*24*3600*1000)},
	CfgSchemaValidation: {def: constant("none"), validate: func(v string) error {
		_, err := parseSchemaValidation(v)
		return err
	}},
	CfgSchemaSubjectStrategy: {def: constant("topic"), validate: validStrategy},
	CfgCompressionType: {def: constant("producer"), validate: func(v string) error {
		if v != "producer" {
			return fmt.Errorf("only \"producer\" is supported: batches are stored as the producer compressed them")
		}
		return nil
	}},
}

func parseCleanup(v string) (commitlog.Cleanup, error) {
	var c commitlog.Cleanup
	for _, p := range strings.Split(v, ",") {
		switch strings.TrimSpace(p) {
		case "delete":
			c |= commitlog.CleanupDelete
		case "compact":
			c |= commitlog.CleanupCompact
		default:
			return 0, fmt.Errorf("want delete, compact or compact,delete")
		}
	}
	return c, nil
}

// validateConfigs checks names and values; creating says whether read-only
// configs may be set.
func validateConfigs(set map[string]string, creating bool) error {
	for k, v := range set {
		d, ok := configDefs[k]
		if !ok {
			return fmt.Errorf("%w: unknown config %q", ErrInvalidConfig, k)
		}
		if d.readOnly && !creating {
			return fmt.Errorf("%w: %s can only be set when the topic is created", ErrInvalidConfig, k)
		}
		if err := d.validate(v); err != nil {
			return fmt.Errorf("%w: %s=%q: %v", ErrInvalidConfig, k, v, err)
		}
	}
	return nil
}

// value returns a config's effective value.
func (b *Broker) configValue(set map[string]string, name string) (string, ConfigSource) {
	if v, ok := set[name]; ok {
		return v, SourceTopic
	}
	if name == CfgDurability {
		return configDefs[name].def(b), SourceBroker
	}
	return configDefs[name].def(b), SourceDefault
}

// describeConfigs lists every config with its effective value, sorted.
func (b *Broker) describeConfigs(set map[string]string) []ConfigEntry {
	names := make([]string, 0, len(configDefs))
	for n := range configDefs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]ConfigEntry, 0, len(names))
	for _, n := range names {
		v, src := b.configValue(set, n)
		out = append(out, ConfigEntry{Name: n, Value: v, Source: src, ReadOnly: configDefs[n].readOnly})
	}
	return out
}

func (b *Broker) parseTopicConfig(set map[string]string) TopicConfig {
	get := func(n string) string { v, _ := b.configValue(set, n); return v }
	num := func(n string) int64 { v, _ := strconv.ParseInt(get(n), 10, 64); return v }
	var tc TopicConfig
	tc.CleanupPolicy, _ = parseCleanup(get(CfgCleanupPolicy))
	tc.Retention = time.Duration(num(CfgRetentionMs)) * time.Millisecond
	tc.RetentionBytes = num(CfgRetentionBytes)
	tc.MaxMessageBytes = int(num(CfgMaxMessageBytes))
	tc.SegmentBytes = num(CfgSegmentBytes)
	tc.SegmentAge = time.Duration(num(CfgSegmentMs)) * time.Millisecond
	tc.DeleteRetention = time.Duration(num(CfgDeleteRetentionMs)) * time.Millisecond
	tc.LogAppendTime = get(CfgTimestampType) == "LogAppendTime"
	tc.Durability, _ = commitlog.ParseDurability(get(CfgDurability))
	tc.Schema, _ = parseSchemaValidation(get(CfgSchemaValidation))
	tc.Schema.Strategy = get(CfgSchemaSubjectStrategy)
	return tc
}

// logOptions maps a topic config onto the commit log's options.
func (tc TopicConfig) logOptions() commitlog.Options {
	o := commitlog.Options{
		Durability:      tc.Durability,
		SegmentBytes:    max(tc.SegmentBytes, 4<<10),
		SegmentAge:      tc.SegmentAge,
		MaxBatchBytes:   tc.MaxMessageBytes,
		Cleanup:         tc.CleanupPolicy,
		DeleteRetention: tc.DeleteRetention,
	}
	if o.DeleteRetention == 0 {
		o.DeleteRetention = time.Millisecond // zero means "default" to the log
	}
	if tc.Retention > 0 {
		o.RetentionAge = tc.Retention
	}
	if tc.RetentionBytes > 0 {
		o.RetentionBytes = tc.RetentionBytes
	}
	if int64(o.MaxBatchBytes) > o.SegmentBytes-64 {
		o.MaxBatchBytes = int(o.SegmentBytes - 64)
	}
	return o
}
