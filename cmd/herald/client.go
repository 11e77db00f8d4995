package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Exit codes of the client commands (topic, produce, consume, group), as
// documented by "herald help exit-codes".
const (
	exitFailure  = 1 // the server refused or failed, the connection failed
	exitUsage    = 2 // a bad command line, or a value the server finds invalid
	exitNotFound = 3 // a named topic or group does not exist
	exitConflict = 4 // the object's state forbids it: exists already, group has members
)

const exitCodesHelp = `Herald's client commands (topic, produce, consume, group) exit with:

  0  success.
  1  failure: the connection failed, the server refused or failed a
     request, a record could not be produced, or an unexpected error.
  2  usage: a bad command line: an unknown flag or command, a missing or
     extra argument, a flag value that does not parse, conflicting flags,
     or a value the server rejects as invalid (a topic config, a partition
     count, a topic name).
  3  not found: a named topic or group does not exist (topic describe,
     alter and delete without --if-exists, produce and consume to an
     unknown topic, group describe, delete and reset).
  4  conflict: the object's state forbids the request: topic create of a
     topic that exists (without --if-not-exists), group reset or group
     delete of a group that still has live members.

When several objects are named (topic delete A B, group delete A B) every
one is tried; the exit code is that of the first failure.

Errors go to standard error as one line, "herald: COMMAND: message", for
example:

  herald: topic create: topic "orders" already exists
  herald: consume: --from "yesterday": want earliest, latest, an offset or an RFC3339 time
`

// newExitCodesHelp is the "herald help exit-codes" topic.
func newExitCodesHelp() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "Exit codes of the client commands, for scripts",
		Long:  exitCodesHelp,
	}
}

// cliError returns an error that exits with code and reads as the format.
func cliError(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

func usageErrorf(format string, args ...any) error { return cliError(exitUsage, format, args...) }

// exitCode is the code err exits with: its own, or one derived from the
// Kafka error it wraps.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		switch ke {
		case kerr.UnknownTopicOrPartition, kerr.GroupIDNotFound:
			return exitNotFound
		case kerr.TopicAlreadyExists, kerr.NonEmptyGroup:
			return exitConflict
		case kerr.InvalidConfig, kerr.InvalidPartitions, kerr.InvalidTopicException,
			kerr.InvalidReplicationFactor, kerr.PolicyViolation:
			return exitUsage
		}
	}
	return exitFailure
}

// commandError prefixes err with the command's path ("topic create: ...")
// and gives it its exit code.
func commandError(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	path := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
	code := exitCode(err)
	var ee *exitError
	if errors.As(err, &ee) {
		err = ee.err // keep the message, drop the wrapper; the code is kept above
	}
	return &exitError{code: code, err: fmt.Errorf("%s: %w", path, err)}
}

// kafkaError turns a Kafka error code with the server's message into an
// error that says what failed: what is "topic \"orders\"" or the like. The
// kerr.Error stays wrapped, for exitCode.
func kafkaError(what string, err error, serverMsg string) error {
	if err == nil {
		return nil
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch ke {
	case kerr.UnknownTopicOrPartition:
		return &kafkaErr{ke, what + " not found"}
	case kerr.GroupIDNotFound:
		return &kafkaErr{ke, what + " not found"}
	case kerr.TopicAlreadyExists:
		return &kafkaErr{ke, what + " already exists"}
	}
	if serverMsg != "" {
		return &kafkaErr{ke, what + ": " + serverMsg}
	}
	return &kafkaErr{ke, fmt.Sprintf("%s: %s (%s)", what, strings.TrimSuffix(ke.Description, "."), ke.Message)}
}

// kafkaErr is a Kafka error with a message for people.
type kafkaErr struct {
	ke  *kerr.Error
	msg string
}

func (e *kafkaErr) Error() string { return e.msg }
func (e *kafkaErr) Unwrap() error { return e.ke }

// clientFlags are the flags every client command has.
type clientFlags struct {
	brokers string
	httpURL string
	output  string
	timeout time.Duration
	cmd     *cobra.Command // the command the flags are on (for security)
}

// security returns the root command's security flags.
func (f *clientFlags) security() *clientSecurity { return securityOf(f.cmd) }

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// addClientFlags registers the client flags as persistent flags of cmd,
// and makes flag errors of cmd and its subcommands usage errors.
func addClientFlags(cmd *cobra.Command, f *clientFlags) {
	f.cmd = cmd
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.brokers, "brokers", envOr("HERALD_BROKERS", "127.0.0.1:9092"), "Kafka `HOST:PORT`s of the server, comma-separated (env HERALD_BROKERS)")
	pf.StringVar(&f.httpURL, "http", envOr("HERALD_HTTP", "http://127.0.0.1:8080"), "`URL` of the server's HTTP API, for commands that use it (env HERALD_HTTP)")
	pf.StringVarP(&f.output, "output", "o", "table", "output `format`: table (for people) or json (for scripts)")
	pf.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the server to answer")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return commandError(c, usageErrorf("%v (see %s --help)", err, c.CommandPath()))
	})
}

