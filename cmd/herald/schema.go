package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/eventlog"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/internal/httpjson"
	"github.com/heraldhq/herald/schema"
	"github.com/heraldhq/herald/schema/asyncapi"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/server"
)

// openRegistry starts the schema registry on the server's broker (its
// _schemas topic) and lets hook validate produced records with it.
// onEvent, if given, receives the registry's system events.
func openRegistry(ctx context.Context, l eventlog.Log, hook *registry.Hook, logger *slog.Logger, reg prometheus.Registerer, onEvent ...event.Hook) (*registry.Registry, error) {
	cfg := registry.Config{Log: l, Logger: logger, Registerer: reg}
	if len(onEvent) > 0 {
		cfg.OnEvent = onEvent[0]
	}
	r, err := registry.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	hook.Set(r)
	return r, nil
}

// regClient talks to a schema registry's REST API.
type regClient struct {
	api httpAPI
}

// regError is an API error: {"error_code","message"} and the status.
type regError struct {
	status, code int
	message      string
}

func (e *regError) Error() string { return e.message }

// exitCode maps registry error codes onto the CLI's exit codes.
func (e *regError) exitCode() int {
	switch {
	case e.code == 409 || e.code >= 40404 && e.code <= 40407 || e.code == 42205 || e.code == 42206 || e.code == 42207:
		return exitConflict
	case e.status == 404:
		return exitNotFound
	case e.status == 422:
		return exitUsage
	}
	return exitFailure
}

func (c *regClient) do(ctx context.Context, method, path string, body, into any) error {
	raw, err := jsonBody(body)
	if err != nil {
		return err
	}
	ans, err := c.api.send(ctx, method, path, http.Header{
		"Content-Type": {registry.ContentType},
		"Accept":       {registry.ContentType},
	}, raw)
	if err != nil {
		return err
	}
	if !ans.ok() {
		var e struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(ans.body, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: HTTP %d: %s", method, path, ans.status, bytes.TrimSpace(ans.body))
		}
		re := &regError{status: ans.status, code: e.Code, message: e.Message}
		return cliError(re.exitCode(), "%s", re.message)
	}
	if into == nil {
		return nil
	}
	if p, ok := into.(*[]byte); ok {
		*p = ans.body
		return nil
	}
	if err := json.Unmarshal(ans.body, into); err != nil {
		return cliError(exitFailure, "schema registry at %s: %s %s: bad answer: %v", c.api.base, method, path, err)
	}
	return nil
}

type schemaFlags struct {
	registry string
	output   string
	timeout  time.Duration
}

func (f *schemaFlags) client(cmd *cobra.Command) (*regClient, context.Context, context.CancelFunc, error) {
	if f.output != "table" && f.output != "json" {
		return nil, nil, nil, commandError(cmd, usageErrorf("-o %q: want table or json", f.output))
	}
	if f.timeout <= 0 {
		return nil, nil, nil, commandError(cmd, usageErrorf("--timeout %s: want a positive duration", f.timeout))
	}
	api := httpAPI{base: f.registry, flag: "--registry", hint: "is a schema registry there? --registry, env HERALD_REGISTRY", timeout: f.timeout, sec: securityOf(cmd)}
	if err := api.check(); err != nil {
		return nil, nil, nil, commandError(cmd, err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	return &regClient{api: api}, ctx, cancel, nil
}

func newSchemaCmd() *cobra.Command {
	f := &schemaFlags{}
	cmd := parentCommand(&cobra.Command{
		Use:   "schema",
		Short: "Register, list, get, check, diff, configure, delete and discover schemas; AsyncAPI",
		Long: `Manage schemas in Herald's schema registry (or any Confluent-compatible
one) over its REST API: --registry, default $HERALD_REGISTRY or
http://127.0.0.1:8081 (herald serve --registry-addr). The registry is also
under /registry on herald serve's HTTP address.

Schema types: avro, json (JSON Schema) and protobuf; register and check
guess the type from the file name (.avsc, .json, .proto) unless --type says.

Exit codes: 0 ok, 1 the registry failed or is unreachable, 2 bad usage or a
schema the registry finds invalid, 3 subject, version or schema not found,
4 incompatible schema or a state that forbids the change (read-only mode,
soft-deleted, referenced).`,
	})
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.registry, "registry", envOr("HERALD_REGISTRY", "http://127.0.0.1:8081"), "schema registry `URL` (env HERALD_REGISTRY)")
	pf.StringVarP(&f.output, "output", "o", "table", "output `format`: table (for people) or json (for scripts)")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the registry")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return commandError(c, usageErrorf("%v (see %s --help)", err, c.CommandPath()))
	})
	cmd.AddCommand(newSchemaRegisterCmd(f), newSchemaListCmd(f), newSchemaGetCmd(f), newSchemaCheckCmd(f),
		newSchemaDiffCmd(f), newSchemaConfigCmd(f), newSchemaDeleteCmd(f), newSchemaDiscoverCmd(f), newSchemaAsyncAPICmd(f))
	return cmd
}

