package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/subscription"
)

func newSubCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := parentCommand(&cobra.Command{
		Use:     "sub",
		Aliases: []string{"subscription"},
		Short:   "Create, inspect, pull from and seek Pub/Sub-style subscriptions",
		Long: `Manage subscriptions through the server's HTTP API (--http, env HERALD_HTTP):
per-message acknowledgement, ack deadlines and redelivery, filters, ordering
keys, dead-letter topics, pull and push. See docs/subscriptions.md.

With -o json every subcommand prints JSON in the API's shapes. Exit codes:
herald help exit-codes (2 also for a value the server rejects, 3 for an
unknown subscription or topic, 4 for a name that exists).`,
	})
	addClientFlags(cmd, cf)
	cmd.AddCommand(newSubCreateCmd(cf), newSubListCmd(cf), newSubDescribeCmd(cf), newSubPullCmd(cf),
		newSubAckCmd(cf), newSubSeekCmd(cf), newSubDeleteCmd(cf))
	return cmd
}

// apiCall sends a JSON request to the HTTP API and decodes a 2xx answer
// into out; an error answer becomes an error with the exit code its code
// means.
func apiCall(ctx context.Context, cf *clientFlags, method, path string, body, out any) error {
	if err := cf.check(); err != nil {
		return err
	}
	raw, err := jsonBody(body)
	if err != nil {
		return err
	}
	ans, err := heraldAPI(cf.security(), cf.httpURL, cf.timeout).send(ctx, method, path, nil, raw)
	if err != nil {
		return err
	}
	if !ans.ok() {
		e := ans.apiError()
		if e == nil {
			return fmt.Errorf("HTTP API at %s: %s %s: %d %s", cf.httpURL, method, path, ans.status, http.StatusText(ans.status))
		}
		code := exitFailure
		switch e.Code {
		case httpjson.CodeInvalidArgument, httpjson.CodePayloadTooLarge:
			code = exitUsage
		case httpjson.CodeNotFound:
			code = exitNotFound
		case httpjson.CodeAlreadyExists:
			code = exitConflict
		}
		return cliError(code, "%s", e.Error())
	}
	if out != nil {
		if err := json.Unmarshal(ans.body, out); err != nil {
			return fmt.Errorf("HTTP API at %s: bad answer: %w", cf.httpURL, err)
		}
	}
	return nil
}

func subPath(name string) string { return "/v1/subscriptions/" + url.PathEscape(name) }

