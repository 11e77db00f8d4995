package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/heraldhq/herald/auth"
)

// newUserCmd is "herald user": the users file herald serve --users reads.
func newUserCmd() *cobra.Command {
	var path, output string
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the users file that herald serve --users authenticates against",
		Long: `Manage a users file: salted SCRAM-SHA-256 and SCRAM-SHA-512 credentials
(never passwords) for herald serve --users. Clients authenticate with SASL
(SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN) on the Kafka listener and with HTTP
Basic on the HTTP API, console, metrics and registry. A running server
rereads the file within a second of a change: no restart.

The file is written atomically, readable by its owner only. See
docs/security.md.`,
		Example: `  herald user add alice --users users.json          # asks for the password
  printf '%s\n' "$PW" | herald user add ci --users users.json
  herald user list --users users.json
  herald user remove alice --users users.json`,
	}
	cmd.PersistentFlags().StringVar(&path, "users", os.Getenv("HERALD_USERS"), "the users `FILE` (env HERALD_USERS)")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return commandError(c, usageErrorf("%v (see %s --help)", err, c.CommandPath()))
	})
	needPath := func() error {
		if path == "" {
			return usageErrorf("--users: name the users file (or set HERALD_USERS)")
		}
		return nil
	}

	var iterations int
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user, or set a user's password",
		Long: `Add a user to the users file (creating the file), or set the password of
one already there. On a terminal the password is asked for twice without
echo; otherwise it is the first line of standard input.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needPath(); err != nil {
				return commandError(cmd, err)
			}
			name := args[0]
			if err := auth.CheckName(name); err != nil {
				return commandError(cmd, usageErrorf("%v", err))
			}
			if iterations < auth.MinIterations || iterations > auth.MaxIterations {
				return commandError(cmd, usageErrorf("--iterations %d: want %d to %d", iterations, auth.MinIterations, auth.MaxIterations))
			}
			pw, err := readNewPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return commandError(cmd, err)
			}
			created, err := auth.AddUser(path, name, pw, iterations)
			if err != nil {
				return commandError(cmd, cliError(exitFailure, "%s: %v", path, err))
			}
			verb := "password changed"
			if created {
				verb = "added"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %q %s in %s\n", name, verb, path)
			return nil
		},
	}
	add.Flags().IntVar(&iterations, "iterations", auth.DefaultIterations, "PBKDF2 iterations of the credentials (more is slower to check and to guess)")

	remove := &cobra.Command{
		Use:   "remove NAME...",
		Short: "Remove users",
		Args:  argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needPath(); err != nil {
				return commandError(cmd, err)
			}
			var errs []error
			for _, name := range args {
				ok, err := auth.RemoveUser(path, name)
				switch {
				case err != nil:
					errs = append(errs, cliError(exitFailure, "%s: %v", path, err))
				case !ok:
					errs = append(errs, cliError(exitNotFound, "user %q not found in %s", name, path))
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "user %q removed from %s\n", name, path)
				}
			}
			return commandError(cmd, someFailed(cmd, errs, len(args), "users"))
		},
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the users and their credentials' mechanisms",
		Args:  argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needPath(); err != nil {
				return commandError(cmd, err)
			}
			if output != "table" && output != "json" {
				return commandError(cmd, usageErrorf("-o %q: want table or json", output))
			}
			if _, err := os.Stat(path); err != nil {
				return commandError(cmd, cliError(exitNotFound, "%v", err))
			}
			f, err := auth.ReadFile(path)
			if err != nil {
				return commandError(cmd, cliError(exitFailure, "%v", err))
			}
			type row struct {
				Name       string   `json:"name"`
				Mechanisms []string `json:"mechanisms"`
				Iterations int      `json:"iterations"`
			}
			rows := []row{}
			for _, n := range f.Names() {
				r := row{Name: n}
				for m, c := range f.Users[n] {
					r.Mechanisms = append(r.Mechanisms, m)
					r.Iterations = max(r.Iterations, c.Iterations)
				}
				slices.Sort(r.Mechanisms)
				rows = append(rows, r)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMECHANISMS\tITERATIONS")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Name, strings.Join(r.Mechanisms, ","), r.Iterations)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output `format`: table or json")
	cmd.AddCommand(add, remove, list)
	return cmd
}

// readNewPassword asks a terminal for a password twice, without echo, or
// reads the first line of anything else.
func readNewPassword(in io.Reader, prompt io.Writer) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		fmt.Fprint(prompt, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", usageErrorf("the passwords differ")
		}
		if len(a) == 0 {
			return "", usageErrorf("empty password")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", usageErrorf("no password on standard input (its first line is the password)")
	}
	return line, nil
}
