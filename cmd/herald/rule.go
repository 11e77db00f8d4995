package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/rules"
)

// ruleAPIFlags locate the HTTP API the rule commands talk to.
type ruleAPIFlags struct {
	api     string
	bus     string
	output  string
	timeout time.Duration
}

func (f *ruleAPIFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.api, "http", envOr("HERALD_HTTP", "http://127.0.0.1:8080"), "`URL` of the server's HTTP API (env HERALD_HTTP)")
	cmd.PersistentFlags().StringVar(&f.bus, "bus", rules.DefaultBus, "event bus of the rule")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each request")
}

func newRuleCmd() *cobra.Command {
	f := &ruleAPIFlags{}
	cmd := &cobra.Command{
		Use:   "rule",
		Short: "Manage event bus rules and test event patterns",
		Long: `Rules route the events of a bus that match an EventBridge event pattern (or
fire on a schedule) to up to five targets: topics or HTTP webhooks.

"herald rule test" checks a pattern against an event offline, like grep:
exit 0 on a match, 1 on no match, 2 when the pattern or event is invalid.
The other subcommands talk to Herald's HTTP API (--http, env HERALD_HTTP).`,
	}
	f.register(cmd)
	cmd.AddCommand(newRuleTestCmd(), newRuleCreateCmd(f), newRuleListCmd(f), newRuleDescribeCmd(f),
		newRuleStateCmd(f, "enable", rules.Enabled), newRuleStateCmd(f, "disable", rules.Disabled), newRuleDeleteCmd(f))
	return cmd
}

// readArg returns an inline value, or a file's content for @file ("@-"
// is standard input).
func readArg(cmd *cobra.Command, flag, v string) ([]byte, error) {
	if !strings.HasPrefix(v, "@") {
		return []byte(v), nil
	}
	name := v[1:]
	if name == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usageErrorf("--%s %s: %v", flag, v, err)
	}
	return b, nil
}

func newRuleTestCmd() *cobra.Command {
	var pat, ev string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "test --pattern PATTERN --event EVENT",
		Short: "Test an event pattern against an event, offline",
		Long: `Match one event against an EventBridge event pattern and say why.

PATTERN and EVENT are inline JSON or @FILE (@- for standard input). The event
is a CloudEvent in JSON form ({"source":..., "type":..., "data":{...}}) or any
JSON object; "detail" and "detail-type" are aliases of "data" and "type".

Prints "match" or "no match" with the reasons, and exits 0 on a match, 1 on
no match and 2 when the pattern or the event is invalid, so scripts can use
it like grep.`,
		Example: `  herald rule test --pattern '{"source":["shop"],"detail":{"total":[{"numeric":[">",100]}]}}' \
      --event '{"source":"shop","type":"order.placed","data":{"total":150}}'
  herald rule test --pattern @pattern.json --event @event.json -q && echo routed`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pat == "" || ev == "" {
				return commandError(cmd, usageErrorf("--pattern and --event are both required"))
			}
			p, err := readArg(cmd, "pattern", pat)
			if err != nil {
				return commandError(cmd, err)
			}
			e, err := readArg(cmd, "event", ev)
			if err != nil {
				return commandError(cmd, err)
			}
			res, err := rules.TestPattern(p, e)
			if err != nil {
				var he *httpjson.Error
				if errors.As(err, &he) {
					return commandError(cmd, usageErrorf("invalid %s: %s", he.Field, he.Message))
				}
				return commandError(cmd, usageErrorf("%v", err))
			}
			out := cmd.OutOrStdout()
			if res.Match {
				if !quiet {
					fmt.Fprintln(out, "match")
					for _, r := range res.Reasons {
						fmt.Fprintln(out, "  "+r)
					}
				}
				return nil
			}
			if !quiet {
				fmt.Fprintln(out, "no match")
				for _, r := range res.Reasons {
					fmt.Fprintln(out, "  "+r)
				}
			}
			return &exitError{code: exitFailure, err: errors.New("rule test: no match")}
		},
	}
	cmd.Flags().StringVarP(&pat, "pattern", "p", "", "event pattern: JSON or @file")
	cmd.Flags().StringVarP(&ev, "event", "e", "", "event: JSON or @file")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing; only the exit code tells")
	return cmd
}