// schemaInput reads a schema file ("-" for stdin) and its type.
type schemaInput struct {
	typ  string
	refs []string
}

func (in *schemaInput) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&in.typ, "type", "", "schema `type`: avro, json or protobuf (default: from the file name, else avro)")
	cmd.Flags().StringArrayVar(&in.refs, "ref", nil, "a reference `NAME=SUBJECT:VERSION` (repeatable); VERSION may be latest")
}

func (in *schemaInput) request(cmd *cobra.Command, file string) (registry.RegisterRequest, error) {
	var (
		b   []byte
		err error
	)
	if file == "-" {
		b, err = io.ReadAll(cmd.InOrStdin())
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return registry.RegisterRequest{}, commandError(cmd, usageErrorf("read schema: %v", err))
	}
	typ := in.typ
	if typ == "" {
		switch strings.ToLower(filepath.Ext(file)) {
		case ".proto":
			typ = "protobuf"
		case ".json":
			typ = "json"
		default:
			typ = "avro"
		}
	}
	t, err := schema.ParseType(typ)
	if err != nil {
		return registry.RegisterRequest{}, commandError(cmd, usageErrorf("--type %q: want avro, json or protobuf", typ))
	}
	req := registry.RegisterRequest{Schema: string(b), SchemaType: string(t)}
	for _, r := range in.refs {
		name, rest, ok1 := strings.Cut(r, "=")
		subject, ver, ok2 := strings.Cut(rest, ":")
		v, err := strconv.Atoi(ver)
		if ver == "latest" {
			v, err = -1, nil
		}
		if !ok1 || !ok2 || name == "" || subject == "" || err != nil {
			return req, commandError(cmd, usageErrorf("--ref %q: want NAME=SUBJECT:VERSION", r))
		}
		req.References = append(req.References, schema.Reference{Name: name, Subject: subject, Version: v})
	}
	return req, nil
}

func subjectPath(s string) string { return "/subjects/" + url.PathEscape(s) }

func newSchemaRegisterCmd(f *schemaFlags) *cobra.Command {
	var in schemaInput
	cmd := &cobra.Command{
		Use:   "register SUBJECT FILE",
		Short: "Register a schema under a subject (FILE - reads standard input)",
		Long: `Register the schema in FILE under SUBJECT. The registry checks it against
the subject's compatibility level first; an incompatible schema is refused
with the rules it breaks (exit 4). Registering a schema the subject already
has returns its existing version and id.

-o json prints {"subject", "version", "id"}.`,
		Example: `  herald schema register orders-value order.avsc
  herald schema register orders-value order.proto --ref shop/money.proto=money:latest`,
		Args: argsUsage(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			req, err := in.request(cmd, args[1])
			if err != nil {
				return err
			}
			var reg struct{ ID int }
			if err := c.do(ctx, "POST", subjectPath(args[0])+"/versions", req, &reg); err != nil {
				return err
			}
			var got registry.SchemaJSON
			if err := c.do(ctx, "POST", subjectPath(args[0]), req, &got); err != nil {
				return err
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"subject": args[0], "version": got.Version, "id": reg.ID})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered %s version %d, schema id %d\n", args[0], got.Version, reg.ID)
			return nil
		},
	}
	in.flags(cmd)
	return cmd
}

