package groups

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults, as Kafka's group.min.session.timeout.ms,
// group.max.session.timeout.ms and offset.metadata.max.bytes.
const (
	DefaultMinSessionTimeout = 6 * time.Second
	DefaultMaxSessionTimeout = 30 * time.Minute
	DefaultMaxMetadataBytes  = 4096
)

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MinSessionTimeout == 0 {
		c.MinSessionTimeout = DefaultMinSessionTimeout
	}
	if c.MaxSessionTimeout == 0 {
		c.MaxSessionTimeout = DefaultMaxSessionTimeout
	}
	if c.MaxMetadataBytes == 0 {
		c.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every invalid field at once. New calls it after
// applying the defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("groups: Config.Store is required (MemoryStore is the non-durable one)"))
	}
	if c.MinSessionTimeout < 0 || c.MaxSessionTimeout < c.MinSessionTimeout {
		errs = append(errs, fmt.Errorf("groups: session timeout bounds [%v, %v] are invalid", c.MinSessionTimeout, c.MaxSessionTimeout))
	}
	if c.InitialRebalanceDelay < 0 {
		errs = append(errs, fmt.Errorf("groups: initial rebalance delay %v is negative", c.InitialRebalanceDelay))
	}
	if c.MaxMetadataBytes < 0 {
		errs = append(errs, fmt.Errorf("groups: max metadata bytes %d is negative", c.MaxMetadataBytes))
	}
	return errors.Join(errs...)
}