func newSubCreateCmd(cf *clientFlags) *cobra.Command {
	var (
		def                  subscription.Subscription
		ackDeadline          time.Duration
		minBackoff           time.Duration
		maxBackoff           time.Duration
		retention            time.Duration
		dlq                  string
		maxAttempts          int
		push, secret         string
		pushConc             int
		ordering, exactlyOne bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME --topic TOPIC",
		Short: "Create a subscription (it receives events published from now on)",
		Long: `Create a subscription on a topic. It starts at the topic's end: events
published after it is created are delivered (seek to go back).

Without --push-endpoint it is a pull subscription (herald sub pull). With it,
Herald POSTs every event to the URL in CloudEvents binary mode and takes a 2xx
answer as the ack; the answer to create prints the HMAC signing secret
(Herald-Signature header), which describe never shows.

-o json prints the subscription resource.`,
		Example: `  herald sub create orders-worker --topic orders --filter 'attributes.type = "OrderCreated"'
  herald sub create hook --topic orders --push-endpoint https://example.com/hook --ack-deadline 30s`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if def.Topic == "" {
				return commandError(cmd, usageErrorf("--topic is required"))
			}
			if ackDeadline%time.Second != 0 {
				return commandError(cmd, usageErrorf("--ack-deadline %s: want whole seconds", ackDeadline))
			}
			def.AckDeadlineSeconds = int(ackDeadline / time.Second)
			def.EnableMessageOrdering, def.EnableExactlyOnceDelivery = ordering, exactlyOne
			if minBackoff > 0 || maxBackoff > 0 {
				def.RetryPolicy = &subscription.RetryPolicy{}
				if minBackoff > 0 {
					def.RetryPolicy.MinimumBackoff = strconv.FormatFloat(minBackoff.Seconds(), 'f', -1, 64) + "s"
				}
				if maxBackoff > 0 {
					def.RetryPolicy.MaximumBackoff = strconv.FormatFloat(maxBackoff.Seconds(), 'f', -1, 64) + "s"
				}
			}
			if dlq != "" {
				def.DeadLetterPolicy = &subscription.DeadLetterPolicy{DeadLetterTopic: dlq, MaxDeliveryAttempts: maxAttempts}
			} else if cmd.Flags().Changed("max-delivery-attempts") {
				return commandError(cmd, usageErrorf("--max-delivery-attempts needs --dead-letter-topic"))
			}
			if retention > 0 {
				def.MessageRetentionDuration = strconv.FormatFloat(retention.Seconds(), 'f', -1, 64) + "s"
			}
			if push != "" {
				def.PushConfig = &subscription.PushConfig{PushEndpoint: push, SigningSecret: secret, MaxOutstandingMessages: pushConc}
			}
			var out subscription.Subscription
			if err := apiCall(cmd.Context(), cf, "PUT", subPath(args[0]), def, &out); err != nil {
				return commandError(cmd, err)
			}
			w := cmd.OutOrStdout()
			if cf.json() {
				return printJSON(w, out)
			}
			fmt.Fprintf(w, "created subscription %s on topic %s\n", out.Name, out.Topic)
			if out.PushConfig != nil && secret == "" {
				fmt.Fprintf(w, "push signing secret: %s\n", out.PushConfig.SigningSecret)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&def.Topic, "topic", "", "topic to subscribe to (required)")
	f.StringVar(&def.Filter, "filter", "", "Pub/Sub filter on attributes, e.g. 'attributes.type = \"X\"'")
	f.DurationVar(&ackDeadline, "ack-deadline", 10*time.Second, "time to ack a delivery before it is redelivered (10s to 600s)")
	f.DurationVar(&minBackoff, "min-backoff", 0, "retry policy: first redelivery delay after a nack or expiry")
	f.DurationVar(&maxBackoff, "max-backoff", 0, "retry policy: the delay doubles up to this")
	f.StringVar(&dlq, "dead-letter-topic", "", "topic for messages that failed --max-delivery-attempts times")
	f.IntVar(&maxAttempts, "max-delivery-attempts", 5, "deliveries before dead-lettering (5 to 100)")
	f.BoolVar(&ordering, "ordering", false, "deliver each ordering key's events in order, one at a time")
	f.BoolVar(&exactlyOne, "exactly-once", false, "exactly-once delivery: only the latest ack id of a message is valid")
	f.DurationVar(&retention, "retention", 0, "drop unacked messages older than this (default 7 days)")
	f.StringVar(&push, "push-endpoint", "", "URL to POST events to (makes a push subscription)")
	f.StringVar(&secret, "push-secret", "", "HMAC signing secret for push (default: generated and printed)")
	f.IntVar(&pushConc, "push-concurrency", 0, "maximum concurrent push requests (default 64)")
	return cmd
}

func newSubListCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List subscriptions",
		Long:  "List every subscription, sorted by name.\n\n-o json prints [subscription, ...].",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var all []subscription.Subscription
			token := ""
			for {
				var page struct {
					Subscriptions []subscription.Subscription `json:"subscriptions"`
					NextPageToken string                      `json:"nextPageToken"`
				}
				if err := apiCall(cmd.Context(), cf, "GET", "/v1/subscriptions?pageSize=1000&pageToken="+url.QueryEscape(token), nil, &page); err != nil {
					return commandError(cmd, err)
				}
				all = append(all, page.Subscriptions...)
				if token = page.NextPageToken; token == "" {
					break
				}
			}
			w := cmd.OutOrStdout()
			if cf.json() {
				if all == nil {
					all = []subscription.Subscription{}
				}
				return printJSON(w, all)
			}
			rows := make([][]string, len(all))
			for i, s := range all {
				kind := "pull"
				if s.PushConfig != nil {
					kind = "push"
				}
				filter := s.Filter
				if filter == "" {
					filter = "-"
				}
				rows[i] = []string{s.Name, s.Topic, kind, strconv.Itoa(s.AckDeadlineSeconds) + "s", filter}
			}
			return printTable(w, []string{"NAME", "TOPIC", "TYPE", "ACK DEADLINE", "FILTER"}, rows)
		},
	}
}

func newSubDescribeCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a subscription's settings and stats (backlog, oldest unacked age, redeliveries)",
		Long:  "Show a subscription's settings and statistics.\n\n-o json prints the subscription resource with \"stats\".",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s subscription.Subscription
			if err := apiCall(cmd.Context(), cf, "GET", subPath(args[0]), nil, &s); err != nil {
				return commandError(cmd, err)
			}
			w := cmd.OutOrStdout()
			if cf.json() {
				return printJSON(w, s)
			}
			line := func(k, v string) { fmt.Fprintf(w, "%-22s %s\n", k+":", v) }
			line("Name", s.Name)
			line("Topic", s.Topic)
			if s.Filter != "" {
				line("Filter", s.Filter)
			}
			line("Ack deadline", strconv.Itoa(s.AckDeadlineSeconds)+"s")
			if s.RetryPolicy != nil {
				line("Retry backoff", s.RetryPolicy.MinimumBackoff+" to "+s.RetryPolicy.MaximumBackoff)
			}
			if s.DeadLetterPolicy != nil {
				line("Dead-letter topic", fmt.Sprintf("%s after %d attempts", s.DeadLetterPolicy.DeadLetterTopic, s.DeadLetterPolicy.MaxDeliveryAttempts))
			}
			line("Ordering", strconv.FormatBool(s.EnableMessageOrdering))
			line("Exactly once", strconv.FormatBool(s.EnableExactlyOnceDelivery))
			line("Retention", s.MessageRetentionDuration)
			if s.PushConfig != nil {
				line("Push endpoint", s.PushConfig.PushEndpoint)
				line("Push concurrency", strconv.Itoa(s.PushConfig.MaxOutstandingMessages))
			}
			if st := s.Stats; st != nil {
				line("Backlog", strconv.FormatInt(st.Backlog, 10))
				line("Outstanding", strconv.FormatInt(st.Outstanding, 10))
				line("Oldest unacked age", (time.Duration(st.OldestUnackedAgeSecs * float64(time.Second))).Round(time.Millisecond).String())
				line("Delivered", strconv.FormatInt(st.Delivered, 10))
				line("Acked", strconv.FormatInt(st.Acked, 10))
				line("Redeliveries", strconv.FormatInt(st.Redeliveries, 10))
				line("Dead-lettered", strconv.FormatInt(st.DeadLettered, 10))
				line("Filtered out", strconv.FormatInt(st.Filtered, 10))
			}
			return nil
		},
	}
}

