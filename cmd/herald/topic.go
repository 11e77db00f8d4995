package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newTopicCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := parentCommand(&cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe, alter and delete topics",
		Long: `Manage topics over the Kafka protocol.

Topic configs are Kafka's: retention.ms, retention.bytes, cleanup.policy,
max.message.bytes, segment.bytes, segment.ms, delete.retention.ms,
message.timestamp.type, min.insync.replicas and compression.type, plus
herald.durability (always, interval=DURATION, unsafe-none or memory), which
can only be set when the topic is created.

With -o json every subcommand prints one JSON document; see each
subcommand's help for its shape. Exit codes: herald help exit-codes.`,
	})
	addClientFlags(cmd, cf)
	cmd.AddCommand(newTopicCreateCmd(cf), newTopicListCmd(cf), newTopicDescribeCmd(cf),
		newTopicAlterCmd(cf), newTopicDeleteCmd(cf))
	return cmd
}

// topicRef names a topic in messages.
func topicRef(name string) string { return fmt.Sprintf("topic %q", name) }

func newTopicCreateCmd(cf *clientFlags) *cobra.Command {
	var (
		partitions  int
		configs     []string
		ifNotExists bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Long: `Create a topic with --partitions partitions (default: the server's
--default-partitions) and the given configs.

-o json prints {"topic": NAME, "partitions": N, "created": true|false};
created is false when --if-not-exists found the topic already there.`,
		Example: `  herald topic create orders --partitions 6 --config retention.ms=604800000
  herald topic create audit --config herald.durability=interval=100ms --if-not-exists`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runTopicCreate(cmd.Context(), cf, cmd.OutOrStdout(), args[0], partitions, configs, ifNotExists))
		},
	}
	f := cmd.Flags()
	f.IntVarP(&partitions, "partitions", "p", -1, "number of partitions (default: the server's default)")
	f.StringArrayVarP(&configs, "config", "c", nil, "topic config `KEY=VALUE` (repeatable)")
	f.BoolVar(&ifNotExists, "if-not-exists", false, "succeed if the topic already exists")
	return cmd
}

func runTopicCreate(ctx context.Context, cf *clientFlags, out io.Writer, name string, partitions int, configs []string, ifNotExists bool) error {
	if err := cf.check(); err != nil {
		return err
	}
	if partitions == 0 || partitions < -1 {
		return usageErrorf("--partitions %d: want at least 1", partitions)
	}
	kv, err := parseKVs("config", configs)
	if err != nil {
		return err
	}
	cfg := make(map[string]*string, len(kv))
	for k, v := range kv {
		cfg[k] = kadm.StringPtr(v)
	}
	adm, ctx, done, err := cf.admin(ctx)
	if err != nil {
		return err
	}
	defer done()

	resp, err := adm.CreateTopic(ctx, int32(partitions), -1, cfg, name)
	if err != nil && resp.Err == nil {
		return cf.requestError(err)
	}
	created := true
	switch {
	case resp.Err == nil:
	case errors.Is(resp.Err, kerr.TopicAlreadyExists) && ifNotExists:
		created = false
		tds, err := adm.ListTopics(ctx, name)
		if err != nil {
			return cf.requestError(err)
		}
		resp.NumPartitions = int32(len(tds[name].Partitions))
	default:
		return kafkaError(topicRef(name), resp.Err, resp.ErrMessage)
	}
	if cf.json() {
		return printJSON(out, map[string]any{"topic": name, "partitions": resp.NumPartitions, "created": created})
	}
	if !created {
		_, err = fmt.Fprintf(out, "topic %s already exists (%d partitions)\n", name, resp.NumPartitions)
		return err
	}
	_, err = fmt.Fprintf(out, "created topic %s (%d partitions)\n", name, resp.NumPartitions)
	return err
}

func newTopicListCmd(cf *clientFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Long: `List topics, sorted by name. Internal topics are shown with --all: those the
broker flags (__consumer_offsets, __transaction_state) and every topic whose
name starts with "__", where Herald's services keep their state
(__herald_subscriptions, __herald_rules, __herald_processed, ...).

-o json prints [{"name": NAME, "partitions": N, "internal": BOOL}, ...].`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return commandError(cmd, runTopicList(cmd.Context(), cf, cmd.OutOrStdout(), all))
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "include internal topics")
	return cmd
}