func newSchemaListCmd(f *schemaFlags) *cobra.Command {
	var (
		prefix  string
		deleted bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List subjects with their latest version",
		Long: `List subjects: name, latest version, its schema id and type.

-o json prints [{"subject","version","id","schemaType"}].`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			q := url.Values{"latestOnly": {"true"}}
			if prefix != "" {
				q.Set("subjectPrefix", prefix)
			}
			if deleted {
				q.Set("deleted", "true")
			}
			var all []registry.SchemaJSON
			if err := c.do(ctx, "GET", "/schemas?"+q.Encode(), nil, &all); err != nil {
				return err
			}
			type row struct {
				Subject    string `json:"subject"`
				Version    int    `json:"version"`
				ID         int    `json:"id"`
				SchemaType string `json:"schemaType"`
			}
			rows := make([]row, 0, len(all))
			var table [][]string
			for _, s := range all {
				t := s.SchemaType
				if t == "" {
					t = "AVRO"
				}
				rows = append(rows, row{s.Subject, s.Version, s.ID, t})
				table = append(table, []string{s.Subject, strconv.Itoa(s.Version), strconv.Itoa(s.ID), t})
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), rows)
			}
			return printTable(cmd.OutOrStdout(), []string{"SUBJECT", "VERSION", "ID", "TYPE"}, table)
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "only subjects starting with `PREFIX`")
	cmd.Flags().BoolVar(&deleted, "deleted", false, "include soft-deleted versions")
	return cmd
}

// versionArg parses a version argument: a number or latest.
func versionArg(cmd *cobra.Command, s string) (string, error) {
	if s == "latest" {
		return s, nil
	}
	if n, err := strconv.Atoi(s); err != nil || n <= 0 {
		return "", commandError(cmd, usageErrorf("version %q: want a positive number or latest", s))
	}
	return s, nil
}

func newSchemaGetCmd(f *schemaFlags) *cobra.Command {
	var id int
	cmd := &cobra.Command{
		Use:   "get SUBJECT [VERSION] | get --id ID",
		Short: "Print a schema",
		Long: `Print the schema of SUBJECT's VERSION (default latest), or the schema with
id ID. The text is printed as registered.

-o json prints the registry's object: {"subject","version","id","schemaType","references","schema"}.`,
		Example: `  herald schema get orders-value
  herald schema get orders-value 3 -o json
  herald schema get --id 42`,
		Args: argsUsage(cobra.RangeArgs(0, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			var s registry.SchemaJSON
			switch {
			case id > 0 && len(args) == 0:
				if err := c.do(ctx, "GET", fmt.Sprintf("/schemas/ids/%d", id), nil, &s); err != nil {
					return err
				}
				s.ID = id
			case id == 0 && len(args) > 0:
				ver := "latest"
				if len(args) == 2 {
					if ver, err = versionArg(cmd, args[1]); err != nil {
						return err
					}
				}
				if err := c.do(ctx, "GET", subjectPath(args[0])+"/versions/"+ver, nil, &s); err != nil {
					return err
				}
			default:
				return commandError(cmd, usageErrorf("give SUBJECT [VERSION] or --id ID, not both"))
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), s)
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.TrimRight(s.Schema, "\n"))
			return nil
		},
	}
	cmd.Flags().IntVar(&id, "id", 0, "the schema `ID`")
	return cmd
}

