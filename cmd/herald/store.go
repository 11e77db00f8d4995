package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/httpapi"
	"github.com/heraldhq/herald/eventstore/httpstore"
)

// newStoreCmd is "herald store": the event store through the server's HTTP
// API (--http).
func newStoreCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Append to and read event streams in the event store",
		Long: `Append to and read the event store's streams through the server's HTTP API
(--http, default http://127.0.0.1:8080).

Exit codes: 0 ok, 1 failure, 2 usage or invalid input, 3 stream not found,
4 conflict (a wrong expected version, with both versions in the message, or a
hard-deleted stream).`,
	}
	addClientFlags(cmd, &f)
	cmd.AddCommand(newStoreAppendCmd(&f), newStoreReadCmd(&f), newStoreSubscribeCmd(&f),
		newStoreStreamsCmd(&f), newStoreDeleteCmd(&f), newStoreInfoCmd(&f), newStoreScavengeCmd(&f))
	return cmd
}

// storeClient checks the flags and returns a client and a context bounded
// by --timeout (none for long-running commands).
func storeClient(cmd *cobra.Command, f *clientFlags, bounded bool) (*httpstore.Client, context.Context, context.CancelFunc, error) {
	if f.output != "table" && f.output != "json" {
		return nil, nil, nil, usageErrorf("-o %q: want table or json", f.output)
	}
	if f.timeout <= 0 {
		return nil, nil, nil, usageErrorf("--timeout %s: want a positive duration", f.timeout)
	}
	if err := heraldAPI(nil, f.httpURL, f.timeout).check(); err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := cmd.Context(), context.CancelFunc(func() {})
	if bounded {
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
	}
	hc, err := f.security().httpClient(f.httpURL)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return httpstore.New(f.httpURL, hc), ctx, cancel, nil
}

// storeError gives an event store error its exit code.
func storeError(err error) error {
	var (
		we *eventstore.WrongExpectedVersionError
		ie *eventstore.InvalidError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &we):
		return cliError(exitConflict, "%s: expected version %v, actual version %d", we.Stream, we.Expected, we.Actual)
	case errors.Is(err, eventstore.ErrStreamDeleted):
		return cliError(exitConflict, "%v", err)
	case errors.Is(err, eventstore.ErrStreamNotFound):
		return cliError(exitNotFound, "%v", err)
	case errors.As(err, &ie):
		return cliError(exitUsage, "%v", err)
	}
	return err
}

func newStoreAppendCmd(f *clientFlags) *cobra.Command {
	var typ, expected, id, metadata string
	cmd := &cobra.Command{
		Use:   "append STREAM --type TYPE",
		Short: "Append one event, its data read as JSON from standard input",
		Long: `Append one event to STREAM. Its data is the JSON value on standard input;
--expected-version is any, no-stream, exists or a version number. Prints the
stream's new version (with -o json, the version and the $all position).

  echo '{"email":"ann@example.com"}' | herald store append user-42 --type UserRegistered --expected-version no-stream`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runStoreAppend(cmd, f, args[0], typ, expected, id, metadata))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&typ, "type", "t", "", "event `TYPE` (required)")
	fl.StringVarP(&expected, "expected-version", "e", "any", "any, no-stream, exists or a `VERSION`")
	fl.StringVar(&id, "id", "", "event `ID` for idempotent retries (default: a new UUID)")
	fl.StringVar(&metadata, "metadata", "", "event metadata as a `JSON` value")
	return cmd
}

func runStoreAppend(cmd *cobra.Command, f *clientFlags, stream, typ, expected, id, metadata string) error {
	if typ == "" {
		return usageErrorf("--type is required")
	}
	exp, err := eventstore.ParseExpectedVersion(expected)
	if err != nil {
		return usageErrorf("--expected-version %q: want any, no-stream, exists or a version number", expected)
	}
	if metadata != "" && !json.Valid([]byte(metadata)) {
		return usageErrorf("--metadata: not a JSON value")
	}
	data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), eventstore.DefaultMaxEventBytes+1))
	if err != nil {
		return err
	}
	data = []byte(strings.TrimSpace(string(data)))
	switch {
	case len(data) > eventstore.DefaultMaxEventBytes:
		return usageErrorf("standard input: the event data is over the limit of %d bytes", eventstore.DefaultMaxEventBytes)
	case len(data) == 0:
		data = []byte("null")
	case !json.Valid(data):
		return usageErrorf("standard input: the event data is not a JSON value")
	}
	if id == "" {
		id = eventstore.NewID()
	}
	cl, ctx, cancel, err := storeClient(cmd, f, true)
	if err != nil {
		return err
	}
	defer cancel()
	ev := eventstore.EventData{ID: id, Type: typ, Data: data}
	if metadata != "" {
		ev.Metadata = []byte(metadata)
	}
	res, err := cl.Append(ctx, stream, exp, ev)
	if err != nil {
		return storeError(err)
	}
	if f.json() {
		return printJSON(cmd.OutOrStdout(), res)
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), res.Version)
	return err
}

