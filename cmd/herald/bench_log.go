package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newBenchLogCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "log",
		Short: "Benchmark the storage engine (commit log) directly, without the network",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("not built yet")
		},
	}
}
