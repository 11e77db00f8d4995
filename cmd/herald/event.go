package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/httpjson"
)

// The event commands use the HTTP API (--http): CloudEvents validated,
// deduplicated and read back as CloudEvents by the server, which the Kafka
// protocol has no equivalent for.

func newEventCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := parentCommand(&cobra.Command{
		Use:   "event",
		Short: "Publish and read CloudEvents over the HTTP API",
		Long: `Publish CloudEvents to a topic and read them back, over the server's HTTP
API (--http, env HERALD_HTTP): the server validates each event per
CloudEvents 1.0, gives an event without an id a UUIDv7, acknowledges a
repeat of an event (same source and id) within the topic's deduplication
window with the original's position instead of storing it again, and reads
records produced in either CloudEvents Kafka binding mode as CloudEvents.

Exit codes: herald help exit-codes.`,
	})
	addClientFlags(cmd, cf)
	cmd.AddCommand(newEventPublishCmd(cf), newEventReadCmd(cf))
	return cmd
}

// eventAPIError is an error answer of the HTTP API, with its status.
type eventAPIError struct {
	status int
	api    *httpjson.Error
}

func (e *eventAPIError) Error() string { return e.api.Error() }

// eventCall sends one request to the HTTP API and decodes a 2xx answer
// into out. An error answer becomes an exit code (apiExitCode).
func eventCall(ctx context.Context, cf *clientFlags, method, path string, header http.Header, body []byte, out any) (http.Header, error) {
	ans, err := heraldAPI(cf.security(), cf.httpURL, cf.timeout).send(ctx, method, path, header, body)
	if err != nil {
		return nil, err
	}
	if !ans.ok() {
		e := ans.apiError()
		if e == nil {
			return nil, fmt.Errorf("%s %s: HTTP %d: %.200s", method, path, ans.status, ans.body)
		}
		return nil, &exitError{code: apiExitCode(ans.status), err: &eventAPIError{status: ans.status, api: e}}
	}
	if out != nil {
		if err := json.Unmarshal(ans.body, out); err != nil {
			return nil, fmt.Errorf("%s %s: unexpected answer: %v", method, path, err)
		}
	}
	return ans.header, nil
}

type eventPublishOptions struct {
	source, typ, id, subject string
	data, dataText           string
	contentType              string
	partitionKey             string
	attrs                    []string
	idempotencyKey           string
	batch                    bool
}

func newEventPublishCmd(cf *clientFlags) *cobra.Command {
	var o eventPublishOptions
	cmd := &cobra.Command{
		Use:   "publish TOPIC (--source S --type T [flags] | --batch < EVENTS)",
		Short: "Publish a CloudEvent, or a batch of them from standard input",
		Long: `Publish one CloudEvent built from the flags, or with --batch the CloudEvents
read from standard input in the JSON event format, one per line (blank
lines skipped), sent 500 to a request.

Each event's position is printed (partition/offset, and "duplicate" when
the server recognised a repeat and stored nothing). The server checks
every event before storing any of a request: a bad one fails the command
(exit 2) naming the attribute, e.g. "line 3: source: required".

-o json prints {"results": [{"id", "partition", "offset", "duplicate"}, ...]}.`,
		Example: `  herald event publish orders --source /shop --type order.placed --data '{"total":12}'
  herald event publish orders --source /shop --type order.placed --id o-1 --key cust-7
  herald event publish orders --batch < events.jsonl`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runEventPublish(cmd, cf, &o, args[0]))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.source, "source", "", "the event's source (a URI-reference)")
	f.StringVar(&o.typ, "type", "", "the event's type")
	f.StringVar(&o.id, "id", "", "the event's id (default: a UUIDv7 the server makes)")
	f.StringVar(&o.subject, "subject", "", "the event's subject")
	f.StringVar(&o.data, "data", "", "the event's data, a JSON value")
	f.StringVar(&o.dataText, "data-text", "", "the event's data, as text (content type text/plain unless --content-type)")
	f.StringVar(&o.contentType, "content-type", "", "the data's media type (datacontenttype)")
	f.StringVarP(&o.partitionKey, "key", "k", "", "partition key: events with one key keep their order")
	f.StringArrayVar(&o.attrs, "attr", nil, "extension attribute `NAME=VALUE` (repeatable)")
	f.StringVar(&o.idempotencyKey, "idempotency-key", "", "deduplicate the request by this key instead of source and id")
	f.BoolVar(&o.batch, "batch", false, "publish the CloudEvents on standard input, one JSON object a line")
	return cmd
}