func newSchemaCheckCmd(f *schemaFlags) *cobra.Command {
	var (
		in      schemaInput
		version string
	)
	cmd := &cobra.Command{
		Use:   "check SUBJECT FILE",
		Short: "Check a schema's compatibility before registering it (exit 4 if incompatible)",
		Long: `Check whether the schema in FILE may be registered under SUBJECT: against
what registering would check (the subject's level, every version for the
_TRANSITIVE levels), or against --version only. Prints "compatible", or the
rules broken, one per line, and exits 4. Nothing is registered: run it in CI
before a deploy.

-o json prints {"compatible": bool, "messages": [...]}.`,
		Example: `  herald schema check orders-value order.avsc
  herald schema check orders-value order.avsc --version 3`,
		Args: argsUsage(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			req, err := in.request(cmd, args[1])
			if err != nil {
				return err
			}
			path := "/compatibility" + subjectPath(args[0]) + "/versions"
			if version != "" {
				v, err := versionArg(cmd, version)
				if err != nil {
					return err
				}
				path += "/" + v
			}
			var res struct {
				Is       bool     `json:"is_compatible"`
				Messages []string `json:"messages"`
			}
			if err := c.do(ctx, "POST", path+"?verbose=true", req, &res); err != nil {
				return err
			}
			if f.output == "json" {
				if res.Messages == nil {
					res.Messages = []string{}
				}
				if err := printJSON(cmd.OutOrStdout(), map[string]any{"compatible": res.Is, "messages": res.Messages}); err != nil {
					return err
				}
			} else if res.Is {
				fmt.Fprintln(cmd.OutOrStdout(), "compatible")
			} else {
				for _, m := range res.Messages {
					fmt.Fprintln(cmd.OutOrStdout(), m)
				}
			}
			if !res.Is {
				return cliError(exitConflict, "the schema is not compatible with subject %q", args[0])
			}
			return nil
		},
	}
	in.flags(cmd)
	cmd.Flags().StringVar(&version, "version", "", "check against this `VERSION` only (a number or latest)")
	return cmd
}

func newSchemaDiffCmd(f *schemaFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff SUBJECT VERSION1 VERSION2",
		Short: "Show how two versions of a subject differ, and whether each reads the other",
		Long: `Print a line diff of two versions (JSON schemas pretty-printed first, so
formatting does not show), then whether VERSION2 reads data written with
VERSION1 (backward) and the reverse (forward), with the rules broken.

-o json prints {"diff": [lines], "backward": [messages], "forward": [messages]}.`,
		Example: `  herald schema diff orders-value 1 2`,
		Args:    argsUsage(cobra.ExactArgs(3)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			var vs [2]registry.SchemaJSON
			var parsed [2]schema.Schema
			for i, a := range args[1:] {
				v, err := versionArg(cmd, a)
				if err != nil {
					return err
				}
				if err := c.do(ctx, "GET", subjectPath(args[0])+"/versions/"+v, nil, &vs[i]); err != nil {
					return err
				}
				deps, err := c.deps(ctx, vs[i].References, 0)
				if err != nil {
					return err
				}
				t, _ := schema.ParseType(vs[i].SchemaType)
				if parsed[i], err = schema.Parse(t, vs[i].Schema, deps); err != nil {
					return cliError(exitFailure, "version %s does not parse: %v", a, err)
				}
			}
			diff := lineDiff(prettySchema(vs[0].Schema), prettySchema(vs[1].Schema))
			back := schema.CanRead(parsed[1], parsed[0])
			fwd := schema.CanRead(parsed[0], parsed[1])
			out := cmd.OutOrStdout()
			if f.output == "json" {
				return printJSON(out, map[string]any{"diff": orEmpty(diff), "backward": orEmpty(back), "forward": orEmpty(fwd)})
			}
			fmt.Fprintf(out, "--- %s version %d (id %d)\n+++ %s version %d (id %d)\n", args[0], vs[0].Version, vs[0].ID, args[0], vs[1].Version, vs[1].ID)
			for _, l := range diff {
				fmt.Fprintln(out, l)
			}
			for _, d := range []struct {
				name string
				msgs []string
			}{{"backward (version " + args[2] + " reads " + args[1] + ")", back}, {"forward (version " + args[1] + " reads " + args[2] + ")", fwd}} {
				if len(d.msgs) == 0 {
					fmt.Fprintf(out, "%s: compatible\n", d.name)
					continue
				}
				fmt.Fprintf(out, "%s: incompatible\n", d.name)
				for _, m := range d.msgs {
					fmt.Fprintf(out, "  %s\n", m)
				}
			}
			return nil
		},
	}
	return cmd
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// deps fetches references transitively, in dependency order.
func (c *regClient) deps(ctx context.Context, refs []schema.Reference, depth int) ([]schema.Dep, error) {
	if depth > 32 {
		return nil, cliError(exitFailure, "references nested deeper than 32")
	}
	var out []schema.Dep
	for _, r := range refs {
		var s registry.SchemaJSON
		v := strconv.Itoa(r.Version)
		if r.Version == -1 {
			v = "latest"
		}
		if err := c.do(ctx, "GET", subjectPath(r.Subject)+"/versions/"+v, nil, &s); err != nil {
			return nil, err
		}
		sub, err := c.deps(ctx, s.References, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(append(out, sub...), schema.Dep{Name: r.Name, Text: s.Schema})
	}
	return out, nil
}

// prettySchema indents JSON schemas; other text is kept.
func prettySchema(s string) []string {
	var buf bytes.Buffer
	if json.Indent(&buf, []byte(s), "", "  ") == nil {
		s = buf.String()
	}
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

// lineDiff is a longest-common-subsequence diff: lines prefixed "  ", "- "
// or "+ ".
func lineDiff(a, b []string) []string {
	n, m := len(a), len(b)
	if n*m > 4_000_000 {
		return []string{"(schemas too large to diff line by line)"}
	}
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			out = append(out, "  "+a[i])
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, "- "+a[i])
			i++
		default:
			out = append(out, "+ "+b[j])
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, "- "+a[i])
	}
	for ; j < m; j++ {
		out = append(out, "+ "+b[j])
	}
	return out
}

