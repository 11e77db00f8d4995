package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/cep"
	"github.com/heraldhq/herald/event"
)

func newCEPCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cep",
		Short: "Detect patterns of events (complex event processing)",
		Long: `A CEP pattern is a sequence of steps over events partitioned by a key, e.g.
three LoginFailed then a LoginSuccess for one user within ten minutes:

  {"name": "Fraud", "key": "data.user", "within": "10m",
   "skip": "skip_past_last_event", "type": "FraudAlert",
   "steps": [
     {"name": "failures", "match": {"type": ["LoginFailed"]}, "min": 3, "max": 3},
     {"name": "success", "match": {"type": ["LoginSuccess"]}, "contiguity": "strict"}]}

"herald cep test" runs a pattern over events offline; "herald cep create"
registers it on the server, where it runs exactly-once over an input topic
and writes the event each match emits (its data listing the matched events)
to an output topic, until "herald cep delete". The server commands talk to
Herald's HTTP API (--http, $HERALD_HTTP).`,
	}
	f := &ruleAPIFlags{}
	for _, c := range []*cobra.Command{newCEPCreateCmd(f), newCEPListCmd(f), newCEPDeleteCmd(f)} {
		c.Flags().StringVar(&f.api, "http", envOr("HERALD_HTTP", "http://127.0.0.1:8080"), "`URL` of the server's HTTP API (env HERALD_HTTP)")
		c.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each request")
		cmd.AddCommand(c)
	}
	cmd.AddCommand(newCEPTestCmd())
	return cmd
}