type topicListEntry struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Internal   bool   `json:"internal"`
}

func runTopicList(ctx context.Context, cf *clientFlags, out io.Writer, all bool) error {
	if err := cf.check(); err != nil {
		return err
	}
	adm, ctx, done, err := cf.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	tds, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return cf.requestError(err)
	}
	list := []topicListEntry{}
	for _, td := range tds.Sorted() {
		internal := isInternalTopic(td.Topic, td.IsInternal)
		if internal && !all {
			continue
		}
		list = append(list, topicListEntry{Name: td.Topic, Partitions: len(td.Partitions), Internal: internal})
	}
	if cf.json() {
		return printJSON(out, list)
	}
	header := []string{"NAME", "PARTITIONS"}
	if all {
		header = append(header, "INTERNAL")
	}
	rows := make([][]string, 0, len(list))
	for _, t := range list {
		r := []string{t.Name, strconv.Itoa(t.Partitions)}
		if all {
			r = append(r, strconv.FormatBool(t.Internal))
		}
		rows = append(rows, r)
	}
	return printTable(out, header, rows)
}

func newTopicDescribeCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a topic's partitions, offsets and configs",
		Long: `Show a topic's partitions with their start offset (the oldest offset
still stored) and end offset (the high-water mark: the offset the next
record gets), and every config with its value and source (topic: set on
the topic; default: the server's default).

-o json prints
  {"name": NAME, "id": TOPIC_ID, "internal": BOOL,
   "partitions": [{"partition": N, "start_offset": N, "end_offset": N}, ...],
   "configs": [{"name": KEY, "value": VALUE, "source": SOURCE}, ...]}`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runTopicDescribe(cmd.Context(), cf, cmd.OutOrStdout(), args[0]))
		},
	}
}

type topicDescription struct {
	Name       string             `json:"name"`
	ID         string             `json:"id"`
	Internal   bool               `json:"internal"`
	Partitions []partitionOffsets `json:"partitions"`
	Configs    []topicConfig      `json:"configs"`
}

type partitionOffsets struct {
	Partition   int32 `json:"partition"`
	StartOffset int64 `json:"start_offset"`
	EndOffset   int64 `json:"end_offset"`
}

type topicConfig struct {
	Name   string  `json:"name"`
	Value  *string `json:"value"`
	Source string  `json:"source"`
}

// configSource names where a config's value comes from.
func configSource(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicTopicConfig:
		return "topic"
	case kmsg.ConfigSourceDefaultConfig:
		return "default"
	case kmsg.ConfigSourceStaticBrokerConfig, kmsg.ConfigSourceDynamicBrokerConfig, kmsg.ConfigSourceDynamicDefaultBrokerConfig:
		return "broker"
	}
	return strings.ToLower(s.String())
}

