package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func newGroupCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := parentCommand(&cobra.Command{
		Use:   "group",
		Short: "List, describe, delete and reset consumer groups",
		Long: `Inspect and manage consumer groups over the Kafka protocol: members,
committed offsets and lag, and replay (group reset).

With -o json every subcommand prints one JSON document; see each
subcommand's help for its shape. Exit codes: herald help exit-codes.`,
	})
	addClientFlags(cmd, cf)
	cmd.AddCommand(newGroupListCmd(cf), newGroupDescribeCmd(cf), newGroupDeleteCmd(cf), newGroupResetCmd(cf))
	return cmd
}

// groupRef names a group in messages.
func groupRef(name string) string { return fmt.Sprintf("group %q", name) }

// groupActive reports whether a group's state means it has members.
func groupActive(state string) bool { return state != "Empty" && state != "Dead" && state != "" }

func errGroupActive(g kadm.DescribedGroup, what string) error {
	return cliError(exitConflict, "%s has %d live member(s) (state %s); %s only while it is empty: stop its consumers first",
		groupRef(g.Group), len(g.Members), g.State, what)
}

func newGroupListCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List consumer groups",
		Long: `List the groups, sorted by name, with their state, protocol type and
number of members.

-o json prints [{"group": G, "state": S, "protocol_type": T, "members": N}, ...].`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return commandError(cmd, runGroupList(cmd.Context(), cf, cmd.OutOrStdout()))
		},
	}
}

type groupListEntry struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Members      int    `json:"members"`
}

func runGroupList(ctx context.Context, cf *clientFlags, out io.Writer) error {
	if err := cf.check(); err != nil {
		return err
	}
	adm, ctx, done, err := cf.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	lgs, err := adm.ListGroups(ctx)
	if err != nil {
		return cf.requestError(err)
	}
	list := []groupListEntry{}
	var described kadm.DescribedGroups
	if names := lgs.Groups(); len(names) > 0 {
		if described, err = adm.DescribeGroups(ctx, names...); err != nil {
			return cf.requestError(err)
		}
	}
	for _, g := range lgs.Sorted() {
		e := groupListEntry{Group: g.Group, State: g.State, ProtocolType: g.ProtocolType}
		if d, ok := described[g.Group]; ok && d.Err == nil {
			e.State, e.Members = d.State, len(d.Members)
		}
		list = append(list, e)
	}
	if cf.json() {
		return printJSON(out, list)
	}
	rows := make([][]string, 0, len(list))
	for _, g := range list {
		rows = append(rows, []string{g.Group, g.State, cmp.Or(g.ProtocolType, "-"), strconv.Itoa(g.Members)})
	}
	return printTable(out, []string{"GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"}, rows)
}

func newGroupDescribeCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe GROUP",
		Short: "Show a group's members, committed offsets and lag",
		Long: `Show a group's state and members (client id, host, assigned partitions),
and for every partition the group has a committed offset for or a member is
assigned: the committed offset, the end offset and the lag (end minus
committed; "-" without a commit). A group that neither exists nor has
committed offsets is not found (exit 3).

-o json prints
  {"group": G, "state": S, "protocol_type": T, "protocol": P,
   "members": [{"member_id": M, "instance_id": I|null, "client_id": C,
                "host": H, "assignment": [{"topic": T, "partitions": [N, ...]}]}],
   "offsets": [{"topic": T, "partition": N, "committed": N|null,
                "end_offset": N, "lag": N|null, "member_id": M}],
   "total_lag": N}`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runGroupDescribe(cmd.Context(), cf, cmd.OutOrStdout(), args[0]))
		},
	}
}

type groupDescription struct {
	Group        string            `json:"group"`
	State        string            `json:"state"`
	ProtocolType string            `json:"protocol_type"`
	Protocol     string            `json:"protocol"`
	Members      []groupMember     `json:"members"`
	Offsets      []groupPartition  `json:"offsets"`
	TotalLag     int64             `json:"total_lag"`
	owners       map[topicPart]int // index in Members
}

type groupMember struct {
	MemberID   string           `json:"member_id"`
	InstanceID *string          `json:"instance_id"`
	ClientID   string           `json:"client_id"`
	Host       string           `json:"host"`
	Assignment []topicPartsJSON `json:"assignment"`
}

type topicPartsJSON struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

type groupPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed *int64 `json:"committed"`
	EndOffset int64  `json:"end_offset"`
	Lag       *int64 `json:"lag"`
	MemberID  string `json:"member_id"`
}