func newStoreReadCmd(f *clientFlags) *cobra.Command {
	var (
		backwards    bool
		from         string
		max          int
		untilVersion int64
		untilTime    string
	)
	cmd := &cobra.Command{
		Use:   "read STREAM",
		Short: "Read a stream's events",
		Long: `Read STREAM forwards from --from (default the start), or backwards from
--from (default the end) with --backwards; at most --max events.

Time travel: --until-version N or --until-time T (RFC 3339) read the stream
as it was then, from its start.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runStoreRead(cmd, f, args[0], backwards, from, max, untilVersion, untilTime))
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&backwards, "backwards", "b", false, "read from the end towards the start")
	fl.StringVar(&from, "from", "", "first `VERSION` to read (default: start, or end with --backwards)")
	fl.IntVarP(&max, "max", "n", 100, "at most `N` events (1 to 10000)")
	fl.Int64Var(&untilVersion, "until-version", -1, "read the stream as it was at `VERSION`")
	fl.StringVar(&untilTime, "until-time", "", "read the stream as it was at `TIME` (RFC 3339)")
	return cmd
}

func runStoreRead(cmd *cobra.Command, f *clientFlags, stream string, backwards bool, fromS string, max int, untilVersion int64, untilTime string) error {
	if max < 1 || max > 10000 {
		return usageErrorf("--max %d: want 1 to 10000", max)
	}
	travel := cmd.Flags().Changed("until-version") || untilTime != ""
	if travel && (backwards || fromS != "") {
		return usageErrorf("--until-version and --until-time read from the start: drop --backwards and --from")
	}
	if cmd.Flags().Changed("until-version") && untilVersion < 0 {
		return usageErrorf("--until-version %d: want a version >= 0", untilVersion)
	}
	var until time.Time
	if untilTime != "" {
		var err error
		if until, err = time.Parse(time.RFC3339Nano, untilTime); err != nil {
			return usageErrorf("--until-time %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", untilTime)
		}
	}
	from := int64(0)
	if backwards {
		from = eventstore.End
	}
	if fromS != "" {
		v, err := strconv.ParseInt(fromS, 10, 64)
		if err != nil || v < 0 {
			return usageErrorf("--from %q: want a version >= 0", fromS)
		}
		from = v
	}
	cl, ctx, cancel, err := storeClient(cmd, f, true)
	if err != nil {
		return err
	}
	defer cancel()
	var evs []eventstore.RecordedEvent
	if travel {
		evs, err = cl.ReadStreamAsOf(ctx, stream, untilVersion, until, max)
	} else {
		evs, err = cl.ReadStream(ctx, stream, eventstore.ReadStreamOptions{From: from, Backwards: backwards, Max: max})
	}
	if err != nil {
		return storeError(err)
	}
	return printEvents(cmd.OutOrStdout(), f, evs)
}

func printEvents(w io.Writer, f *clientFlags, evs []eventstore.RecordedEvent) error {
	if f.json() {
		out := make([]httpapi.Event, len(evs))
		for i, e := range evs {
			out[i] = httpapi.FromRecorded(e)
		}
		return printJSON(w, out)
	}
	rows := make([][]string, len(evs))
	for i, e := range evs {
		rows[i] = []string{strconv.FormatInt(e.Version, 10), strconv.FormatInt(e.Position, 10), e.Type,
			e.Time.UTC().Format(time.RFC3339Nano), dataText(e.Data)}
	}
	return printTable(w, []string{"VERSION", "POSITION", "TYPE", "TIME", "DATA"}, rows)
}

// dataText shows event data on one line: JSON compacted, other bytes
// quoted, long values cut.
func dataText(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if !json.Valid(b) {
		s = strconv.Quote(string(b))
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func newStoreSubscribeCmd(f *clientFlags) *cobra.Command {
	var (
		from                  int64
		category, typePrefix  string
		typeRegex, streamPref string
		excludeSystem         bool
	)
	cmd := &cobra.Command{
		Use:   "subscribe [STREAM]",
		Short: "Print events of a stream or of $all as they are appended",
		Long: `Print the events of STREAM (or of $all without one) from --from (a version,
or a position in $all), first the history and then new events as they are
appended, one JSON object per line, until interrupted. Filters apply to $all.`,
		Args: argsUsage(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			stream := ""
			if len(args) == 1 {
				stream = args[0]
			}
			filter := eventstore.Filter{StreamPrefix: streamPref, TypePrefix: typePrefix, TypeRegex: typeRegex}
			if category != "" {
				if streamPref != "" {
					return commandError(cmd, usageErrorf("--category and --stream-prefix exclude each other"))
				}
				filter = eventstore.Category(category)
				filter.TypePrefix, filter.TypeRegex = typePrefix, typeRegex
			}
			filter.ExcludeSystem = excludeSystem
			if stream != "" && (filter.StreamPrefix != "" || filter.TypePrefix != "" || filter.TypeRegex != "" || excludeSystem) {
				return commandError(cmd, usageErrorf("filters apply to $all: drop STREAM or the filter flags"))
			}
			return commandError(cmd, runStoreSubscribe(cmd, f, stream, from, filter))
		},
	}
	fl := cmd.Flags()
	fl.Int64Var(&from, "from", 0, "first `VERSION` (stream) or `POSITION` ($all)")
	fl.StringVar(&category, "category", "", "only streams of `CATEGORY` (names CATEGORY-...)")
	fl.StringVar(&streamPref, "stream-prefix", "", "only streams whose name starts with `PREFIX`")
	fl.StringVar(&typePrefix, "type-prefix", "", "only event types starting with `PREFIX`")
	fl.StringVar(&typeRegex, "type-regex", "", "only event types matching `REGEX` (RE2)")
	fl.BoolVar(&excludeSystem, "exclude-system", false, "leave out the store's own records (persistent groups' checkpoints, parked events, definitions, lease)")
	return cmd
}

func runStoreSubscribe(cmd *cobra.Command, f *clientFlags, stream string, from int64, filter eventstore.Filter) error {
	if from < 0 {
		return usageErrorf("--from %d: want >= 0", from)
	}
	cl, ctx, cancel, err := storeClient(cmd, f, false)
	if err != nil {
		return err
	}
	defer cancel()
	sub, err := eventstore.Subscribe(cl, eventstore.SubscribeOptions{Stream: stream, From: from, Filter: filter})
	if err != nil {
		return storeError(err)
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil // interrupted: a normal end
			}
			return storeError(err)
		}
		if err := enc.Encode(httpapi.FromRecorded(ev)); err != nil {
			return err
		}
	}
}

func newStoreStreamsCmd(f *clientFlags) *cobra.Command {
	var after string
	var max int
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List streams (not deleted), by name",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if max < 1 || max > 10000 {
				return commandError(cmd, usageErrorf("--max %d: want 1 to 10000", max))
			}
			cl, ctx, cancel, err := storeClient(cmd, f, true)
			if err != nil {
				return commandError(cmd, err)
			}
			defer cancel()
			names, err := cl.Streams(ctx, after, max)
			if err != nil {
				return commandError(cmd, storeError(err))
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), names)
			}
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&after, "after", "", "list names after `NAME` (paging)")
	cmd.Flags().IntVarP(&max, "max", "n", 1000, "at most `N` names")
	return cmd
}

func newStoreDeleteCmd(f *clientFlags) *cobra.Command {
	var hard bool
	var expected string
	cmd := &cobra.Command{
		Use:   "delete STREAM",
		Short: "Delete a stream: soft (it may be written again) or --hard (forever)",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			exp, err := eventstore.ParseExpectedVersion(expected)
			if err != nil {
				return commandError(cmd, usageErrorf("--expected-version %q: want any, no-stream, exists or a version number", expected))
			}
			cl, ctx, cancel, err := storeClient(cmd, f, true)
			if err != nil {
				return commandError(cmd, err)
			}
			defer cancel()
			if err := cl.Delete(ctx, args[0], exp, hard); err != nil {
				return commandError(cmd, storeError(err))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&hard, "hard", false, "tombstone the stream: it can never be written or read again")
	cmd.Flags().StringVarP(&expected, "expected-version", "e", "any", "any, exists or a `VERSION`")
	return cmd
}

func newStoreInfoCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "info STREAM",
		Short: "Show a stream's version, delete state and metadata",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ctx, cancel, err := storeClient(cmd, f, true)
			if err != nil {
				return commandError(cmd, err)
			}
			defer cancel()
			info, err := cl.StreamInfo(ctx, args[0])
			if err != nil {
				return commandError(cmd, storeError(err))
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), info)
			}
			state := "live"
			switch {
			case info.Tombstoned:
				state = "hard-deleted"
			case info.Deleted:
				state = "deleted"
			case info.Version < 0:
				state = "empty"
			}
			return printTable(cmd.OutOrStdout(), []string{"STREAM", "VERSION", "STATE", "MAX-COUNT", "MAX-AGE", "TRUNCATE-BEFORE"},
				[][]string{{info.Stream, offsetText(info.Version), state, strconv.FormatInt(info.Metadata.MaxCount, 10),
					info.Metadata.MaxAge.String(), strconv.FormatInt(max(info.TruncateBefore, info.Metadata.TruncateBefore), 10)}})
		},
	}
}

func newStoreScavengeCmd(f *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "scavenge",
		Short: "Reclaim the space of deleted, truncated and expired events",
		Long: `Ask the server to reclaim the space of events no read can return any more:
those of hard-deleted streams, below a soft delete or truncate-before, beyond
max count or older than max age. Reads and appends go on meanwhile. It can
take a while on a large store: --timeout bounds the wait (default 10s; the
scavenge itself goes on if the wait ends).`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := storeClient(cmd, f, true)
			if err != nil {
				return commandError(cmd, err)
			}
			defer cancel()
			rep, err := cl.Scavenge(ctx)
			if err != nil {
				return commandError(cmd, storeError(err))
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			reclaimed := "unknown"
			if rep.ReclaimedBytes >= 0 {
				reclaimed = humanBytes(rep.ReclaimedBytes)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "scavenged %d events, reclaimed %s in %v\n", rep.Events, reclaimed, rep.Duration.Round(time.Millisecond))
			return err
		},
	}
}