func runTopicDescribe(ctx context.Context, cf *clientFlags, out io.Writer, name string) error {
	if err := cf.check(); err != nil {
		return err
	}
	adm, ctx, done, err := cf.admin(ctx)
	if err != nil {
		return err
	}
	defer done()

	tds, err := adm.ListTopicsWithInternal(ctx, name)
	if err != nil {
		return cf.requestError(err)
	}
	td := tds[name]
	if td.Err != nil {
		return kafkaError(topicRef(name), td.Err, "")
	}
	starts, err := adm.ListStartOffsets(ctx, name)
	if err != nil {
		return cf.requestError(err)
	}
	ends, err := adm.ListEndOffsets(ctx, name)
	if err != nil {
		return cf.requestError(err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return cf.requestError(err)
	}
	rc, err := rcs.On(name, nil)
	if err != nil {
		return kafkaError(topicRef(name), err, "")
	}
	if rc.Err != nil {
		return kafkaError(topicRef(name), rc.Err, rc.ErrMessage)
	}

	d := topicDescription{Name: name, ID: base64.RawURLEncoding.EncodeToString(td.ID[:]), Internal: td.IsInternal, Partitions: []partitionOffsets{}, Configs: []topicConfig{}}
	for _, p := range td.Partitions.Numbers() {
		s, _ := starts.Lookup(name, p)
		e, _ := ends.Lookup(name, p)
		if s.Err != nil {
			return kafkaError(fmt.Sprintf("partition %s/%d", name, p), s.Err, "")
		}
		if e.Err != nil {
			return kafkaError(fmt.Sprintf("partition %s/%d", name, p), e.Err, "")
		}
		d.Partitions = append(d.Partitions, partitionOffsets{Partition: p, StartOffset: s.Offset, EndOffset: e.Offset})
	}
	for _, c := range rc.Configs {
		d.Configs = append(d.Configs, topicConfig{Name: c.Key, Value: c.Value, Source: configSource(c.Source)})
	}
	slices.SortFunc(d.Configs, func(a, b topicConfig) int { return strings.Compare(a.Name, b.Name) })
	if cf.json() {
		return printJSON(out, d)
	}
	fmt.Fprintf(out, "Topic:       %s\nID:          %s\nPartitions:  %d\n", d.Name, d.ID, len(d.Partitions))
	if d.Internal {
		fmt.Fprintln(out, "Internal:    true")
	}
	fmt.Fprintln(out)
	rows := make([][]string, 0, len(d.Partitions))
	for _, p := range d.Partitions {
		rows = append(rows, []string{strconv.Itoa(int(p.Partition)), offsetText(p.StartOffset), offsetText(p.EndOffset)})
	}
	if err := printTable(out, []string{"PARTITION", "START-OFFSET", "END-OFFSET"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(out)
	rows = rows[:0]
	for _, c := range d.Configs {
		v := "(sensitive)"
		if c.Value != nil {
			v = *c.Value
		}
		rows = append(rows, []string{c.Name, v, c.Source})
	}
	return printTable(out, []string{"CONFIG", "VALUE", "SOURCE"}, rows)
}

func newTopicAlterCmd(cf *clientFlags) *cobra.Command {
	var (
		set, del   []string
		partitions int
	)
	cmd := &cobra.Command{
		Use:   "alter NAME",
		Short: "Change a topic's configs or add partitions",
		Long: `Change a topic: --set a config, --delete one (back to its default), or
grow it to --partitions partitions (partitions can be added, never removed;
keys then map to other partitions).

Everything is validated by the server before anything changes, so a bad
value leaves the topic as it was.

-o json prints {"topic": NAME, "set": {KEY: VALUE, ...}, "deleted": [KEY, ...],
"partitions": N} (partitions only when --partitions is given).`,
		Example: `  herald topic alter orders --set retention.ms=86400000 --delete segment.ms
  herald topic alter orders --partitions 12`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runTopicAlter(cmd.Context(), cf, cmd.OutOrStdout(), args[0], set, del, partitions))
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&set, "set", nil, "set config `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&del, "delete", nil, "reset config `KEY` to its default (repeatable)")
	f.IntVarP(&partitions, "partitions", "p", 0, "grow the topic to `N` partitions")
	return cmd
}

func runTopicAlter(ctx context.Context, cf *clientFlags, out io.Writer, name string, set, del []string, partitions int) error {
	if err := cf.check(); err != nil {
		return err
	}
	if len(set) == 0 && len(del) == 0 && partitions == 0 {
		return usageErrorf("nothing to change: give --set, --delete or --partitions")
	}
	if partitions < 0 {
		return usageErrorf("--partitions %d: want at least 1", partitions)
	}
	kv, err := parseKVs("set", set)
	if err != nil {
		return err
	}
	var alters []kadm.AlterConfig
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(kv[k])})
	}
	deleted := []string{}
	for _, k := range del {
		if _, ok := kv[k]; ok {
			return usageErrorf("--delete %s: %s is also given to --set", k, k)
		}
		if k == "" || strings.Contains(k, "=") {
			return usageErrorf("--delete %q: want a config name", k)
		}
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
		deleted = append(deleted, k)
	}
	adm, ctx, done, err := cf.admin(ctx)
	if err != nil {
		return err
	}
	defer done()

	alterConfigs := func(validate bool) error {
		if len(alters) == 0 {
			return nil
		}
		call := adm.AlterTopicConfigs
		if validate {
			call = adm.ValidateAlterTopicConfigs
		}
		rs, err := call(ctx, alters, name)
		if err != nil {
			return cf.requestError(err)
		}
		r, err := rs.On(name, nil)
		if err != nil {
			return kafkaError(topicRef(name), err, "")
		}
		return kafkaError(topicRef(name), r.Err, r.ErrMessage)
	}
	growPartitions := func(validate bool) error {
		if partitions == 0 {
			return nil
		}
		call := adm.UpdatePartitions
		if validate {
			call = adm.ValidateUpdatePartitions
		}
		rs, err := call(ctx, partitions, name)
		if err != nil {
			return cf.requestError(err)
		}
		r, ok := rs[name]
		if !ok {
			return fmt.Errorf("%s: the server did not answer for it", topicRef(name))
		}
		return kafkaError(topicRef(name), r.Err, r.ErrMessage)
	}
	// NB: two requests cannot change a topic atomically; validating both
	// first means a bad value changes nothing.
	if len(alters) > 0 && partitions > 0 {
		if err := alterConfigs(true); err != nil {
			return err
		}
		if err := growPartitions(true); err != nil {
			return err
		}
	}
	if err := alterConfigs(false); err != nil {
		return err
	}
	if err := growPartitions(false); err != nil {
		return err
	}

	if cf.json() {
		res := map[string]any{"topic": name, "set": kv, "deleted": deleted}
		if partitions > 0 {
			res["partitions"] = partitions
		}
		return printJSON(out, res)
	}
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		fmt.Fprintf(out, "topic %s: set %s=%s\n", name, k, kv[k])
	}
	for _, k := range deleted {
		fmt.Fprintf(out, "topic %s: %s back to its default\n", name, k)
	}
	if partitions > 0 {
		fmt.Fprintf(out, "topic %s: now %d partitions\n", name, partitions)
	}
	return nil
}