func newSchemaConfigCmd(f *schemaFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config [SUBJECT] [LEVEL]",
		Short: "Show or set the compatibility level (global, or of a subject)",
		Long: `With no LEVEL, print the compatibility level of SUBJECT (its own, else the
global one, marked so) or the global level. With LEVEL, set it: NONE,
BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or
FULL_TRANSITIVE. The global level is named by the subject "-".

-o json prints {"subject", "compatibilityLevel", "global": bool}.`,
		Example: `  herald schema config
  herald schema config orders-value
  herald schema config orders-value FULL_TRANSITIVE
  herald schema config - FORWARD`,
		Args: argsUsage(cobra.RangeArgs(0, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			subject := ""
			if len(args) > 0 && args[0] != "-" {
				subject = args[0]
			}
			path := "/config"
			if subject != "" {
				path += "/" + url.PathEscape(subject)
			}
			out := cmd.OutOrStdout()
			if len(args) == 2 {
				l, err := schema.ParseLevel(args[1])
				if err != nil {
					return commandError(cmd, usageErrorf("%v", err))
				}
				if err := c.do(ctx, "PUT", path, map[string]string{"compatibility": string(l)}, nil); err != nil {
					return err
				}
				if f.output == "json" {
					return printJSON(out, map[string]any{"subject": subject, "compatibilityLevel": l, "global": subject == ""})
				}
				fmt.Fprintf(out, "compatibility of %s set to %s\n", subjectName(subject), l)
				return nil
			}
			var got struct {
				Level string `json:"compatibilityLevel"`
			}
			global := subject == ""
			if err := c.do(ctx, "GET", path, nil, &got); err != nil {
				if exitCode(err) != exitNotFound || subject == "" {
					return err
				}
				global = true
				if err := c.do(ctx, "GET", "/config", nil, &got); err != nil {
					return err
				}
			}
			if f.output == "json" {
				return printJSON(out, map[string]any{"subject": subject, "compatibilityLevel": got.Level, "global": global})
			}
			if global && subject != "" {
				fmt.Fprintf(out, "%s (the global level; %s has none of its own)\n", got.Level, subject)
			} else {
				fmt.Fprintln(out, got.Level)
			}
			return nil
		},
	}
	return cmd
}

func subjectName(s string) string {
	if s == "" {
		return "the registry (global)"
	}
	return fmt.Sprintf("subject %q", s)
}

