package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/saga"
)

func newSagaCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := parentCommand(&cobra.Command{
		Use:   "saga",
		Short: "List, inspect, retry and abort saga instances",
		Long: `Operate the saga engine through the server's HTTP API (--http): list and
filter instances, show one with its steps and full history, retry the
compensation of a parked step, or abort a running saga (its completed steps
are compensated in reverse order).

With -o json every subcommand prints the API's JSON. Exit codes: herald help
exit-codes (3: no such saga or step; 4: the saga's state forbids the action).`,
	})
	addClientFlags(cmd, cf)
	cmd.AddCommand(newSagaListCmd(cf), newSagaShowCmd(cf), newSagaRetryCmd(cf), newSagaAbortCmd(cf))
	return cmd
}

func newSagaListCmd(cf *clientFlags) *cobra.Command {
	var status, def string
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List saga instances, most recently changed first",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 {
				return commandError(cmd, usageErrorf("--limit %d: want 1 to 10000", limit))
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if status != "" {
				q.Set("status", status)
			}
			if def != "" {
				q.Set("definition", def)
			}
			var resp struct {
				Sagas []saga.Summary `json:"sagas"`
			}
			raw, err := sagaCall(cmd.Context(), cf, http.MethodGet, "/v1/sagas?"+q.Encode(), nil, &resp)
			if err != nil {
				return commandError(cmd, err)
			}
			if cf.json() {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			rows := make([][]string, 0, len(resp.Sagas))
			for _, s := range resp.Sagas {
				rows = append(rows, []string{s.ID, fmt.Sprintf("%s@%d", s.Definition, s.Version), string(s.Status),
					dash(s.CurrentStep), s.Updated.Local().Format(time.DateTime)})
			}
			return printTable(cmd.OutOrStdout(), []string{"ID", "DEFINITION", "STATUS", "STEP", "UPDATED"}, rows)
		},
	}
	c.Flags().StringVar(&status, "status", "", "only instances in `STATUS`: running, compensating, completed, compensated or parked")
	c.Flags().StringVar(&def, "definition", "", "only instances of definition `NAME`")
	c.Flags().IntVar(&limit, "limit", 100, "at most `N` instances")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newSagaShowCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a saga instance: status, steps and full history",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in saga.InstanceView
			raw, err := sagaCall(cmd.Context(), cf, http.MethodGet, "/v1/sagas/"+url.PathEscape(args[0]), nil, &in)
			if err != nil {
				return commandError(cmd, err)
			}
			w := cmd.OutOrStdout()
			if cf.json() {
				_, err := w.Write(raw)
				return err
			}
			fmt.Fprintf(w, "Saga:        %s\nDefinition:  %s@%d\nStatus:      %s\n", in.ID, in.Definition, in.Version, in.Status)
			if in.Reason != "" {
				fmt.Fprintf(w, "Reason:      %s\n", in.Reason)
			}
			fmt.Fprintf(w, "Current:     %s\nCreated:     %s\nUpdated:     %s\n\n", dash(in.CurrentStep),
				in.Created.Local().Format(time.RFC3339Nano), in.Updated.Local().Format(time.RFC3339Nano))
			rows := make([][]string, 0, len(in.Steps))
			for _, s := range in.Steps {
				rows = append(rows, []string{s.Name, string(s.Status), strconv.Itoa(s.Attempts), strconv.Itoa(s.CompAttempts), dash(s.Error)})
			}
			if err := printTable(w, []string{"STEP", "STATUS", "ATTEMPTS", "COMP-ATTEMPTS", "ERROR"}, rows); err != nil {
				return err
			}
			fmt.Fprintln(w)
			if in.HistoryDropped > 0 {
				fmt.Fprintf(w, "(%d older history entries dropped)\n", in.HistoryDropped)
			}
			rows = rows[:0]
			for _, h := range in.History {
				rows = append(rows, []string{h.At.Local().Format("15:04:05.000"), dash(h.Step), h.Event, h.Detail})
			}
			return printTable(w, []string{"TIME", "STEP", "EVENT", "DETAIL"}, rows)
		},
	}
}

func newSagaRetryCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "retry ID STEP",
		Short: "Retry the compensation of a parked step",
		Args:  argsUsage(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, _ := json.Marshal(map[string]string{"step": args[1]})
			raw, err := sagaCall(cmd.Context(), cf, http.MethodPost, "/v1/sagas/"+url.PathEscape(args[0])+"/retry", body, nil)
			if err != nil {
				return commandError(cmd, err)
			}
			if cf.json() {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "retrying the compensation of step %s of saga %s\n", args[1], args[0])
			return nil
		},
	}
}

func newSagaAbortCmd(cf *clientFlags) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "abort ID",
		Short: "Abort a running saga: compensate its completed steps in reverse order",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, _ := json.Marshal(map[string]string{"reason": reason})
			raw, err := sagaCall(cmd.Context(), cf, http.MethodPost, "/v1/sagas/"+url.PathEscape(args[0])+"/abort", body, nil)
			if err != nil {
				return commandError(cmd, err)
			}
			if cf.json() {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "aborting saga %s: its completed steps will be compensated\n", args[0])
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, recorded in the saga's history")
	return c
}

// sagaCall sends a request to the HTTP API and decodes a 2xx answer into
// out (when not nil); it returns the raw body. API errors keep their
// message and map to exit codes.
func sagaCall(ctx context.Context, cf *clientFlags, method, path string, body []byte, out any) ([]byte, error) {
	if err := cf.check(); err != nil {
		return nil, err
	}
	ans, err := heraldAPI(cf.security(), cf.httpURL, cf.timeout).send(ctx, method, path, nil, body)
	if err != nil {
		return nil, err
	}
	if !ans.ok() {
		msg := strings.TrimSpace(string(ans.body))
		e := ans.apiError()
		if e != nil {
			msg = e.Message
			if e.Field != "" && !strings.HasPrefix(msg, e.Field+":") {
				msg = e.Field + ": " + msg
			}
		}
		code := apiExitCode(ans.status)
		if ans.status == http.StatusNotFound && (e == nil || e.Code == "") {
			msg = "the server has no saga API at " + cf.httpURL + " (is the saga engine enabled?)"
		}
		return nil, cliError(code, "%s", strings.TrimPrefix(msg, "saga: "))
	}
	if out != nil {
		if err := json.Unmarshal(ans.body, out); err != nil {
			return nil, fmt.Errorf("unexpected answer from %s: %v", cf.httpURL, err)
		}
	}
	return ans.body, nil
}
