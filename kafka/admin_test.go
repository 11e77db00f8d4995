package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestAdminTopics(t *testing.T) {
	env := newEnv(t, testOpts{})
	adm := env.admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	res, err := adm.CreateTopics(ctx, 3, 1, map[string]*string{"retention.ms": kadm.StringPtr("60000")}, "t1")
	if err != nil || res["t1"].Err != nil {
		t.Fatalf("create: %v %v", err, res["t1"].Err)
	}
	if res["t1"].ID == (kadm.TopicID{}) {
		t.Errorf("create returned no topic id")
	}
	if res, _ := adm.CreateTopics(ctx, -1, -1, nil, "t2"); res["t2"].Err != nil {
		t.Fatalf("create with defaults: %v", res["t2"].Err)
	}
	if res, _ := adm.CreateTopics(ctx, 1, 3, nil, "t3"); !errors.Is(res["t3"].Err, kerr.InvalidReplicationFactor) {
		t.Fatalf("replication factor 3: %v", res["t3"].Err)
	}
	if res, _ := adm.CreateTopics(ctx, 1, 1, nil, "t1"); !errors.Is(res["t1"].Err, kerr.TopicAlreadyExists) {
		t.Fatalf("create twice: %v", res["t1"].Err)
	}
	if res, _ := adm.CreateTopics(ctx, 1, 1, nil, "bad/name"); !errors.Is(res["bad/name"].Err, kerr.InvalidTopicException) {
		t.Fatalf("bad name: %v", res["bad/name"].Err)
	}
	if res, _ := adm.ValidateCreateTopics(ctx, 2, 1, nil, "t4"); res["t4"].Err != nil {
		t.Fatalf("validate only: %v", res["t4"].Err)
	}
	if _, err := env.b.Topic("t4"); err == nil {
		t.Fatalf("validate-only created the topic")
	}

	td, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !td.Has("t1") || !td.Has("t2") || td.Has("t4") || len(td["t1"].Partitions) != 3 || len(td["t2"].Partitions) != 1 {
		t.Fatalf("listed %v", td.Names())
	}
	for _, p := range td["t1"].Partitions {
		if p.Leader != 0 || len(p.Replicas) != 1 || len(p.ISR) != 1 || p.Err != nil {
			t.Fatalf("partition %+v", p)
		}
	}

	if _, err := adm.CreatePartitions(ctx, 2, "t1"); err != nil {
		t.Fatal(err)
	}
	if info, _ := env.b.Topic("t1"); info.Partitions != 5 {
		t.Fatalf("t1 has %d partitions after adding 2", info.Partitions)
	}
	if r, err := adm.UpdatePartitions(ctx, 2, "t1"); err != nil || !errors.Is(r["t1"].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrink: %v %v", err, r["t1"].Err)
	}

	rcs, err := adm.DescribeTopicConfigs(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("t1", nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe: %v %v", err, rc.Err)
	}
	got := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		got[c.Key] = c
	}
	if c := got["retention.ms"]; c.MaybeValue() != "60000" || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Fatalf("retention.ms %q source %v", c.MaybeValue(), c.Source)
	}
	if c := got["cleanup.policy"]; c.MaybeValue() != "delete" || c.Source != kmsg.ConfigSourceDefaultConfig {
		t.Fatalf("cleanup.policy %q source %v", c.MaybeValue(), c.Source)
	}

	alt, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "max.message.bytes", Value: kadm.StringPtr("2048")},
		{Op: kadm.DeleteConfig, Name: "retention.ms"},
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")},
	}, "t1")
	if err != nil || alt[0].Err != nil {
		t.Fatalf("alter: %v %v", err, alt)
	}
	info, _ := env.b.Topic("t1")
	if info.Configs["max.message.bytes"] != "2048" || info.Configs["retention.ms"] != "" || info.Configs["cleanup.policy"] != "delete,compact" {
		t.Fatalf("configs after alter: %v", info.Configs)
	}
	alt, _ = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "no.such.config", Value: kadm.StringPtr("1")}}, "t1")
	if !errors.Is(alt[0].Err, kerr.InvalidConfig) {
		t.Fatalf("unknown config: %v", alt[0].Err)
	}
	alt, _ = adm.ValidateAlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1")}}, "t1")
	if alt[0].Err != nil || env.mustTopic(t, "t1").Configs["retention.ms"] != "" {
		t.Fatalf("validate-only alter: %v", alt[0].Err)
	}

	bcs, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bcs) != 1 || len(bcs[0].Configs) == 0 {
		t.Fatalf("broker configs %+v", bcs)
	}

	del, err := adm.DeleteTopics(ctx, "t1", "nope")
	if err != nil {
		t.Fatal(err)
	}
	if del["t1"].Err != nil || !errors.Is(del["nope"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete: t1 %v, nope %v", del["t1"].Err, del["nope"].Err)
	}
	if _, err := env.b.Topic("t1"); err == nil {
		t.Fatalf("t1 still exists")
	}

	cluster, err := adm.BrokerMetadata(ctx)
	if err != nil || cluster.Cluster != "herald" || len(cluster.Brokers) != 1 || cluster.Controller != 0 {
		t.Fatalf("cluster %+v %v", cluster, err)
	}
}

func (e *testEnv) mustTopic(t testing.TB, name string) (info struct{ Configs map[string]string }) {
	t.Helper()
	ti, err := e.b.Topic(name)
	if err != nil {
		t.Fatal(err)
	}
	info.Configs = ti.Configs
	return info
}