func newSchemaDeleteCmd(f *schemaFlags) *cobra.Command {
	var permanent bool
	cmd := &cobra.Command{
		Use:   "delete SUBJECT [VERSION]",
		Short: "Delete a subject or one version (soft; --permanent after a soft delete)",
		Long: `Soft-delete SUBJECT (every version) or one VERSION: they stop being served
and checked against, but their ids keep resolving. --permanent removes what
was soft-deleted before; a version referenced by another schema cannot be
deleted (exit 4).

-o json prints {"subject", "versions": [...], "permanent": bool}.`,
		Example: `  herald schema delete orders-value 3
  herald schema delete orders-value && herald schema delete orders-value --permanent`,
		Args: argsUsage(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			q := ""
			if permanent {
				q = "?permanent=true"
			}
			var versions []int
			if len(args) == 2 {
				v, err := versionArg(cmd, args[1])
				if err != nil {
					return err
				}
				var one int
				if err := c.do(ctx, "DELETE", subjectPath(args[0])+"/versions/"+v+q, nil, &one); err != nil {
					return err
				}
				versions = []int{one}
			} else if err := c.do(ctx, "DELETE", subjectPath(args[0])+q, nil, &versions); err != nil {
				return err
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{"subject": args[0], "versions": versions, "permanent": permanent})
			}
			how := "soft-deleted"
			if permanent {
				how = "permanently deleted"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s versions %v\n", how, args[0], versions)
			return nil
		},
	}
	cmd.Flags().BoolVar(&permanent, "permanent", false, "delete for good what was soft-deleted")
	return cmd
}

func newSchemaDiscoverCmd(f *schemaFlags) *cobra.Command {
	var (
		brokers  string
		maxRecs  int
		register bool
		subject  string
	)
	cmd := &cobra.Command{
		Use:   "discover TOPIC",
		Short: "Infer a JSON Schema from a topic's events, and register it if asked",
		Long: `Read up to --max records of TOPIC from the start of each partition (over
the Kafka protocol, --brokers) and infer a JSON Schema from their values:
types, the properties every event has (required), string formats every
value matches (date-time, date, uuid, email, uri), array items. Values that
are not JSON are counted and skipped. Prints the schema; with --register it
is registered under --subject (default TOPIC-value), so a topic can adopt a
schema after the fact (then turn on herald.schema.validation).

-o json prints {"topic", "samples", "notJSON", "schema", "id"?}.`,
		Example: `  herald schema discover orders
  herald schema discover orders --max 5000 --register`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			if maxRecs <= 0 {
				return commandError(cmd, usageErrorf("--max %d: want a positive number", maxRecs))
			}
			topic := args[0]
			cf := clientFlags{brokers: brokers}
			seeds, err := cf.seeds()
			if err != nil {
				return commandError(cmd, err)
			}
			sec, err := securityOf(cmd).kgoOpts()
			if err != nil {
				return commandError(cmd, err)
			}
			var in schema.Inferrer
			if err := sampleTopic(ctx, cmd.ErrOrStderr(), sec, seeds, topic, maxRecs, func(r *kgo.Record) { in.Add(r.Value) }); err != nil {
				return commandError(cmd, err)
			}
			if in.Samples == 0 {
				return cliError(exitFailure, "topic %q: no JSON values among %d records read", topic, in.NotJSON)
			}
			if subject == "" {
				subject = topic + "-value"
			}
			doc := in.Schema(subject)
			text, _ := json.Marshal(doc)
			out := map[string]any{"topic": topic, "samples": in.Samples, "notJSON": in.NotJSON, "schema": doc}
			if register {
				var reg struct{ ID int }
				if err := c.do(ctx, "POST", subjectPath(subject)+"/versions", registry.RegisterRequest{Schema: string(text), SchemaType: "JSON"}, &reg); err != nil {
					return err
				}
				out["id"] = reg.ID
				out["subject"] = subject
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			var pretty bytes.Buffer
			json.Indent(&pretty, text, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), pretty.String())
			fmt.Fprintf(cmd.ErrOrStderr(), "inferred from %d JSON values (%d records were not JSON)\n", in.Samples, in.NotJSON)
			if register {
				fmt.Fprintf(cmd.ErrOrStderr(), "registered under %s, schema id %d\n", subject, out["id"])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&brokers, "brokers", envOr("HERALD_BROKERS", "127.0.0.1:9092"), "Kafka `HOST:PORT`s, comma-separated (env HERALD_BROKERS)")
	cmd.Flags().IntVar(&maxRecs, "max", 1000, "read at most `N` records")
	cmd.Flags().BoolVar(&register, "register", false, "register the inferred schema")
	cmd.Flags().StringVar(&subject, "subject", "", "`SUBJECT` to register under and title the schema with (default TOPIC-value)")
	return cmd
}

// sampleTopic reads up to max records of topic from the start of every
// partition, handing each to fn, with progress on w.
func sampleTopic(ctx context.Context, w io.Writer, sec []kgo.Opt, seeds []string, topic string, max int, fn func(*kgo.Record)) error {
	cl, err := kgo.NewClient(append(sec, kgo.SeedBrokers(seeds...))...)
	if err != nil {
		return cliError(exitFailure, "%v", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return kafkaError(topicRef(topic), err, "")
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return kafkaError(topicRef(topic), err, "")
	}
	parts := map[int32]kgo.Offset{}
	left := map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		if end, ok := ends.Lookup(topic, o.Partition); ok && end.Offset > o.Offset {
			parts[o.Partition] = kgo.NewOffset().At(o.Offset)
			left[o.Partition] = end.Offset
		}
	})
	if len(parts) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	n := 0
	tty := isTerminal(w)
	for n < max && len(left) > 0 {
		// NB: a partition's end may be a transaction marker or a compacted
		// gap that no record reaches; a second without records ends it.
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if err := ctx.Err(); err != nil {
			return cliError(exitFailure, "topic %q: read %d records before the timeout (--timeout)", topic, n)
		}
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			break
		}
		for _, e := range fs.Errors() {
			if errors.Is(e.Err, context.DeadlineExceeded) {
				continue
			}
			return kafkaError(topicRef(topic), e.Err, "")
		}
		fs.EachRecord(func(r *kgo.Record) {
			if n >= max {
				return
			}
			if end, ok := left[r.Partition]; ok {
				fn(r)
				n++
				if r.Offset+1 >= end {
					delete(left, r.Partition)
				}
			}
		})
		if tty {
			fmt.Fprintf(w, "\rread %d records", n)
		}
	}
	if tty {
		fmt.Fprintln(w)
	}
	return nil
}

