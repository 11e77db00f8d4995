package kafka

// TestGroup* run consumer groups through kgo against the coordinator in
// broker/groups. They fail until the coordinator is built.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestGroupConsumeAndCommit(t *testing.T) {
	env := newEnv(t, testOpts{groups: true})
	env.createTopic(t, "gt", 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prod := env.client(t, kgo.DefaultProduceTopic("gt"))
	const n = 30
	for i := range n {
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cons := env.client(t, kgo.ConsumerGroup("g1"), kgo.ConsumeTopics("gt"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d: %v", len(seen), n, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	adm := env.admin(t)
	offs, err := adm.FetchOffsets(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != n {
		t.Fatalf("committed offsets add up to %d, want %d", total, n)
	}
	groupsList, err := adm.ListGroups(ctx)
	if err != nil || len(groupsList) != 1 {
		t.Fatalf("list groups: %v %v", groupsList, err)
	}
	described, err := adm.DescribeGroups(ctx, "g1")
	if err != nil || described["g1"].State != "Stable" || len(described["g1"].Members) != 1 {
		t.Fatalf("describe: %+v %v", described["g1"], err)
	}

	// A second consumer in the group resumes from the commits: nothing left.
	cons.Close()
	prod.ProduceSync(ctx, &kgo.Record{Value: []byte("after")})
	cons2 := env.client(t, kgo.ConsumerGroup("g1"), kgo.ConsumeTopics("gt"))
	for {
		fs := cons2.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("the record produced after the commit was not consumed")
		}
		var done bool
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != "after" {
				t.Fatalf("consumed %q again after its commit", r.Value)
			}
			done = true
		})
		if done {
			break
		}
	}
}

func TestGroupRebalanceTwoMembers(t *testing.T) {
	env := newEnv(t, testOpts{groups: true})
	env.createTopic(t, "gr", 4, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := []kgo.Opt{kgo.ConsumerGroup("g2"), kgo.ConsumeTopics("gr"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	c1 := env.client(t, opts...)
	c2 := env.client(t, opts...)
	prod := env.client(t, kgo.DefaultProduceTopic("gr"))
	const n = 40
	for i := range n {
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(chan string, 2*n)
	for _, c := range []*kgo.Client{c1, c2} {
		go func() {
			for ctx.Err() == nil {
				c.PollFetches(ctx).EachRecord(func(r *kgo.Record) { seen <- string(r.Value) })
			}
		}()
	}
	got := map[string]bool{}
	for len(got) < n {
		select {
		case v := <-seen:
			got[v] = true
		case <-ctx.Done():
			t.Fatalf("consumed %d of %d", len(got), n)
		}
	}
	adm := env.admin(t)
	d, err := adm.DescribeGroups(ctx, "g2")
	if err != nil {
		t.Fatal(err)
	}
	if m := len(d["g2"].Members); m != 2 {
		t.Fatalf("group has %d members, want 2", m)
	}
	cancel()
}