// check validates the client flags.
func (f *clientFlags) check() error {
	if f.output != "table" && f.output != "json" {
		return usageErrorf("-o %q: want table or json", f.output)
	}
	if f.timeout <= 0 {
		return usageErrorf("--timeout %s: want a positive duration", f.timeout)
	}
	if _, err := f.seeds(); err != nil {
		return err
	}
	return nil
}

func (f *clientFlags) json() bool { return f.output == "json" }

// seeds splits --brokers into addresses, adding Kafka's port 9092 where
// none is given.
func (f *clientFlags) seeds() ([]string, error) {
	var out []string
	for _, s := range strings.Split(f.brokers, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(s); err != nil {
			if strings.Contains(err.Error(), "missing port") {
				s = net.JoinHostPort(strings.Trim(s, "[]"), "9092")
			} else {
				return nil, usageErrorf("--brokers %q: want HOST:PORT[,HOST:PORT...]", f.brokers)
			}
		} else if port == "" {
			return nil, usageErrorf("--brokers %q: want HOST:PORT[,HOST:PORT...]", f.brokers)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, usageErrorf("--brokers %q: want HOST:PORT[,HOST:PORT...]", f.brokers)
	}
	return out, nil
}

// newClient connects a Kafka client; extra options come after the common
// ones, so they win.
func (f *clientFlags) newClient(extra ...kgo.Opt) (*kgo.Client, error) {
	seeds, err := f.seeds()
	if err != nil {
		return nil, err
	}
	sec, err := f.security().kgoOpts()
	if err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.ClientID("herald-cli"),
		kgo.DialTimeout(min(f.timeout, 10*time.Second)),
		kgo.RetryTimeout(f.timeout),
	}, sec...)
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return cl, nil
}

// newAdmin connects an admin client; closing it closes its kgo client.
func (f *clientFlags) newAdmin() (*kadm.Client, error) {
	cl, err := f.newClient()
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32(min(f.timeout, time.Hour) / time.Millisecond))
	return adm, nil
}

// admin connects an admin client and bounds ctx by --timeout; done closes
// both.
func (f *clientFlags) admin(ctx context.Context) (*kadm.Client, context.Context, func(), error) {
	adm, err := f.newAdmin()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := f.withTimeout(ctx)
	return adm, ctx, func() { cancel(); adm.Close() }, nil
}

// withTimeout bounds one operation against the server by --timeout.
func (f *clientFlags) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.timeout)
}

// requestError explains an error of a whole request: most often, that the
// server did not answer.
func (f *clientFlags) requestError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer from %s within %s (--timeout): is the server running?", f.brokers, f.timeout)
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return fmt.Errorf("cannot reach %s: %v", f.brokers, ne.Err)
	}
	return err
}

// parseKVs parses repeated "--flag k=v" values.
func parseKVs(flag string, kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--%s %q: want KEY=VALUE", flag, kv)
		}
		if _, dup := out[k]; dup {
			return nil, usageErrorf("--%s %q: %s is set twice", flag, kv, k)
		}
		out[k] = v
	}
	return out, nil
}

// parentCommand makes cmd a command that only holds subcommands: alone it
// prints its help; with an unknown subcommand it is a usage error.
func parentCommand(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return commandError(c, usageErrorf("unknown command %q (see %s --help)", args[0], c.CommandPath()))
		}
		return nil
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return cmd
}