func newSchemaAsyncAPICmd(f *schemaFlags) *cobra.Command {
	var (
		brokers string
		sample  int
		title   string
	)
	cmd := &cobra.Command{
		Use:   "asyncapi",
		Short: "Print an AsyncAPI 3 document of the topics, their schemas and event types",
		Long: `Print an AsyncAPI 3.0 document (JSON) describing the server's topics: a
channel per topic with its partitions and configs, the messages on it (one
per CloudEvents type seen in the first --sample records of each partition,
else one per topic) with the latest TOPIC-value and TOPIC-key schemas from
the registry as payload and key, and a send and a receive operation per
channel. Topics whose names start with "_" are internal and left out.`,
		Example: `  herald schema asyncapi > asyncapi.json`,
		Args:    argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, cancel, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			cf := clientFlags{brokers: brokers}
			seeds, err := cf.seeds()
			if err != nil {
				return commandError(cmd, err)
			}
			sec, err := securityOf(cmd).kgoOpts()
			if err != nil {
				return commandError(cmd, err)
			}
			cl, err := kgo.NewClient(append(sec, kgo.SeedBrokers(seeds...))...)
			if err != nil {
				return commandError(cmd, cliError(exitFailure, "%v", err))
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			tds, err := adm.ListTopics(ctx)
			if err != nil {
				return commandError(cmd, cliError(exitFailure, "list topics: %v", err))
			}
			var topics []asyncapi.Topic
			for _, td := range tds.Sorted() {
				if td.IsInternal || strings.HasPrefix(td.Topic, "_") || td.Err != nil {
					continue
				}
				t := asyncapi.Topic{Name: td.Topic, Partitions: len(td.Partitions), Configs: map[string]string{}}
				if rcs, err := adm.DescribeTopicConfigs(ctx, td.Topic); err == nil {
					if rc, err := rcs.On(td.Topic, nil); err == nil && rc.Err == nil {
						for _, cfg := range rc.Configs {
							if cfg.Source == kmsg.ConfigSourceDynamicTopicConfig && cfg.Value != nil {
								t.Configs[cfg.Key] = *cfg.Value
							}
						}
					}
				}
				seen := eventTypes{}
				if sample > 0 {
					err := sampleTopic(ctx, io.Discard, sec, seeds, td.Topic, sample*max(1, t.Partitions), func(r *kgo.Record) {
						for _, h := range r.Headers {
							seen.add(h.Key, h.Value)
						}
					})
					if err != nil {
						return commandError(cmd, err)
					}
				}
				t.EventTypes = seen.sorted()
				for _, side := range []string{"key", "value"} {
					var s registry.SchemaJSON
					err := c.do(ctx, "GET", subjectPath(td.Topic+"-"+side)+"/versions/latest", nil, &s)
					if err != nil {
						if exitCode(err) == exitNotFound {
							continue
						}
						return err
					}
					setTopicSchema(&t, side, s)
				}
				topics = append(topics, t)
			}
			doc := asyncapi.Generate(asyncapi.Info{Title: title, Servers: map[string]string{"herald": seeds[0]},
				Description: "Generated by herald schema asyncapi from the topics, the schema registry and the event types seen."}, topics)
			return printJSON(cmd.OutOrStdout(), doc)
		},
	}
	cmd.Flags().StringVar(&brokers, "brokers", envOr("HERALD_BROKERS", "127.0.0.1:9092"), "Kafka `HOST:PORT`s, comma-separated (env HERALD_BROKERS)")
	cmd.Flags().IntVar(&sample, "sample", 100, "records per partition to read for event types (0: none)")
	cmd.Flags().StringVar(&title, "title", "Herald events", "the document's `TITLE`")
	return cmd
}

