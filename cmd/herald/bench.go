package main

import "github.com/spf13/cobra"

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure Herald's performance",
	}
	cmd.AddCommand(append([]*cobra.Command{newBenchLogCmd(), newBenchSchemaLookupsCmd()}, newBenchKafkaCmds()...)...)
	return cmd
}