func newCEPCreateCmd(f *ruleAPIFlags) *cobra.Command {
	var pat, input, output, side, errTopic string
	cmd := &cobra.Command{
		Use:   "create --pattern JSON|YAML|@FILE --input TOPIC --output TOPIC [--timeout-topic TOPIC] [--error-topic TOPIC]",
		Short: "Register a pattern on the server and start it on a topic",
		Long: `Registers a pattern (named by its "name") on the server. It reads the
CloudEvents of --input that follow its creation and writes the event each match
emits to --output (created when missing); with --timeout-topic, partial matches
that the pattern's within ended go there. Input records that are not events or
lack the pattern's key or time field go to --error-topic (default NAME.errors)
with a header herald-error saying why. Patterns run exactly-once and survive
restarts of the server.`,
		Example: `  herald cep create --pattern @fraud.json --input logins --output fraud-alerts
  herald cep create --pattern @fraud.json --input logins --output fraud-alerts --timeout-topic fraud-timeouts`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pat == "" || input == "" || output == "" {
				return commandError(cmd, usageErrorf("--pattern, --input and --output are required"))
			}
			if f.output != "text" && f.output != "json" {
				return commandError(cmd, usageErrorf("-o %q: want text or json", f.output))
			}
			pb, err := readArg(cmd, "pattern", pat)
			if err != nil {
				return commandError(cmd, err)
			}
			// Validate locally first: the error names the pattern's field.
			parse := cep.ParseYAML
			if t := bytes.TrimSpace(pb); len(t) > 0 && t[0] == '{' {
				parse = cep.ParseJSON
			}
			p, err := parse(pb)
			if err != nil {
				return commandError(cmd, usageErrorf("--pattern: %v", err))
			}
			pj, err := json.Marshal(p)
			if err != nil {
				return commandError(cmd, err)
			}
			def := cep.Definition{Pattern: pj, Input: input, Output: output, TimeoutTopic: side, ErrorTopic: errTopic}
			var info cep.Info
			if err := f.call(cmd, http.MethodPost, "/v1/cep/patterns", nil, def, &info); err != nil {
				return commandError(cmd, err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pattern %q running: %s -> %s", info.Name, info.Input, info.Output)
			if info.TimeoutTopic != "" {
				fmt.Fprintf(cmd.OutOrStdout(), " (timeouts -> %s)", info.TimeoutTopic)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().StringVar(&pat, "pattern", "", "the pattern: JSON or YAML, or @file (@- for standard input)")
	cmd.Flags().StringVar(&input, "input", "", "topic of CloudEvents the pattern reads")
	cmd.Flags().StringVar(&output, "output", "", "topic receiving the event each match emits")
	cmd.Flags().StringVar(&side, "timeout-topic", "", "topic receiving partial matches that within ended (optional)")
	cmd.Flags().StringVar(&errTopic, "error-topic", "", "topic receiving the input records that are not usable events (default NAME.errors)")
	cmd.Flags().StringVarP(&f.output, "format", "o", "text", "output format: text or json")
	return cmd
}

func newCEPListCmd(f *ruleAPIFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the patterns registered on the server",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.output != "text" && f.output != "json" {
				return commandError(cmd, usageErrorf("-o %q: want text or json", f.output))
			}
			var out struct {
				Patterns []cep.Info `json:"patterns"`
			}
			if err := f.call(cmd, http.MethodGet, "/v1/cep/patterns", nil, nil, &out); err != nil {
				return commandError(cmd, err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out.Patterns)
			}
			rows := [][]string{}
			for _, p := range out.Patterns {
				status := p.Status
				if p.Error != "" {
					status += ": " + p.Error
				}
				rows = append(rows, []string{p.Name, status, p.Input, p.Output, p.TimeoutTopic})
			}
			return printTable(cmd.OutOrStdout(), []string{"NAME", "STATUS", "INPUT", "OUTPUT", "TIMEOUTS"}, rows)
		},
	}
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newCEPDeleteCmd(f *ruleAPIFlags) *cobra.Command {
	var ifExists bool
	cmd := &cobra.Command{
		Use:   "delete NAME...",
		Short: "Stop patterns on the server and forget them (their output topics stay)",
		Args:  argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var first error
			failed := 0
			for _, n := range args {
				err := f.call(cmd, http.MethodDelete, "/v1/cep/patterns/"+url.PathEscape(n), nil, nil, nil)
				if err != nil && ifExists && exitCode(err) == exitNotFound {
					err = nil
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "herald: cep delete: pattern %q: %v\n", n, err)
					if first == nil {
						first = err
					}
					failed++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "pattern %q deleted\n", n)
			}
			if first != nil {
				return commandError(cmd, fmt.Errorf("%d of %d patterns not deleted: %w", failed, len(args), first))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&ifExists, "if-exists", false, "do not fail for a pattern that does not exist")
	return cmd
}

func newCEPTestCmd() *cobra.Command {
	var pat, evs, output string
	var timeouts bool
	cmd := &cobra.Command{
		Use:   "test --pattern JSON|@FILE --events JSONL|@FILE",
		Short: "Run a pattern over CloudEvents (JSON, one per line) and print its matches",
		Long: `Runs a pattern over events given as CloudEvents JSON, one per line (or a
JSON array), in order, and prints each match: the events it emits with -o json,
else one line per match. Exit 0 when something matched, 1 when nothing did,
2 when the pattern or an event is invalid.`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pat == "" || evs == "" {
				return commandError(cmd, usageErrorf("--pattern and --events are required"))
			}
			if output != "text" && output != "json" {
				return commandError(cmd, usageErrorf("-o %q: want text or json", output))
			}
			pb, err := readArg(cmd, "pattern", pat)
			if err != nil {
				return commandError(cmd, err)
			}
			p, err := cep.ParseJSON(pb)
			if err != nil {
				return commandError(cmd, usageErrorf("--pattern: %v", err))
			}
			p.EmitTimeouts = p.EmitTimeouts || timeouts
			eng, err := cep.NewEngine(p)
			if err != nil {
				return commandError(cmd, usageErrorf("--pattern: %v", err))
			}
			eb, err := readArg(cmd, "events", evs)
			if err != nil {
				return commandError(cmd, err)
			}
			events, err := parseEvents(eb)
			if err != nil {
				return commandError(cmd, usageErrorf("--events: %v", err))
			}
			out := &cepPrinter{w: cmd.OutOrStdout(), json: output == "json", p: &p}
			for _, e := range events {
				eng.Process(e, out)
			}
			eng.Flush(out)
			if out.err != nil {
				return commandError(cmd, out.err)
			}
			if out.matches == 0 {
				return cliError(exitFailure, "no match in %d events", len(events))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pat, "pattern", "", "the pattern: JSON, or @file (@- for standard input)")
	cmd.Flags().StringVar(&evs, "events", "", "CloudEvents JSON, one per line or an array, or @file")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (the emitted events)")
	cmd.Flags().BoolVar(&timeouts, "timeouts", false, "also print partial matches that within ended")
	return cmd
}

func parseEvents(b []byte) ([]*event.Event, error) {
	b = bytes.TrimSpace(b)
	var raws []json.RawMessage
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &raws); err != nil {
			return nil, err
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				raws = append(raws, append(json.RawMessage(nil), line...))
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	out := make([]*event.Event, 0, len(raws))
	for i, r := range raws {
		e, err := event.ParseJSON(r)
		if err != nil {
			return nil, fmt.Errorf("event %d: %v", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

type cepPrinter struct {
	w       io.Writer
	json    bool
	p       *cep.Pattern
	matches int
	err     error
}

func (c *cepPrinter) print(m *cep.Match, what string) {
	if c.json {
		b, err := event.MarshalJSON(m.Event(c.p))
		if err != nil {
			c.err = err
			return
		}
		fmt.Fprintf(c.w, "%s\n", b)
		return
	}
	var ids []string
	for _, e := range m.Events {
		ids = append(ids, e.Step+"="+e.ID)
	}
	fmt.Fprintf(c.w, "%s key=%q %s\n", what, m.Key, strings.Join(ids, " "))
}

func (c *cepPrinter) Match(m *cep.Match)   { c.matches++; c.print(m, "match") }
func (c *cepPrinter) Timeout(m *cep.Match) { c.print(m, "timeout") }
func (c *cepPrinter) Invalid(ev *event.Event, err error) {
	if c.err == nil {
		c.err = usageErrorf("event %q: %v", ev.ID, err)
	}
}