type topicPart struct {
	topic string
	part  int32
}

func compareTopicPart(a, b topicPart) int {
	return cmp.Or(strings.Compare(a.topic, b.topic), cmp.Compare(a.part, b.part))
}

func runGroupDescribe(ctx context.Context, cf *clientFlags, out io.Writer, group string) error {
	if err := cf.check(); err != nil {
		return err
	}
	adm, ctx, done, err := cf.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	dgs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return kafkaError(groupRef(group), cf.requestError(err), "")
	}
	dg, err := dgs.On(group, nil)
	if err == nil {
		err = dg.Err
	}
	if err != nil {
		return kafkaError(groupRef(group), err, dg.ErrMessage)
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return kafkaError(groupRef(group), cf.requestError(err), "")
	}
	if dg.State == "Dead" && len(offs) == 0 {
		return cliError(exitNotFound, "%s not found", groupRef(group))
	}

	d := groupDescription{Group: group, State: dg.State, ProtocolType: dg.ProtocolType, Protocol: dg.Protocol,
		Members: []groupMember{}, Offsets: []groupPartition{}, owners: map[topicPart]int{}}
	parts := map[topicPart]bool{}
	for i, m := range dg.Members {
		gm := groupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, Host: m.ClientHost, Assignment: []topicPartsJSON{}}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				ps := slices.Sorted(slices.Values(t.Partitions))
				gm.Assignment = append(gm.Assignment, topicPartsJSON{Topic: t.Topic, Partitions: ps})
				for _, p := range ps {
					tp := topicPart{t.Topic, p}
					parts[tp], d.owners[tp] = true, i
				}
			}
			slices.SortFunc(gm.Assignment, func(a, b topicPartsJSON) int { return strings.Compare(a.Topic, b.Topic) })
		}
		d.Members = append(d.Members, gm)
	}
	committed := map[topicPart]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			tp := topicPart{o.Topic, o.Partition}
			parts[tp], committed[tp] = true, o.At
		}
	})
	var topics []string
	for tp := range parts {
		if !slices.Contains(topics, tp.topic) {
			topics = append(topics, tp.topic)
		}
	}
	var ends kadm.ListedOffsets
	if len(topics) > 0 {
		if ends, err = adm.ListEndOffsets(ctx, topics...); err != nil {
			return cf.requestError(err)
		}
	}
	sorted := slices.SortedFunc(maps.Keys(parts), compareTopicPart)
	for _, tp := range sorted {
		gp := groupPartition{Topic: tp.topic, Partition: tp.part, EndOffset: -1}
		if e, ok := ends.Lookup(tp.topic, tp.part); ok && e.Err == nil {
			gp.EndOffset = e.Offset
		}
		if c, ok := committed[tp]; ok {
			gp.Committed = &c
			if gp.EndOffset >= 0 {
				lag := max(gp.EndOffset-c, 0)
				gp.Lag = &lag
				d.TotalLag += lag
			}
		}
		if i, ok := d.owners[tp]; ok {
			gp.MemberID = d.Members[i].MemberID
		}
		d.Offsets = append(d.Offsets, gp)
	}
	if cf.json() {
		return printJSON(out, d)
	}
	protocol := cmp.Or(d.ProtocolType, "-")
	if d.Protocol != "" {
		protocol += " (" + d.Protocol + ")"
	}
	fmt.Fprintf(out, "Group:     %s\nState:     %s\nProtocol:  %s\nMembers:   %d\nTotal lag: %d\n",
		d.Group, d.State, protocol, len(d.Members), d.TotalLag)
	if len(d.Members) > 0 {
		fmt.Fprintln(out)
		rows := [][]string{}
		for _, m := range d.Members {
			var as []string
			for _, a := range m.Assignment {
				ps := make([]string, len(a.Partitions))
				for i, p := range a.Partitions {
					ps[i] = strconv.Itoa(int(p))
				}
				as = append(as, a.Topic+":"+strings.Join(ps, ","))
			}
			rows = append(rows, []string{m.MemberID, m.ClientID, m.Host, cmp.Or(strings.Join(as, " "), "-")})
		}
		if err := printTable(out, []string{"MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNED"}, rows); err != nil {
			return err
		}
	}
	if len(d.Offsets) > 0 {
		fmt.Fprintln(out)
		rows := [][]string{}
		for _, p := range d.Offsets {
			cur, lag := "-", "-"
			if p.Committed != nil {
				cur = strconv.FormatInt(*p.Committed, 10)
			}
			if p.Lag != nil {
				lag = strconv.FormatInt(*p.Lag, 10)
			}
			rows = append(rows, []string{p.Topic, strconv.Itoa(int(p.Partition)), cur, offsetText(p.EndOffset), lag, cmp.Or(p.MemberID, "-")})
		}
		return printTable(out, []string{"TOPIC", "PARTITION", "CURRENT-OFFSET", "END-OFFSET", "LAG", "MEMBER-ID"}, rows)
	}
	return nil
}

func newGroupDeleteCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete GROUP...",
		Short: "Delete consumer groups and their committed offsets",
		Long: `Delete groups and their committed offsets. A group with live members is
refused (exit 4). Every named group is tried; the exit code is that of the
first failure.

-o json prints [{"group": G, "deleted": true}, ...] for the groups deleted.`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runGroupDelete(cmd, cf, args))
		},
	}
}

func runGroupDelete(cmd *cobra.Command, cf *clientFlags, groups []string) error {
	if err := cf.check(); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	adm, ctx, done, err := cf.admin(cmd.Context())
	if err != nil {
		return err
	}
	defer done()
	rs, err := adm.DeleteGroups(ctx, groups...)
	if err != nil {
		return cf.requestError(err)
	}
	type result struct {
		Group   string `json:"group"`
		Deleted bool   `json:"deleted"`
	}
	results := []result{}
	var errs []error
	for _, g := range groups {
		r, ok := rs[g]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: the server did not answer for it", groupRef(g)))
		case r.Err == nil:
			results = append(results, result{g, true})
			if !cf.json() {
				fmt.Fprintf(out, "deleted group %s\n", g)
			}
		case errors.Is(r.Err, kerr.NonEmptyGroup):
			errs = append(errs, cliError(exitConflict, "%s has live members; it can be deleted only while it is empty: stop its consumers first", groupRef(g)))
		default:
			errs = append(errs, kafkaError(groupRef(g), r.Err, r.ErrMessage))
		}
	}
	if cf.json() {
		if err := printJSON(out, results); err != nil {
			return err
		}
	}
	return someFailed(cmd, errs, len(groups), "groups")
}

type resetOptions struct {
	topics     []string
	allTopics  bool
	toEarliest bool
	toLatest   bool
	toOffset   int64
	toDatetime string
	shiftBy    int64
	execute    bool
}

func newGroupResetCmd(cf *clientFlags) *cobra.Command {
	var o resetOptions
	cmd := &cobra.Command{
		Use:   "reset GROUP (--topic TOPIC[:P,P...]... | --all-topics) (--to-earliest | --to-latest | --to-offset N | --to-datetime TIME | --shift-by N) [--execute]",
		Short: "Move a group's committed offsets, to replay or skip records",
		Long: `Move the committed offsets of GROUP in the named partitions (every
partition of each --topic, or only those listed after a colon; or, with
--all-topics, every partition the group has an offset for) to:

  --to-earliest        the oldest record still stored
  --to-latest          the end: skip everything stored so far
  --to-offset N        offset N (clamped to the partition's start and end)
  --to-datetime TIME   the first record at or after an RFC3339 time, by
                       the server's time index (the end if there is none)
  --shift-by N         N records forward (or back, if negative) from the
                       committed offset, clamped to the start and end

Without --execute this is a dry run: it prints the plan (TOPIC PARTITION
CURRENT-OFFSET NEW-OFFSET LAG-AFTER) and changes nothing. With --execute
the new offsets are committed, and the group's consumers start there the
next time they join.

Offsets can only be reset while the group has no live members: a group
that has some is refused with exit code 4 (herald help exit-codes), also
when members join between the check and the commit.

-o json prints {"group": G, "executed": BOOL, "partitions": [{"topic": T,
"partition": N, "current": N|null, "new": N, "lag_after": N}, ...]}.`,
		Example: `  herald group reset billing --topic orders --to-datetime 2026-01-02T00:00:00Z
  herald group reset billing --topic orders:0,1 --shift-by -100 --execute
  herald group reset billing --all-topics --to-latest --execute`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runGroupReset(cmd, cf, &o, args[0]))
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.topics, "topic", "t", nil, "reset `TOPIC` or TOPIC:P,P... (repeatable)")
	f.BoolVar(&o.allTopics, "all-topics", false, "reset every partition the group has a committed offset for")
	f.BoolVar(&o.toEarliest, "to-earliest", false, "move to the oldest stored record")
	f.BoolVar(&o.toLatest, "to-latest", false, "move to the end")
	f.Int64Var(&o.toOffset, "to-offset", 0, "move to offset `N`")
	f.StringVar(&o.toDatetime, "to-datetime", "", "move to the first record at or after `TIME` (RFC3339)")
	f.Int64Var(&o.shiftBy, "shift-by", 0, "move `N` records forward, or back if negative")
	f.BoolVar(&o.execute, "execute", false, "commit the new offsets (default: a dry run)")
	return cmd
}

