package main

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/stream/sql"
)

// queryAPIFlags locate the HTTP API the query commands talk to; they share
// the rule commands' request code.
type queryAPIFlags struct{ ruleAPIFlags }

func newQueryCmd() *cobra.Command {
	f := &queryAPIFlags{}
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Run continuous SQL queries on the server",
		Long: `A continuous query aggregates a topic's events in windows and writes each
result as a JSON record to a topic named like its table, until it is dropped:

  CREATE TABLE hourly_orders AS
  SELECT COUNT(*) AS order_count, SUM(data.total) AS total_revenue
  FROM orders WHERE type = 'OrderCreated'
  WINDOW TUMBLING (SIZE 1 HOUR, GRACE 5 MINUTES)
  EMIT FINAL;

Queries run exactly-once on the server and survive its restarts. The
commands talk to Herald's HTTP API (--http, env HERALD_HTTP).`,
	}
	cmd.PersistentFlags().StringVar(&f.api, "http", envOr("HERALD_HTTP", "http://127.0.0.1:8080"), "`URL` of the server's HTTP API (env HERALD_HTTP)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each request")
	cmd.AddCommand(newQueryRunCmd(f), newQueryListCmd(f), newQueryDescribeCmd(f), newQueryDropCmd(f), newQueryPullCmd(f))
	return cmd
}

func newQueryRunCmd(f *queryAPIFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "run SQL|@FILE",
		Short: "Register a CREATE TABLE ... AS SELECT query and start it",
		Example: `  herald query run "CREATE TABLE per_user AS SELECT data.user, COUNT(*) AS n FROM orders
      WINDOW TUMBLING (SIZE 1 MINUTE, GRACE 10 SECONDS) GROUP BY data.user EMIT FINAL"
  herald query run @hourly.sql`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.output != "text" && f.output != "json" {
				return commandError(cmd, usageErrorf("-o %q: want text or json", f.output))
			}
			text, err := readArg(cmd, "SQL", args[0])
			if err != nil {
				return commandError(cmd, err)
			}
			// Parse locally first: the error points into the text as typed.
			if _, err := sql.Parse(string(text)); err != nil {
				return commandError(cmd, usageErrorf("%v", err))
			}
			var info sql.Info
			if err := f.call(cmd, http.MethodPost, "/v1/queries", nil, map[string]string{"sql": string(text)}, &info); err != nil {
				return commandError(cmd, err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "query %q running: %s -> topic %q\n", info.Name, info.Input, info.Output)
			return nil
		},
	}
}

func newQueryListCmd(f *queryAPIFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the registered queries",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Queries []sql.Info `json:"queries"`
			}
			if err := f.call(cmd, http.MethodGet, "/v1/queries", nil, nil, &out); err != nil {
				return commandError(cmd, err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out.Queries)
			}
			rows := [][]string{}
			for _, q := range out.Queries {
				rows = append(rows, []string{q.Name, q.Status, q.Input, q.Output})
			}
			return printTable(cmd.OutOrStdout(), []string{"NAME", "STATUS", "INPUT", "OUTPUT"}, rows)
		},
	}
}

func newQueryDescribeCmd(f *queryAPIFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a query, its status and its text",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var q sql.Info
			if err := f.call(cmd, http.MethodGet, "/v1/queries/"+url.PathEscape(args[0]), nil, nil, &q); err != nil {
				return commandError(cmd, fmt.Errorf("query %q: %w", args[0], err))
			}
			w := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(w, q)
			}
			fmt.Fprintf(w, "Query:   %s\nStatus:  %s\nInput:   %s\nOutput:  %s\n", q.Name, q.Status, q.Input, q.Output)
			if q.Error != "" {
				fmt.Fprintf(w, "Error:   %s\n", q.Error)
			}
			fmt.Fprintf(w, "SQL:\n  %s\n", strings.ReplaceAll(q.SQL, "\n", "\n  "))
			return nil
		},
	}
}

func newQueryDropCmd(f *queryAPIFlags) *cobra.Command {
	var ifExists bool
	cmd := &cobra.Command{
		Use:   "drop NAME...",
		Short: "Stop queries and forget them (their table topics stay)",
		Args:  argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var first error
			failed := 0
			for _, n := range args {
				err := f.call(cmd, http.MethodDelete, "/v1/queries/"+url.PathEscape(n), nil, nil, nil)
				if err != nil && ifExists && exitCode(err) == exitNotFound {
					err = nil
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "herald: query drop: query %q: %v\n", n, err)
					if first == nil {
						first = err
					}
					failed++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "query %q dropped\n", n)
			}
			if first != nil {
				return commandError(cmd, fmt.Errorf("%d of %d queries not dropped: %w", failed, len(args), first))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&ifExists, "if-exists", false, "do not fail for a query that does not exist")
	return cmd
}

func newQueryPullCmd(f *queryAPIFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "pull \"SELECT * FROM table [WHERE ...]\"",
		Short:   "Answer a query from a table's current rows",
		Example: `  herald query pull "SELECT * FROM hourly_orders WHERE window_start >= '2026-03-01T10:00:00Z'" -o json`,
		Args:    argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := sql.ParsePull(args[0]); err != nil {
				return commandError(cmd, usageErrorf("%v", err))
			}
			var out struct {
				Rows []sql.Row `json:"rows"`
			}
			if err := f.call(cmd, http.MethodPost, "/v1/queries/pull", nil, map[string]string{"sql": args[0]}, &out); err != nil {
				return commandError(cmd, err)
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out.Rows)
			}
			// Columns: the windows first, then the others by name.
			seen := map[string]bool{}
			cols := []string{"window_start", "window_end"}
			for _, r := range out.Rows {
				for c := range r {
					if c != "window_start" && c != "window_end" && !seen[c] {
						seen[c] = true
						cols = append(cols, c)
					}
				}
			}
			sort.Strings(cols[2:])
			rows := [][]string{}
			for _, r := range out.Rows {
				row := make([]string, len(cols))
				for i, c := range cols {
					row[i] = strings.Trim(string(r[c]), `"`)
				}
				rows = append(rows, row)
			}
			header := make([]string, len(cols))
			for i, c := range cols {
				header[i] = strings.ToUpper(c)
			}
			return printTable(cmd.OutOrStdout(), header, rows)
		},
	}
}