// call sends a request to the rules API and decodes a 2xx answer into
// out. Errors carry the CLI exit code of the API error.
func (f *ruleAPIFlags) call(cmd *cobra.Command, method, path string, query url.Values, body, out any) error {
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	raw, err := jsonBody(body)
	if err != nil {
		return err
	}
	ans, err := heraldAPI(securityOf(cmd), f.api, f.timeout).send(cmd.Context(), method, path, nil, raw)
	if err != nil {
		return err
	}
	if !ans.ok() {
		msg := strings.TrimSpace(string(ans.body))
		if e := ans.apiError(); e != nil {
			msg = e.Error()
		}
		return cliError(apiExitCode(ans.status), "%s", msg)
	}
	if out != nil && len(ans.body) > 0 {
		if err := json.Unmarshal(ans.body, out); err != nil {
			return cliError(exitFailure, "decode the server's answer: %v", err)
		}
	}
	return nil
}

func (f *ruleAPIFlags) busQuery() url.Values { return url.Values{"bus": {f.bus}} }

func newRuleCreateCmd(f *ruleAPIFlags) *cobra.Command {
	var def, pat, sched, desc, dlq string
	var targets []string
	var disabled, replace bool
	cmd := &cobra.Command{
		Use:   "create NAME (--pattern P | --schedule S) --target ID=TOPIC|ID=URL ...",
		Short: "Create (or with --replace, replace) a rule",
		Long: `Create a rule on --bus. Give it a pattern (--pattern, JSON or @file) or a
schedule (--schedule 'rate(5 minutes)' or 'cron(0 12 * * ? *)') and up to
five targets: --target ID=TOPIC delivers to a topic, --target ID=URL (http or
https) to a webhook in CloudEvents binary mode. --dead-letter-topic applies
to every target. For input transformers and retry policies give the whole
rule as JSON with --definition (JSON or @file), as the HTTP API takes it.`,
		Example: `  herald rule create big-orders --pattern '{"source":["shop"],"detail":{"total":[{"numeric":[">",100]}]}}' \
      --target audit=big-orders --target hook=https://example.com/hook --dead-letter-topic big-orders-dlq
  herald rule create nightly --schedule 'cron(0 2 * * ? *)' --target run=nightly-jobs
  herald rule create from-file --definition @rule.json`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r rules.Rule
			if def != "" {
				b, err := readArg(cmd, "definition", def)
				if err != nil {
					return commandError(cmd, err)
				}
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&r); err != nil {
					return commandError(cmd, usageErrorf("--definition: %v", err))
				}
			}
			r.Name = args[0]
			if r.Bus == "" {
				r.Bus = f.bus
			}
			if pat != "" {
				b, err := readArg(cmd, "pattern", pat)
				if err != nil {
					return commandError(cmd, err)
				}
				r.EventPattern = json.RawMessage(b)
			}
			if sched != "" {
				r.Schedule = sched
			}
			if desc != "" {
				r.Description = desc
			}
			if disabled {
				r.State = rules.Disabled
			}
			for _, t := range targets {
				id, dest, ok := strings.Cut(t, "=")
				if !ok || id == "" || dest == "" {
					return commandError(cmd, usageErrorf("--target %q: want ID=TOPIC or ID=URL", t))
				}
				tg := rules.Target{ID: id, DeadLetterTopic: dlq}
				if strings.HasPrefix(dest, "http://") || strings.HasPrefix(dest, "https://") {
					tg.Webhook = dest
				} else {
					tg.Topic = dest
				}
				r.Targets = append(r.Targets, tg)
			}
			var out rules.Rule
			var err error
			if replace {
				err = f.call(cmd, http.MethodPut, "/v1/rules/"+url.PathEscape(r.Name), url.Values{"bus": {r.Bus}}, r, &out)
			} else {
				err = f.call(cmd, http.MethodPost, "/v1/rules", nil, r, &out)
			}
			if err != nil {
				return commandError(cmd, fmt.Errorf("rule %q: %w", r.Name, err))
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			verb := "created"
			if replace {
				verb = "saved"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rule %q %s on bus %q (%s, %d targets)\n", out.Name, verb, out.Bus, out.State, len(out.Targets))
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&def, "definition", "", "the whole rule as JSON or @file (flags override its fields)")
	fl.StringVarP(&pat, "pattern", "p", "", "event pattern: JSON or @file")
	fl.StringVar(&sched, "schedule", "", "schedule: rate(N unit) or cron(min hour dom month dow year)")
	fl.StringVar(&desc, "description", "", "what the rule is for")
	fl.StringArrayVarP(&targets, "target", "t", nil, "target ID=TOPIC or ID=URL (repeatable, at most 5)")
	fl.StringVar(&dlq, "dead-letter-topic", "", "dead-letter topic of every --target")
	fl.BoolVar(&disabled, "disabled", false, "create the rule disabled")
	fl.BoolVar(&replace, "replace", false, "replace the rule if it exists (create it otherwise)")
	return cmd
}

func newRuleListCmd(f *ruleAPIFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the rules of --bus (or of every bus with --all)",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := f.busQuery()
			if all {
				q = nil
			}
			var out struct {
				Rules []rules.Rule `json:"rules"`
			}
			if err := f.call(cmd, http.MethodGet, "/v1/rules", q, nil, &out); err != nil {
				return commandError(cmd, err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out.Rules)
			}
			rows := [][]string{}
			for _, r := range out.Rules {
				what := r.Schedule
				if what == "" {
					what = preview(string(r.EventPattern), 60)
				}
				rows = append(rows, []string{r.Bus, r.Name, r.State, fmt.Sprint(len(r.Targets)), what})
			}
			return printTable(cmd.OutOrStdout(), []string{"BUS", "RULE", "STATE", "TARGETS", "PATTERN/SCHEDULE"}, rows)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list the rules of every bus")
	return cmd
}

func newRuleDescribeCmd(f *ruleAPIFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a rule, its targets and its delivery counters",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				rules.Rule
				Metrics *rules.RuleMetrics `json:"metrics"`
			}
			if err := f.call(cmd, http.MethodGet, "/v1/rules/"+url.PathEscape(args[0]), f.busQuery(), nil, &out); err != nil {
				return commandError(cmd, fmt.Errorf("rule %q: %w", args[0], err))
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, out)
			}
			fmt.Fprintf(w, "Rule:        %s\nBus:         %s\nState:       %s\n", out.Name, out.Bus, out.State)
			if out.Description != "" {
				fmt.Fprintf(w, "Description: %s\n", out.Description)
			}
			if out.Schedule != "" {
				fmt.Fprintf(w, "Schedule:    %s\n", out.Schedule)
			} else {
				fmt.Fprintf(w, "Pattern:     %s\n", out.EventPattern)
			}
			if out.Metrics != nil {
				fmt.Fprintf(w, "Matched:     %d\n", out.Metrics.Matched)
			}
			rows := [][]string{}
			for _, t := range out.Targets {
				dest := t.Topic
				if dest == "" {
					dest = t.Webhook
				}
				var m rules.TargetMetrics
				if out.Metrics != nil {
					m = out.Metrics.Targets[t.ID]
				}
				dlq := t.DeadLetterTopic
				if dlq == "" {
					dlq = "-"
				}
				rows = append(rows, []string{t.ID, dest, dlq, fmt.Sprint(m.Delivered), fmt.Sprint(m.Failed),
					fmt.Sprint(m.DeadLettered), fmt.Sprint(m.Pending), fmt.Sprintf("%.1f", m.MeanLatencyMillis)})
			}
			fmt.Fprintln(w)
			return printTable(w, []string{"TARGET", "DESTINATION", "DEAD-LETTER", "DELIVERED", "FAILED", "DEAD-LETTERED", "PENDING", "LATENCY-MS"}, rows)
		},
	}
}

