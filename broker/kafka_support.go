package broker

// Small calls the Kafka adapter needs beyond the broker's core API.

// Offsets returns a partition's log start offset and high-water mark
// without reading the log. It never auto-creates the topic.
func (b *Broker) Offsets(topic string, part int32) (start, hwm int64, err error) {
	p, err := b.partition(topic, part, false)
	if err != nil {
		return -1, -1, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.log.StartOffset(), p.log.HighWatermark(), nil
}

// DefaultPartitions is the partition count of auto-created topics and of
// topics created without a count.
func (b *Broker) DefaultPartitions() int { return b.cfg.DefaultPartitions }

// ValidateTopicConfigs checks configs as CreateTopic would, without
// creating anything (for validate-only requests).
func ValidateTopicConfigs(configs map[string]string) error {
	return validateConfigs(configs, true)
}

// DefaultConfigs lists every topic config with its default value, as
// DescribeConfigs shows a topic that sets none.
func (b *Broker) DefaultConfigs() []ConfigEntry { return b.describeConfigs(nil) }
