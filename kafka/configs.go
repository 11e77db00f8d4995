package kafka

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/broker"
)

// configTypes are the types DescribeConfigs v3+ reports; the rest are
// strings.
var configTypes = map[string]kmsg.ConfigType{
	broker.CfgCleanupPolicy:     kmsg.ConfigTypeList,
	broker.CfgRetentionMs:       kmsg.ConfigTypeLong,
	broker.CfgRetentionBytes:    kmsg.ConfigTypeLong,
	broker.CfgMaxMessageBytes:   kmsg.ConfigTypeInt,
	broker.CfgSegmentBytes:      kmsg.ConfigTypeInt,
	broker.CfgSegmentMs:         kmsg.ConfigTypeLong,
	broker.CfgDeleteRetentionMs: kmsg.ConfigTypeLong,
	broker.CfgMinInsyncReplicas: kmsg.ConfigTypeInt,
}

func configType(name string) kmsg.ConfigType {
	if t, ok := configTypes[name]; ok {
		return t
	}
	return kmsg.ConfigTypeString
}

// brokerConfigs are the static entries of the broker resource.
func (s *Server) brokerConfigs() []broker.ConfigEntry {
	return []broker.ConfigEntry{
		{Name: "auto.create.topics.enable", Value: strconv.FormatBool(s.b.AutoCreate()), Source: broker.SourceBroker, ReadOnly: true},
		{Name: "broker.id", Value: strconv.Itoa(int(s.cfg.NodeID)), Source: broker.SourceBroker, ReadOnly: true},
		{Name: "default.replication.factor", Value: "1", Source: broker.SourceDefault, ReadOnly: true},
		{Name: "message.max.bytes", Value: "1048588", Source: broker.SourceDefault, ReadOnly: true},
		{Name: "min.insync.replicas", Value: "1", Source: broker.SourceDefault, ReadOnly: true},
		{Name: "num.partitions", Value: strconv.Itoa(s.b.DefaultPartitions()), Source: broker.SourceBroker, ReadOnly: true},
		{Name: "offsets.topic.replication.factor", Value: "1", Source: broker.SourceDefault, ReadOnly: true},
	}
}