func newTopicDeleteCmd(cf *clientFlags) *cobra.Command {
	var ifExists bool
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete topics and all their records",
		Long: `Delete topics and all their records. Every named topic is tried; the
exit code is that of the first failure (3 for an unknown topic, unless
--if-exists).

-o json prints [{"topic": NAME, "deleted": BOOL}, ...]; deleted is false
for a topic --if-exists skipped.`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runTopicDelete(cmd, cf, args, ifExists))
		},
	}
	cmd.Flags().BoolVar(&ifExists, "if-exists", false, "succeed for topics that do not exist")
	return cmd
}

func runTopicDelete(cmd *cobra.Command, cf *clientFlags, names []string, ifExists bool) error {
	if err := cf.check(); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	adm, ctx, done, err := cf.admin(cmd.Context())
	if err != nil {
		return err
	}
	defer done()
	rs, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return cf.requestError(err)
	}
	type result struct {
		Topic   string `json:"topic"`
		Deleted bool   `json:"deleted"`
	}
	results := []result{}
	var errs []error
	for _, n := range names {
		r, ok := rs[n]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: the server did not answer for it", topicRef(n)))
		case r.Err == nil:
			results = append(results, result{n, true})
			if !cf.json() {
				fmt.Fprintf(out, "deleted topic %s\n", n)
			}
		case errors.Is(r.Err, kerr.UnknownTopicOrPartition) && ifExists:
			results = append(results, result{n, false})
			if !cf.json() {
				fmt.Fprintf(out, "topic %s does not exist\n", n)
			}
		default:
			errs = append(errs, kafkaError(topicRef(n), r.Err, r.ErrMessage))
		}
	}
	if cf.json() {
		if err := printJSON(out, results); err != nil {
			return err
		}
	}
	return someFailed(cmd, errs, len(names), "topics")
}

// someFailed is the error of a command that acts on several objects: the
// one failure, or a count after printing each failure on stderr; its exit
// code is the first failure's.
func someFailed(cmd *cobra.Command, errs []error, total int, what string) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	for _, err := range errs {
		fmt.Fprintln(cmd.ErrOrStderr(), cmd.Root().Name()+":", commandError(cmd, err))
	}
	return cliError(exitCode(errs[0]), "%d of %d %s failed", len(errs), total, what)
}

// isInternalTopic reports whether a topic is internal: flagged so by the
// broker, or named with the "__" prefix that Kafka reserves for internal
// topics and Herald's services use for their state.
func isInternalTopic(name string, flagged bool) bool {
	return flagged || strings.HasPrefix(name, "__")
}
