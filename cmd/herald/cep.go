package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

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

"herald cep test" runs a pattern over events offline.`,
	}
	cmd.AddCommand(newCEPTestCmd())
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
