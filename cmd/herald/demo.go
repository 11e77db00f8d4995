package main

import "github.com/spf13/cobra"

func newDemoCmd() *cobra.Command {
	return parentCommand(&cobra.Command{Use: "demo", Short: "Run demonstrations against a Herald server"})
}