type eventPublishResult struct {
	ID        string `json:"id,omitempty"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

func runEventPublish(cmd *cobra.Command, cf *clientFlags, o *eventPublishOptions, topic string) error {
	if err := cf.check(); err != nil {
		return err
	}
	var batches [][]json.RawMessage
	var lines []int // the input line of each event, for errors
	if o.batch {
		fl := cmd.Flags()
		for _, n := range []string{"source", "type", "id", "subject", "data", "data-text", "content-type", "key", "attr"} {
			if fl.Changed(n) {
				return usageErrorf("--%s: with --batch the events come whole from standard input", n)
			}
		}
		sc := bufio.NewScanner(cmd.InOrStdin())
		sc.Buffer(make([]byte, 64<<10), 8<<20)
		var cur []json.RawMessage
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			if !json.Valid(line) {
				return usageErrorf("standard input line %d: not JSON", n)
			}
			cur = append(cur, json.RawMessage(bytes.Clone(line)))
			lines = append(lines, n)
			if len(cur) == 500 {
				batches, cur = append(batches, cur), nil
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
		if len(cur) > 0 {
			batches = append(batches, cur)
		}
		if len(batches) == 0 {
			return usageErrorf("--batch: no events on standard input")
		}
	} else {
		ev, err := o.event()
		if err != nil {
			return err
		}
		batches = [][]json.RawMessage{{ev}}
		lines = []int{0}
	}
	header := http.Header{"Content-Type": {"application/cloudevents-batch+json"}}
	if o.idempotencyKey != "" {
		header.Set("Idempotency-Key", o.idempotencyKey)
	}
	all := []eventPublishResult{}
	dups := 0
	for bi, b := range batches {
		body, err := json.Marshal(b)
		if err != nil {
			return err
		}
		if o.idempotencyKey != "" && len(batches) > 1 {
			// One key per request: the server numbers events within one.
			header.Set("Idempotency-Key", o.idempotencyKey+"/"+strconv.Itoa(bi))
		}
		var out struct{ Results []eventPublishResult }
		if _, err := eventCall(cmd.Context(), cf, "POST", "/v1/topics/"+url.PathEscape(topic)+"/events", header, body, &out); err != nil {
			var ae *eventAPIError
			if errors.As(err, &ae) && ae.status == http.StatusNotFound && ae.api.Field == "topic" {
				return cliError(exitNotFound, "topic %q not found", topic)
			}
			if errors.As(err, &ae) && o.batch && strings.HasPrefix(ae.api.Field, "[") {
				// "[3].source" names an event of this request: say which line.
				if i, _, ok := strings.Cut(strings.TrimPrefix(ae.api.Field, "["), "]"); ok {
					if n, perr := strconv.Atoi(i); perr == nil && bi*500+n < len(lines) {
						msg := strings.ReplaceAll(strings.TrimPrefix(ae.api.Message, "invalid CloudEvent: "), "["+i+"].", "")
						return cliError(exitUsage, "standard input line %d: %s (%d event(s) published before it)",
							lines[bi*500+n], msg, len(all))
					}
				}
			}
			if len(all) > 0 {
				return fmt.Errorf("%w (%d event(s) published before it)", err, len(all))
			}
			return err
		}
		for _, r := range out.Results {
			if r.Duplicate {
				dups++
			}
		}
		all = append(all, out.Results...)
	}
	w := cmd.OutOrStdout()
	if cf.json() {
		return printJSON(w, map[string]any{"results": all})
	}
	for _, r := range all {
		dup := ""
		if r.Duplicate {
			dup = "  duplicate"
		}
		fmt.Fprintf(w, "%s/%d/%d  %s%s\n", topic, r.Partition, r.Offset, r.ID, dup)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "published %d event(s) to %s (%d duplicate(s) not stored again)\n", len(all)-dups, topic, dups)
	return nil
}

// event builds the flags' event in the JSON event format.
func (o *eventPublishOptions) event() (json.RawMessage, error) {
	if o.source == "" || o.typ == "" {
		return nil, usageErrorf("give --source and --type (or --batch with events on standard input)")
	}
	if o.data != "" && o.dataText != "" {
		return nil, usageErrorf("--data and --data-text: give one")
	}
	ev := map[string]any{"specversion": "1.0", "source": o.source, "type": o.typ}
	set := func(k, v string) {
		if v != "" {
			ev[k] = v
		}
	}
	set("id", o.id)
	set("subject", o.subject)
	set("partitionkey", o.partitionKey)
	set("datacontenttype", o.contentType)
	attrs, err := parseKVs("attr", o.attrs)
	if err != nil {
		return nil, err
	}
	for k, v := range attrs {
		if _, ok := ev[k]; ok || k == "data" || k == "data_base64" {
			return nil, usageErrorf("--attr %s: give it with its own flag", k)
		}
		ev[k] = v
	}
	switch {
	case o.data != "":
		if !json.Valid([]byte(o.data)) {
			return nil, usageErrorf("--data %q: not a JSON value (use --data-text for text)", o.data)
		}
		ev["data"] = json.RawMessage(o.data)
	case o.dataText != "":
		if o.contentType == "" {
			ev["datacontenttype"] = "text/plain"
		}
		ev["data"] = o.dataText
	}
	return json.Marshal(ev)
}

type eventReadOptions struct {
	partition int32
	from      string
	max       int
	follow    bool
}

func newEventReadCmd(cf *clientFlags) *cobra.Command {
	var o eventReadOptions
	cmd := &cobra.Command{
		Use:   "read TOPIC",
		Short: "Print a topic's events as CloudEvents",
		Long: `Print the events of TOPIC, one JSON object a line: each CloudEvent in the
JSON event format (records produced over Kafka in either CloudEvents
binding mode included), and a record that is not a CloudEvent as
{"record": {...}} in the API's raw form.

Every partition is read unless --partition is given. --from says where to
start: earliest (default), latest, an offset (with --partition) or an
RFC3339 time. Reading stops at the end of the topic, after -n events, or
with --follow never (until interrupted).

-o json prints each event with its position:
  {"partition": N, "offset": N, "timestamp": T, "event": {...}} or "record".`,
		Example: `  herald event read orders
  herald event read orders --from 2026-01-02T00:00:00Z -n 10
  herald event read orders --partition 3 --from 1200 --follow`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return commandError(cmd, runEventRead(cmd, cf, &o, args[0]))
		},
	}
	f := cmd.Flags()
	f.Int32VarP(&o.partition, "partition", "p", -1, "read only partition `N`")
	f.StringVar(&o.from, "from", "earliest", "where to start: earliest, latest, an `OFFSET` (with --partition) or an RFC3339 time")
	f.IntVarP(&o.max, "max", "n", 0, "stop after `N` events (0: no limit)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep reading as events arrive")
	return cmd
}

func runEventRead(cmd *cobra.Command, cf *clientFlags, o *eventReadOptions, topic string) error {
	if err := cf.check(); err != nil {
		return err
	}
	if o.max < 0 {
		return usageErrorf("-n %d: want 0 (no limit) or more", o.max)
	}
	q := url.Values{}
	if o.partition >= 0 {
		q.Set("partition", strconv.Itoa(int(o.partition)))
	}
	switch _, offErr := strconv.ParseInt(o.from, 10, 64); {
	case o.from == "earliest" || o.from == "latest":
		q.Set("offset", o.from)
	case offErr == nil:
		if o.partition < 0 {
			return usageErrorf("--from %s: an offset needs --partition", o.from)
		}
		q.Set("offset", o.from)
	default:
		t, err := time.Parse(time.RFC3339Nano, o.from)
		if err != nil {
			return usageErrorf("--from %q: want earliest, latest, an offset or an RFC3339 time such as 2026-01-02T15:04:05Z", o.from)
		}
		q.Set("time", t.Format(time.RFC3339Nano))
	}
	w := cmd.OutOrStdout()
	n := 0
	for {
		limit := 1000
		if o.max > 0 {
			limit = min(limit, o.max-n)
		}
		q.Set("limit", strconv.Itoa(limit))
		if o.follow {
			q.Set("wait", "5s")
		}
		var page struct {
			Events []struct {
				Partition int32           `json:"partition"`
				Offset    int64           `json:"offset"`
				Timestamp string          `json:"timestamp"`
				Event     json.RawMessage `json:"event,omitempty"`
				Record    json.RawMessage `json:"record,omitempty"`
			}
			NextOffset    *int64 `json:"nextOffset"`
			HighWatermark *int64 `json:"highWatermark"`
			NextPageToken string `json:"nextPageToken"`
		}
		ctx := cmd.Context()
		if _, err := eventCall(ctx, cf, "GET", "/v1/topics/"+url.PathEscape(topic)+"/events?"+q.Encode(), nil, nil, &page); err != nil {
			if ctx.Err() != nil && o.follow {
				return nil // interrupted
			}
			var ae *eventAPIError
			if errors.As(err, &ae) && ae.status == http.StatusNotFound && ae.api.Field == "topic" {
				return cliError(exitNotFound, "topic %q not found", topic)
			}
			return err
		}
		for _, ev := range page.Events {
			var line []byte
			switch {
			case cf.json():
				line, _ = json.Marshal(ev)
			case ev.Event != nil:
				line = ev.Event
			default:
				line, _ = json.Marshal(map[string]json.RawMessage{"record": ev.Record})
			}
			if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
				return err
			}
		}
		n += len(page.Events)
		if o.max > 0 && n >= o.max {
			return nil
		}
		// Continue from where this page ended.
		q.Del("offset")
		q.Del("time")
		if page.NextPageToken != "" {
			q.Set("pageToken", page.NextPageToken)
		} else if page.NextOffset != nil {
			q.Set("offset", strconv.FormatInt(*page.NextOffset, 10))
		}
		atEnd := len(page.Events) == 0 || page.NextOffset != nil && page.HighWatermark != nil && *page.NextOffset >= *page.HighWatermark
		if atEnd && !o.follow {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}