func newRuleStateCmd(f *ruleAPIFlags, verb, state string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " a rule",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out rules.Rule
			if err := f.call(cmd, http.MethodPost, "/v1/rules/"+url.PathEscape(args[0])+"/"+verb, f.busQuery(), nil, &out); err != nil {
				return commandError(cmd, fmt.Errorf("rule %q: %w", args[0], err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rule %q on bus %q is %s\n", out.Name, out.Bus, state)
			return nil
		},
	}
}

func newRuleDeleteCmd(f *ruleAPIFlags) *cobra.Command {
	var ifExists bool
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Delete rules (deliveries they still owe are dropped)",
		Args:  argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var first error
			failed := 0
			for _, n := range args {
				err := f.call(cmd, http.MethodDelete, "/v1/rules/"+url.PathEscape(n), f.busQuery(), nil, nil)
				if err != nil && ifExists && exitCode(err) == exitNotFound {
					err = nil
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "herald: rule delete: rule %q: %v\n", n, err)
					if first == nil {
						first = err
					}
					failed++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rule %q deleted\n", n)
			}
			if first != nil {
				return commandError(cmd, fmt.Errorf("%d of %d rules not deleted: %w", failed, len(args), first))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&ifExists, "if-exists", false, "do not fail for a rule that does not exist")
	return cmd
}

func newArchiveCmd() *cobra.Command {
	f := &ruleAPIFlags{}
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Manage event bus archives (kept events, for replays)",
		Long: `An archive keeps a bus's events (all, or those matching a pattern) in its own
topic for a retention, so that "herald replay" can re-send them later.`,
	}
	f.register(cmd)
	var pat string
	var days int
	create := &cobra.Command{
		Use:     "create NAME [--pattern P] [--retention-days N]",
		Short:   "Create an archive of --bus",
		Example: `  herald archive create orders-2026 --bus orders --pattern '{"source":["shop"]}' --retention-days 30`,
		Args:    argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			a := rules.Archive{Name: args[0], Bus: f.bus, RetentionDays: days}
			if pat != "" {
				b, err := readArg(cmd, "pattern", pat)
				if err != nil {
					return commandError(cmd, err)
				}
				a.EventPattern = b
			}
			var out rules.Archive
			if err := f.call(cmd, http.MethodPost, "/v1/archives", nil, a, &out); err != nil {
				return commandError(cmd, fmt.Errorf("archive %q: %w", a.Name, err))
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "archive %q created on bus %q (topic %s)\n", out.Name, out.Bus, out.Topic)
			return nil
		},
	}
	create.Flags().StringVarP(&pat, "pattern", "p", "", "keep only events matching this pattern (JSON or @file)")
	create.Flags().IntVar(&days, "retention-days", 0, "days to keep events (0: forever)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List archives",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Archives []rules.Archive `json:"archives"`
			}
			if err := f.call(cmd, http.MethodGet, "/v1/archives", nil, nil, &out); err != nil {
				return commandError(cmd, err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out.Archives)
			}
			rows := [][]string{}
			for _, a := range out.Archives {
				ret := "forever"
				if a.RetentionDays > 0 {
					ret = fmt.Sprintf("%dd", a.RetentionDays)
				}
				p := string(a.EventPattern)
				if p == "" {
					p = "(all events)"
				}
				rows = append(rows, []string{a.Name, a.Bus, ret, preview(p, 60)})
			}
			return printTable(cmd.OutOrStdout(), []string{"ARCHIVE", "BUS", "RETENTION", "PATTERN"}, rows)
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an archive and the events it kept",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.call(cmd, http.MethodDelete, "/v1/archives/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
				return commandError(cmd, fmt.Errorf("archive %q: %w", args[0], err))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "archive %q deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