// resetCommitError explains a partition's error in the commit of a reset.
func resetCommitError(group string, r kadm.OffsetResponse) error {
	switch {
	case r.Err == nil:
		return nil
	// NB: the coordinator takes a commit without a member only while the
	// group is empty; a member that joined since the state check makes it
	// answer UNKNOWN_MEMBER_ID (or a rebalance error) for every partition.
	case errors.Is(r.Err, kerr.UnknownMemberID), errors.Is(r.Err, kerr.RebalanceInProgress),
		errors.Is(r.Err, kerr.IllegalGeneration):
		return cliError(exitConflict, "%s has live members now; offsets can be reset only while it is empty: stop its consumers first", groupRef(group))
	}
	return kafkaError(fmt.Sprintf("partition %s/%d", r.Topic, r.Partition), r.Err, "")
}

type resetRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Current   *int64 `json:"current"`
	New       int64  `json:"new"`
	LagAfter  int64  `json:"lag_after"`
}

// parseResetTopics parses --topic values into partitions per topic; nil
// partitions means every partition.
func parseResetTopics(vals []string) (map[string][]int32, error) {
	out := map[string][]int32{}
	for _, v := range vals {
		name, list, hasList := strings.Cut(v, ":")
		if name == "" || hasList && list == "" {
			return nil, usageErrorf("--topic %q: want TOPIC or TOPIC:P,P...", v)
		}
		if _, dup := out[name]; dup {
			return nil, usageErrorf("--topic %q: topic %s is named twice", v, name)
		}
		out[name] = nil
		if !hasList {
			continue
		}
		for _, s := range strings.Split(list, ",") {
			p, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
			if err != nil || p < 0 {
				return nil, usageErrorf("--topic %q: %q is not a partition number", v, s)
			}
			if !slices.Contains(out[name], int32(p)) {
				out[name] = append(out[name], int32(p))
			}
		}
	}
	return out, nil
}