func TestMetadataAutoCreate(t *testing.T) {
	for _, auto := range []bool{false, true} {
		env := newEnv(t, testOpts{autoCreate: auto})
		rc := dialRaw(t, env.addr)
		ask := func(version int16, topic string, allow bool) kmsg.MetadataResponseTopic {
			req := kmsg.NewPtrMetadataRequest()
			req.Version, req.AllowAutoTopicCreation = version, allow
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = &topic
			req.Topics = append(req.Topics, rt)
			resp := rc.do(req).(*kmsg.MetadataResponse)
			if len(resp.Brokers) != 1 || resp.ClusterID == nil || *resp.ClusterID != "herald" {
				t.Fatalf("brokers %+v cluster %v", resp.Brokers, resp.ClusterID)
			}
			return resp.Topics[0]
		}
		if tp := ask(12, "no-create", false); tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Errorf("auto=%v allow=false: code %d", auto, tp.ErrorCode)
		}
		tp := ask(12, "created", true)
		if auto && (tp.ErrorCode != 0 || len(tp.Partitions) != 1 || tp.TopicID == [16]byte{}) {
			t.Errorf("auto=true: code %d partitions %d", tp.ErrorCode, len(tp.Partitions))
		}
		if !auto && tp.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Errorf("auto=false: code %d", tp.ErrorCode)
		}
		if tp := ask(3, "old-version", false); auto != (tp.ErrorCode == 0) {
			t.Errorf("auto=%v v3 (always allows): code %d", auto, tp.ErrorCode)
		}
		if tp := ask(12, "bad name", true); tp.ErrorCode != kerr.InvalidTopicException.Code {
			t.Errorf("bad name: code %d", tp.ErrorCode)
		}
	}
}

func TestApiVersions(t *testing.T) {
	env := newEnv(t, testOpts{})
	rc := dialRaw(t, env.addr)
	resp := rc.do(&kmsg.ApiVersionsRequest{Version: 3, ClientSoftwareName: "t", ClientSoftwareVersion: "1"}).(*kmsg.ApiVersionsResponse)
	// All but SaslHandshake and SaslAuthenticate: this listener has no
	// SASL (TestSASLRaw checks them on one that has).
	if resp.ErrorCode != 0 || len(resp.ApiKeys) != len(apis)-2 {
		t.Fatalf("code %d, %d keys, want %d", resp.ErrorCode, len(resp.ApiKeys), len(apis)-2)
	}
	for _, k := range resp.ApiKeys {
		if a := apis[k.ApiKey]; a.min != k.MinVersion || a.max != k.MaxVersion {
			t.Errorf("key %d: %d-%d", k.ApiKey, k.MinVersion, k.MaxVersion)
		}
		if max := kmsg.RequestForKey(k.ApiKey).MaxVersion(); k.MaxVersion > max {
			t.Errorf("key %d advertises v%d; kmsg knows up to v%d", k.ApiKey, k.MaxVersion, max)
		}
	}

	// A version from the future: UNSUPPORTED_VERSION and the range, in v0.
	body := []byte{0, 18, 0, 99, 0, 0, 0, 42, 0xff, 0xff, 0, 0xde, 0xad}
	rc.writeFrame(body)
	b, err := rc.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	if b[3] != 42 {
		t.Fatalf("correlation id % x", b[:4])
	}
	v0 := kmsg.NewPtrApiVersionsResponse()
	v0.Version = 0
	if err := v0.ReadFrom(b[4:]); err != nil {
		t.Fatal(err)
	}
	if v0.ErrorCode != kerr.UnsupportedVersion.Code || len(v0.ApiKeys) != len(apis)-2 {
		t.Fatalf("code %d, %d keys", v0.ErrorCode, len(v0.ApiKeys))
	}
}

func TestUnknownKeyAndUnsupportedVersion(t *testing.T) {
	env := newEnv(t, testOpts{})
	rc := dialRaw(t, env.addr)
	rc.writeFrame([]byte{0x27, 0x0f, 0, 0, 0, 0, 0, 7, 0xff, 0xff}) // key 9999
	b, err := rc.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 6 || b[3] != 7 || int16(b[4])<<8|int16(b[5]) != kerr.UnsupportedVersion.Code {
		t.Fatalf("unknown key answered % x", b)
	}
	// A known key at a version kmsg has but we do not advertise.
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 13
	if resp := rc.do(req).(*kmsg.MetadataResponse); resp.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("metadata v13: code %d", resp.ErrorCode)
	}
	// The connection still serves.
	req.Version = 12
	if resp := rc.do(req).(*kmsg.MetadataResponse); resp.ErrorCode != 0 || len(resp.Brokers) != 1 {
		t.Fatalf("metadata v12: code %d", resp.ErrorCode)
	}
}

func TestMalformedFramesCloseOnlyThatConnection(t *testing.T) {
	env := newEnv(t, testOpts{})
	good := dialRaw(t, env.addr)
	frames := map[string][]byte{
		"negative size": {0xff, 0xff, 0xff, 0xfe},
		"huge size":     {0x7f, 0xff, 0xff, 0xff},
		"short header":  {0, 0, 0, 3, 0, 3, 0},
		// Metadata v1 claiming a billion topics.
		"garbage body":  {0, 0, 0, 16, 0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x3b, 0x9a, 0xca, 0x00, 0xde, 0xad},
		"bad client id": {0, 0, 0, 12, 0, 3, 0, 1, 0, 0, 0, 1, 0x7f, 0xff, 1, 2},
	}
	for name, frame := range frames {
		t.Run(name, func(t *testing.T) {
			rc := dialRaw(t, env.addr)
			if _, err := rc.nc.Write(frame); err != nil {
				t.Fatal(err)
			}
			rc.expectClosed()
			req := kmsg.NewPtrMetadataRequest()
			req.Version = 9
			if resp := good.do(req).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
				t.Fatalf("other connection: %+v", resp)
			}
		})
	}
}