// parseWhen reads an RFC 3339 time, "now", or a duration before now
// ("-2h", "90m").
func parseWhen(flag, v string) (time.Time, error) {
	if v == "now" {
		return time.Now().UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil {
		return time.Now().Add(-d).UTC(), nil
	}
	return time.Time{}, usageErrorf("--%s %q: want an RFC 3339 time, \"now\" or a duration ago such as -2h", flag, v)
}

func printReplay(w io.Writer, r rules.Replay) {
	pct := 100.0
	if r.Total > 0 {
		pct = float64(r.Replayed) * 100 / float64(r.Total)
	}
	last := "-"
	if !r.LastReplayed.IsZero() {
		last = r.LastReplayed.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "replay %q: %s, %d of %d events (%.0f%%), last event time %s", r.Name, r.State, r.Replayed, r.Total, pct, last)
	if r.Reason != "" {
		fmt.Fprintf(w, " (%s)", r.Reason)
	}
	fmt.Fprintln(w)
}

func newReplayCmd() *cobra.Command {
	f := &ruleAPIFlags{}
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Re-send an archive's events to chosen rules",
		Long: `A replay re-sends the events an archive kept, with event times in [--from,
--to), into the archive's bus in event-time order, marked with the replay's
name, to the rules it names only.`,
	}
	f.register(cmd)
	var archive, from, to string
	var ruleNames []string
	var wait bool
	start := &cobra.Command{
		Use:     "start NAME --archive A --from T --to T --rule R...",
		Short:   "Start a replay",
		Example: `  herald replay start fix-1 --archive orders-2026 --from 2026-11-25T00:00:00Z --to -1h --rule big-orders --wait`,
		Args:    argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if archive == "" || from == "" || to == "" || len(ruleNames) == 0 {
				return commandError(cmd, usageErrorf("--archive, --from, --to and at least one --rule are required"))
			}
			t0, err := parseWhen("from", from)
			if err != nil {
				return commandError(cmd, err)
			}
			t1, err := parseWhen("to", to)
			if err != nil {
				return commandError(cmd, err)
			}
			var out rules.Replay
			req := rules.Replay{Name: args[0], Archive: archive, Start: t0, End: t1, Rules: ruleNames}
			if err := f.call(cmd, http.MethodPost, "/v1/replays", nil, req, &out); err != nil {
				return commandError(cmd, fmt.Errorf("replay %q: %w", args[0], err))
			}
			if !wait {
				printReplay(cmd.OutOrStdout(), out)
				return nil
			}
			for {
				if err := f.call(cmd, http.MethodGet, "/v1/replays/"+url.PathEscape(args[0]), nil, nil, &out); err != nil {
					return commandError(cmd, err)
				}
				printReplay(cmd.ErrOrStderr(), out)
				switch out.State {
				case rules.ReplayCompleted:
					printReplay(cmd.OutOrStdout(), out)
					return nil
				case rules.ReplayCancelled, rules.ReplayFailed:
					printReplay(cmd.OutOrStdout(), out)
					return commandError(cmd, cliError(exitFailure, "replay %q %s", out.Name, strings.ToLower(out.State)))
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
			}
		},
	}
	fl := start.Flags()
	fl.StringVar(&archive, "archive", "", "archive to replay")
	fl.StringVar(&from, "from", "", "first event time (RFC 3339, now, or -DURATION)")
	fl.StringVar(&to, "to", "", "end of the window, exclusive")
	fl.StringArrayVar(&ruleNames, "rule", nil, "rule to replay to (repeatable)")
	fl.BoolVar(&wait, "wait", false, "wait for the replay to end, showing progress on standard error")
	status := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a replay's state and progress",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out rules.Replay
			if err := f.call(cmd, http.MethodGet, "/v1/replays/"+url.PathEscape(args[0]), nil, nil, &out); err != nil {
				return commandError(cmd, fmt.Errorf("replay %q: %w", args[0], err))
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printReplay(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cancel := &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a running replay",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out rules.Replay
			if err := f.call(cmd, http.MethodPost, "/v1/replays/"+url.PathEscape(args[0])+"/cancel", nil, nil, &out); err != nil {
				return commandError(cmd, fmt.Errorf("replay %q: %w", args[0], err))
			}
			printReplay(cmd.OutOrStdout(), out)
			return nil
		},
	}
	cmd.AddCommand(start, status, cancel)
	return cmd
}