func runGroupReset(cmd *cobra.Command, cf *clientFlags, o *resetOptions, group string) error {
	if err := cf.check(); err != nil {
		return err
	}
	fl := cmd.Flags()
	var modes []string
	for _, m := range []string{"to-earliest", "to-latest", "to-offset", "to-datetime", "shift-by"} {
		if fl.Changed(m) {
			modes = append(modes, "--"+m)
		}
	}
	switch {
	case len(modes) == 0:
		return usageErrorf("say where to: give one of --to-earliest, --to-latest, --to-offset, --to-datetime or --shift-by")
	case len(modes) > 1:
		return usageErrorf("%s: give only one of --to-earliest, --to-latest, --to-offset, --to-datetime or --shift-by", strings.Join(modes, " and "))
	}
	mode := modes[0]
	if (len(o.topics) > 0) == o.allTopics {
		return usageErrorf("give --topic (one or more) or --all-topics")
	}
	if mode == "--to-offset" && o.toOffset < 0 {
		return usageErrorf("--to-offset %d: want an offset (0 or more)", o.toOffset)
	}
	var at time.Time
	if mode == "--to-datetime" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, o.toDatetime); err != nil {
			return usageErrorf("--to-datetime %q: want an RFC3339 time such as 2026-01-02T15:04:05Z", o.toDatetime)
		}
	}
	want, err := parseResetTopics(o.topics)
	if err != nil {
		return err
	}

	adm, ctx, done, err := cf.admin(cmd.Context())
	if err != nil {
		return err
	}
	defer done()

	dgs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return kafkaError(groupRef(group), cf.requestError(err), "")
	}
	dg, err := dgs.On(group, nil)
	if err == nil {
		err = dg.Err
	}
	if err != nil {
		return kafkaError(groupRef(group), err, dg.ErrMessage)
	}
	if groupActive(dg.State) {
		return errGroupActive(dg, "offsets can be reset")
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return kafkaError(groupRef(group), cf.requestError(err), "")
	}
	current := map[topicPart]int64{}
	offs.Each(func(r kadm.OffsetResponse) {
		if r.Err == nil && r.At >= 0 {
			current[topicPart{r.Topic, r.Partition}] = r.At
		}
	})

	// The partitions to reset.
	var parts []topicPart
	if o.allTopics {
		if len(current) == 0 {
			return cliError(exitNotFound, "%s has no committed offsets (name the topics with --topic)", groupRef(group))
		}
		for tp := range current {
			parts = append(parts, tp)
		}
	} else {
		names := slices.Sorted(maps.Keys(want))
		tds, err := adm.ListTopicsWithInternal(ctx, names...)
		if err != nil {
			return cf.requestError(err)
		}
		for _, t := range names {
			td := tds[t]
			if td.Err != nil {
				return kafkaError(topicRef(t), td.Err, "")
			}
			n := int32(len(td.Partitions))
			ps := want[t]
			if ps == nil {
				ps = td.Partitions.Numbers()
			}
			for _, p := range ps {
				if p >= n {
					return usageErrorf("--topic %s: partition %d: topic %s has %d partitions (0 to %d)", t, p, t, n, n-1)
				}
				parts = append(parts, topicPart{t, p})
			}
		}
	}
	slices.SortFunc(parts, compareTopicPart)
	var topics []string
	for _, tp := range parts {
		if !slices.Contains(topics, tp.topic) {
			topics = append(topics, tp.topic)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return cf.requestError(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return cf.requestError(err)
	}
	var byTime kadm.ListedOffsets
	if mode == "--to-datetime" {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topics...); err != nil {
			return cf.requestError(err)
		}
	}

	rows := []resetRow{}
	commit := kadm.Offsets{}
	for _, tp := range parts {
		where := fmt.Sprintf("partition %s/%d", tp.topic, tp.part)
		s, _ := starts.Lookup(tp.topic, tp.part)
		e, _ := ends.Lookup(tp.topic, tp.part)
		for _, err := range []error{s.Err, e.Err} {
			if err != nil {
				return kafkaError(where, err, "")
			}
		}
		row := resetRow{Topic: tp.topic, Partition: tp.part}
		cur, hasCur := current[tp]
		if hasCur {
			row.Current = &cur
		}
		switch mode {
		case "--to-earliest":
			row.New = s.Offset
		case "--to-latest":
			row.New = e.Offset
		case "--to-offset":
			row.New = o.toOffset
		case "--to-datetime":
			t, _ := byTime.Lookup(tp.topic, tp.part)
			if t.Err != nil {
				return kafkaError(where, t.Err, "")
			}
			row.New = t.Offset
			if row.New < 0 {
				row.New = e.Offset
			}
		case "--shift-by":
			if !hasCur {
				return usageErrorf("--shift-by: %s has no committed offset in %s/%d to shift from; use --to-earliest, --to-latest, --to-offset or --to-datetime",
					groupRef(group), tp.topic, tp.part)
			}
			row.New = cur + o.shiftBy
		}
		row.New = min(max(row.New, s.Offset), e.Offset)
		row.LagAfter = e.Offset - row.New
		rows = append(rows, row)
		commit.Add(kadm.Offset{Topic: tp.topic, Partition: tp.part, At: row.New, LeaderEpoch: -1})
	}

	if o.execute {
		rs, err := adm.CommitOffsets(ctx, group, commit)
		if err != nil {
			return cf.requestError(err)
		}
		var first error
		rs.Each(func(r kadm.OffsetResponse) {
			if first == nil {
				first = resetCommitError(group, r)
			}
		})
		if first != nil {
			return first
		}
	}

	out := cmd.OutOrStdout()
	if cf.json() {
		if err := printJSON(out, map[string]any{"group": group, "executed": o.execute, "partitions": rows}); err != nil {
			return err
		}
	} else {
		trows := make([][]string, 0, len(rows))
		for _, r := range rows {
			cur := "-"
			if r.Current != nil {
				cur = strconv.FormatInt(*r.Current, 10)
			}
			trows = append(trows, []string{r.Topic, strconv.Itoa(int(r.Partition)), cur,
				strconv.FormatInt(r.New, 10), strconv.FormatInt(r.LagAfter, 10)})
		}
		if err := printTable(out, []string{"TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "LAG-AFTER"}, trows); err != nil {
			return err
		}
	}
	if o.execute {
		if !cf.json() {
			fmt.Fprintf(out, "\nreset the offsets of group %s in %d partition(s)\n", group, len(rows))
		}
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "\ndry run: nothing changed; add --execute to commit these offsets\n")
	return nil
}