func newSubPullCmd(cf *clientFlags) *cobra.Command {
	var (
		max  int
		ack  bool
		wait bool
	)
	cmd := &cobra.Command{
		Use:   "pull NAME",
		Short: "Pull messages (and with --ack, acknowledge them)",
		Long: `Pull up to --max messages. Each line shows the ack id to pass to herald sub ack
(within the ack deadline), the message id, the delivery attempt, the type
and the data (as text when it is UTF-8, else base64).

Without --wait, pull returns at once when nothing is available.
-o json prints one received message per line, in the API's shape.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if max < 1 || max > 1000 {
				return commandError(cmd, usageErrorf("--max %d: want 1 to 1000", max))
			}
			var resp struct {
				ReceivedMessages []subscription.Received `json:"receivedMessages"`
			}
			body := map[string]any{"maxMessages": max, "returnImmediately": !wait}
			if err := apiCall(cmd.Context(), cf, "POST", subPath(args[0])+":pull", body, &resp); err != nil {
				return commandError(cmd, err)
			}
			w := cmd.OutOrStdout()
			if cf.json() {
				enc := json.NewEncoder(w)
				for _, r := range resp.ReceivedMessages {
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
			} else if len(resp.ReceivedMessages) > 0 {
				rows := make([][]string, len(resp.ReceivedMessages))
				for i, r := range resp.ReceivedMessages {
					data := string(r.Message.Data)
					if !utf8.Valid(r.Message.Data) || strings.ContainsAny(data, "\n\t\r") {
						data = "base64:" + base64.StdEncoding.EncodeToString(r.Message.Data)
					}
					typ := r.Message.Attributes["type"]
					if typ == "" {
						typ = "-"
					}
					rows[i] = []string{r.AckID, r.Message.MessageID, strconv.Itoa(r.DeliveryAttempt), typ, data}
				}
				if err := printTable(w, []string{"ACK ID", "MESSAGE ID", "ATTEMPT", "TYPE", "DATA"}, rows); err != nil {
					return err
				}
			}
			if ack && len(resp.ReceivedMessages) > 0 {
				ids := make([]string, len(resp.ReceivedMessages))
				for i, r := range resp.ReceivedMessages {
					ids[i] = r.AckID
				}
				if err := acknowledge(cmd, cf, args[0], ids); err != nil {
					return err
				}
			}
			if !cf.json() {
				fmt.Fprintf(cmd.ErrOrStderr(), "pulled %d messages\n", len(resp.ReceivedMessages))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&max, "max", 100, "most messages to pull (1 to 1000)")
	cmd.Flags().BoolVar(&ack, "ack", false, "acknowledge the pulled messages")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait up to 5s for messages when none are available")
	return cmd
}

// acknowledge acks ids; invalid ones make it fail (exit 1) naming them.
func acknowledge(cmd *cobra.Command, cf *clientFlags, name string, ids []string) error {
	var resp struct {
		InvalidAckIDs []string `json:"invalidAckIds"`
	}
	if err := apiCall(cmd.Context(), cf, "POST", subPath(name)+":acknowledge", map[string]any{"ackIds": ids}, &resp); err != nil {
		return commandError(cmd, err)
	}
	if n := len(resp.InvalidAckIDs); n > 0 {
		return commandError(cmd, cliError(exitFailure, "%d of %d ack ids are invalid (unknown, expired, stale or already acknowledged): %s",
			n, len(ids), strings.Join(resp.InvalidAckIDs, " ")))
	}
	return nil
}

func newSubAckCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "ack NAME ACKID...",
		Short: "Acknowledge messages by ack id",
		Long: `Acknowledge messages by the ack ids pull printed. Ids that are unknown, stale
(under exactly-once, a newer delivery's id exists) or already acknowledged are
reported and make the command exit 1; the valid ones are acknowledged anyway.`,
		Args: argsUsage(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := acknowledge(cmd, cf, args[0], args[1:]); err != nil {
				return err
			}
			if !cf.json() {
				fmt.Fprintf(cmd.OutOrStdout(), "acknowledged %d messages\n", len(args)-1)
			}
			return nil
		},
	}
}

func newSubSeekCmd(cf *clientFlags) *cobra.Command {
	var at, snap string
	cmd := &cobra.Command{
		Use:   "seek NAME (--time TIME | --snapshot SNAPSHOT)",
		Short: "Seek a subscription to a time or a snapshot",
		Long: `Seek to a time: messages published before it count as acknowledged, the ones
after as not (they are delivered again). TIME is RFC 3339, "earliest", or a
duration back from now ("1h"). Seek to a snapshot: the acknowledgement state
it captured comes back.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			switch {
			case (at == "") == (snap == ""):
				return commandError(cmd, usageErrorf("give one of --time or --snapshot"))
			case snap != "":
				body["snapshot"] = snap
			case at == "earliest":
				body["time"] = time.Unix(0, 0).UTC().Format(time.RFC3339)
			default:
				t, err := time.Parse(time.RFC3339Nano, at)
				if err != nil {
					d, derr := time.ParseDuration(at)
					if derr != nil || d < 0 {
						return commandError(cmd, usageErrorf("--time %q: want an RFC 3339 time, earliest, or a duration like 1h", at))
					}
					t = time.Now().Add(-d)
				}
				body["time"] = t.UTC().Format(time.RFC3339Nano)
			}
			if err := apiCall(cmd.Context(), cf, "POST", subPath(args[0])+":seek", body, nil); err != nil {
				return commandError(cmd, err)
			}
			if !cf.json() {
				to := snap
				if to == "" {
					to = body["time"].(string)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "seeked subscription %s to %s\n", args[0], to)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&at, "time", "", "RFC 3339 time, earliest, or a duration back from now")
	cmd.Flags().StringVar(&snap, "snapshot", "", "snapshot name")
	return cmd
}

func newSubDeleteCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete subscriptions",
		Args:  argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var first error
			for _, name := range args {
				if err := apiCall(cmd.Context(), cf, "DELETE", subPath(name), nil, nil); err != nil {
					err = commandError(cmd, err)
					if len(args) == 1 {
						return err
					}
					fmt.Fprintln(cmd.ErrOrStderr(), "herald:", err)
					if first == nil {
						first = err
					}
					continue
				}
				if !cf.json() {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted subscription %s\n", name)
				}
			}
			if first != nil {
				return &exitError{code: exitCode(first), err: errors.New("sub delete: some subscriptions were not deleted")}
			}
			return nil
		},
	}
}
