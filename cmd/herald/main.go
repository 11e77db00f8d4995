// Command herald is Herald's server and command-line client: one binary with
// a subcommand per resource. Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "herald",
		Short: "Herald: an event streaming platform in one binary",
		Long: `Herald stores and serves events: a durable commit log, the Kafka wire
protocol, an HTTP API, and the services built on them.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addClientSecurityFlags(root.PersistentFlags(), &clientSecurity{})
	root.AddCommand(newServeCmd(), newBenchCmd(), newUserCmd())
	root.AddCommand(newTopicCmd(), newProduceCmd(), newConsumeCmd(), newGroupCmd(), newDLQCmd(), newEventCmd(), newSchemaCmd(), newExitCodesHelp())
	root.AddCommand(newStoreCmd())
	root.AddCommand(newRuleCmd(), newArchiveCmd(), newReplayCmd())
	root.AddCommand(newSagaCmd(), newDemoCmd())
	root.AddCommand(newSubCmd())
	root.AddCommand(newQueryCmd(), newCEPCmd())
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "herald:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
