package kafkalog_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/logtest"
)

// TestKfake runs the suite against franz-go's in-process fake cluster of
// three brokers, so Append and Read are routed to partition leaders that
// differ from the seed broker.
func TestKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addrs := c.ListenAddrs()
	logtest.Run(t, func(t *testing.T) eventlog.Log { return newLog(t, addrs[0]) }, logtest.Features{
		TopicConfigs: true,
		// kfake accepts any topic name and any config value.
		ValidatesTopicNames: false,
		ValidatesConfigs:    false,
		MaxMessageBytes:     true,
		GroupActiveCommits:  true,
		SessionTimeout:      time.Second,
		HeartbeatInterval:   100 * time.Millisecond,
	})
}