// eventTypes collects the CloudEvents types (ce_type headers) seen in a
// topic's records, up to 100.
type eventTypes map[string]bool

func (s eventTypes) add(key string, value []byte) {
	if key == "ce_type" && len(value) > 0 && len(s) < 100 {
		s[string(value)] = true
	}
}

func (s eventTypes) sorted() []string { return slices.Sorted(maps.Keys(s)) }

// setTopicSchema gives t its key or value (side) schema; a schema without
// a type is Avro, as in the registry API.
func setTopicSchema(t *asyncapi.Topic, side string, s registry.SchemaJSON) {
	typ := s.SchemaType
	if typ == "" {
		typ = "AVRO"
	}
	as := &asyncapi.Schema{Subject: s.Subject, Version: s.Version, ID: s.ID, Type: typ, Text: s.Schema}
	if side == "key" {
		t.Key = as
	} else {
		t.Value = as
	}
}

// asyncAPIHandler serves GET /v1/asyncapi.json: the AsyncAPI document of
// the server's topics, built in-process from the broker, the registry and
// the CloudEvents types in the first records of each partition.
func asyncAPIHandler(srv *server.Server, reg *registry.Registry, kafkaAddr string) (http.Handler, error) {
	l, err := embedded.New(embedded.Config{Broker: srv.Broker})
	if err != nil {
		return nil, err
	}
	const sample = 100 // records per partition
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		var topics []asyncapi.Topic
		for _, ti := range srv.Broker.Topics() {
			if ti.Internal || strings.HasPrefix(ti.Name, "_") {
				continue
			}
			t := asyncapi.Topic{Name: ti.Name, Partitions: ti.Partitions, Configs: ti.Configs}
			seen := eventTypes{}
			for p := range ti.Partitions {
				start, _, err := l.Offsets(ctx, ti.Name, int32(p))
				if err != nil {
					continue
				}
				recs, err := l.Read(ctx, ti.Name, int32(p), start, eventlog.ReadOptions{MaxBytes: 256 << 10})
				if err != nil {
					continue
				}
				for i, rec := range recs {
					if i == sample {
						break
					}
					for _, h := range rec.Headers {
						seen.add(h.Key, h.Value)
					}
				}
			}
			t.EventTypes = seen.sorted()
			for _, side := range []string{"key", "value"} {
				s, _, ok := reg.Latest(ti.Name + "-" + side)
				if !ok {
					continue
				}
				setTopicSchema(&t, side, s)
			}
			topics = append(topics, t)
		}
		doc := asyncapi.Generate(asyncapi.Info{Title: "Herald events", Servers: map[string]string{"herald": kafkaAddr},
			Description: "Generated by Herald from its topics, its schema registry and the event types seen."}, topics)
		httpjson.WriteJSON(w, http.StatusOK, doc)
	}), nil
}
