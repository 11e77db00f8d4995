package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldhq/herald/examples/orders"
)

func newDemoCmd() *cobra.Command {
	cmd := parentCommand(&cobra.Command{
		Use:   "demo",
		Short: "Run Herald's demonstrations against a server",
	})
	cmd.AddCommand(newDemoOrdersCmd())
	return cmd
}

func newDemoOrdersCmd() *cobra.Command {
	cf := &clientFlags{}
	var (
		mode          string
		n             int
		decline, ship float64
		crashEvery    time.Duration
		wait          time.Duration
		seed          uint64
	)
	cmd := &cobra.Command{
		Use:   "orders",
		Short: "Run the order flow: Order, Payment, Inventory, Shipping and Analytics services",
		Long: `Run the order flow against a Herald server: start the Order, Payment,
Inventory, Shipping and Analytics services (each its own consumer group, in
this process), place --orders orders, wait until every one has completed or
been compensated, and print a summary: outcomes, money and stock balances,
Analytics' orders and revenue per hour, and the time taken.

--mode choreography: services react to each other's events
  (OrderCreated -> PaymentProcessed -> InventoryReserved -> ShipmentCreated ->
  OrderCompleted). --mode orchestration: a saga engine sends each service its
  command (PaymentCommand, ReserveInventoryCommand, CreateShipmentCommand,
  CompleteOrderCommand). When shipping fails, both compensate:
  ShippingFailed -> ReleaseInventory -> RefundPayment -> CancelOrder.

Faults: --payment-decline-rate and --shipping-failure-rate (fractions of
orders), --crash-every D (every D one service in turn is stopped without
waiting for its in-flight events, which are redelivered, and restarted; in
orchestration mode the saga engine takes its turn too).

The topics of a run are named demo.orders.<random>.*, so runs never mix.
Exits 1 if an order is stuck after --wait or a balance is off.`,
		Example: `  herald demo orders --mode orchestration --orders 1000 --payment-decline-rate 0.1 --shipping-failure-rate 0.05
  herald demo orders --mode choreography --orders 200 --crash-every 2s -o json`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cf.check(); err != nil {
				return commandError(cmd, err)
			}
			switch {
			case mode != orders.Choreography && mode != orders.Orchestration:
				return commandError(cmd, usageErrorf("--mode %q: want choreography or orchestration", mode))
			case n < 1 || n > 1_000_000:
				return commandError(cmd, usageErrorf("--orders %d: want 1 to 1000000", n))
			case decline < 0 || decline > 1:
				return commandError(cmd, usageErrorf("--payment-decline-rate %g: want a fraction from 0 to 1", decline))
			case ship < 0 || ship > 1:
				return commandError(cmd, usageErrorf("--shipping-failure-rate %g: want a fraction from 0 to 1", ship))
			case crashEvery < 0:
				return commandError(cmd, usageErrorf("--crash-every %s: want a positive duration", crashEvery))
			case wait <= 0:
				return commandError(cmd, usageErrorf("--wait %s: want a positive duration", wait))
			}
			seeds, _ := cf.seeds()
			errw := cmd.ErrOrStderr()
			cfg := orders.Config{Brokers: seeds, Mode: mode, Orders: n, PaymentDeclineRate: decline,
				ShippingFailureRate: ship, CrashEvery: crashEvery, Timeout: wait, Seed: seed,
				Logger: slog.New(slog.DiscardHandler),
				Progress: func(p orders.Progress) {
					fmt.Fprintf(errw, "%6.1fs  placed %d  completed %d  compensated %d  in flight %d\n",
						p.Elapsed.Seconds(), p.Placed, p.Completed, p.Compensated, p.Placed-p.Completed-p.Compensated)
				}}
			fmt.Fprintf(errw, "running the order flow (%s) with %d orders against %s\n", mode, n, cf.brokers)
			s, err := orders.Run(cmd.Context(), cfg)
			if err != nil {
				return commandError(cmd, cf.requestError(err))
			}
			out := cmd.OutOrStdout()
			if cf.json() {
				if err := printJSON(out, s); err != nil {
					return err
				}
			} else {
				printOrderSummary(out, s)
			}
			if !s.OK() {
				what := fmt.Sprintf("%d order(s) stuck", s.Stuck)
				if s.Stuck == 0 {
					what = "the balances are off: " + strings.Join(s.Problems, "; ")
				}
				return commandError(cmd, cliError(exitFailure, "%s", what))
			}
			return nil
		},
	}
	addClientFlags(cmd, cf)
	f := cmd.Flags()
	f.StringVar(&mode, "mode", orders.Orchestration, "`MODE`: choreography or orchestration")
	f.IntVar(&n, "orders", 100, "number of orders to place")
	f.Float64Var(&decline, "payment-decline-rate", 0.1, "fraction of payments declined")
	f.Float64Var(&ship, "shipping-failure-rate", 0.05, "fraction of shipments that fail (compensated)")
	f.DurationVar(&crashEvery, "crash-every", 0, "crash and restart one service in turn every `D` (0: never)")
	f.DurationVar(&wait, "wait", 5*time.Minute, "how long to wait for every order to end")
	f.Uint64Var(&seed, "seed", 0, "seed of the orders and faults, for a reproducible run (0: random)")
	return cmd
}

func money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s$%d.%02d", sign, cents/100, cents%100)
}

func printOrderSummary(w io.Writer, s *orders.Summary) {
	fmt.Fprintf(w, "Mode:          %s\n", s.Mode)
	fmt.Fprintf(w, "Orders:        %d in %.2fs (%.0f orders/s)\n", s.Orders, s.Seconds, float64(s.Orders)/max(s.Seconds, 1e-9))
	fmt.Fprintf(w, "Completed:     %d\n", s.Completed)
	fmt.Fprintf(w, "Compensated:   %d (payment declined %d, shipping failed %d)\n", s.Compensated, s.Declined, s.ShippingFailed)
	fmt.Fprintf(w, "Stuck:         %d\n", s.Stuck)
	if s.Crashes > 0 {
		fmt.Fprintf(w, "Crashes:       %d\n", s.Crashes)
	}
	fmt.Fprintf(w, "Money:         charged %s, refunded %s, net %s; completed orders worth %s\n",
		money(s.Charged), money(s.Refunded), money(s.Charged-s.Refunded), money(s.Revenue))
	fmt.Fprintf(w, "Stock:         %d units at start, %d now: %d taken; completed orders hold %d\n",
		s.StockStart, s.StockEnd, s.StockStart-s.StockEnd, s.UnitsCompleted)
	fmt.Fprintf(w, "Analytics:     %d orders, revenue %s\n", s.AnalyticsOrders, money(s.AnalyticsRevenue))
	rows := make([][]string, 0, len(s.Hourly))
	for _, h := range s.Hourly {
		rows = append(rows, []string{h.Hour.Local().Format("2006-01-02 15:00"), fmt.Sprint(h.Orders), money(h.Revenue)})
	}
	fmt.Fprintln(w)
	printTable(w, []string{"HOUR", "ORDERS", "REVENUE"}, rows)
	fmt.Fprintln(w)
	if s.OK() {
		fmt.Fprintln(w, "Balances:      OK")
		return
	}
	fmt.Fprintln(w, "Balances:      OFF")
	for _, p := range s.Problems {
		fmt.Fprintln(w, "  -", p)
	}
}
