// Package orders is Herald's running example: an Order service whose orders
// go through Payment, Inventory and Shipping, with Analytics counting
// completed orders and revenue per hour, run either as a choreography
// (services react to each other's events) or as an orchestration (a saga
// of the saga engine sends each service its command).
//
// Compensation when shipping fails is ShippingFailed -> ReleaseInventory ->
// RefundPayment -> CancelOrder in both modes. Every service records what it
// did by input id, so a redelivered event or a resent command is answered
// from the record, never executed twice, and services can be "crashed"
// (their subscribers stopped mid-batch and restarted) at any time.
//
// Run places the orders, waits until every one has ended, and checks the
// books: money charged minus refunded equals the revenue of completed
// orders (as Payment and Analytics each see it), and stock taken equals
// the quantity of completed orders.
package orders

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/event"
	"github.com/heraldhq/herald/saga"
)

// Modes.
const (
	Choreography  = "choreography"
	Orchestration = "orchestration"
)

// Config configures a run.
type Config struct {
	Brokers []string
	// Mode is Choreography or Orchestration.
	Mode string
	// Orders to place (default 100).
	Orders int
	// PaymentDeclineRate and ShippingFailureRate are fractions in [0, 1].
	PaymentDeclineRate, ShippingFailureRate float64
	// CrashEvery, when positive, crashes one service (in turn, the saga
	// engine included) every CrashEvery: its subscriber stops without
	// waiting for in-flight events, and restarts. A crash is skipped while
	// no service has handled a new input since the last one, so the flow
	// always moves however slow the machine.
	CrashEvery time.Duration
	// Timeout bounds the wait for every order to end (default 2 minutes).
	Timeout time.Duration
	// Prefix names the run's topics and groups (default
	// "demo.orders.<random>.", so runs never mix).
	Prefix string
	// Stock per SKU at the start (default 1,000,000).
	Stock int
	// Seed makes the faults and orders reproducible (default random).
	Seed uint64
	// Progress, when not nil, is called about every second.
	Progress func(Progress)
	Logger   *slog.Logger
	// TracerProvider gets the spans of the run (nil: the global provider):
	// each order is one trace, from "place order" through the saga
	// engine's commands and the services' consume, handle and publish
	// spans.
	TracerProvider trace.TracerProvider
}

// Progress is how far a run is.
type Progress struct {
	Placed, Completed, Compensated, Total int
	Elapsed                               time.Duration
}

// Summary is the outcome of a run.
type Summary struct {
	Mode        string `json:"mode"`
	Orders      int    `json:"orders"`
	Completed   int    `json:"completed"`
	Compensated int    `json:"compensated"`
	Stuck       int    `json:"stuck"`
	// Declined and ShippingFailed count the faults injected.
	Declined       int `json:"paymentDeclined"`
	ShippingFailed int `json:"shippingFailed"`
	Crashes        int `json:"crashes"`
	// Money in cents.
	Charged          int64 `json:"charged"`
	Refunded         int64 `json:"refunded"`
	Revenue          int64 `json:"revenue"`          // of completed orders, as the Order service knows it
	AnalyticsRevenue int64 `json:"analyticsRevenue"` // as Analytics counted it
	AnalyticsOrders  int   `json:"analyticsOrders"`
	// Stock in units, over all SKUs.
	StockStart     int          `json:"stockStart"`
	StockEnd       int          `json:"stockEnd"`
	UnitsCompleted int          `json:"unitsCompleted"`
	Hourly         []HourlyStat `json:"hourly"`
	// Problems lists every balance that is off and every stuck order
	// (the first few); empty when the run is sound.
	Problems []string      `json:"problems"`
	Duration time.Duration `json:"durationNs"`
	Seconds  float64       `json:"seconds"`
}

// OK reports whether every order ended and the books balance.
func (s *Summary) OK() bool { return s.Stuck == 0 && len(s.Problems) == 0 }

// HourlyStat is Analytics' count and revenue for one hour.
type HourlyStat struct {
	Hour    time.Time `json:"hour"`
	Orders  int       `json:"orders"`
	Revenue int64     `json:"revenue"`
}

// Order is the data every event and command of an order carries.
type Order struct {
	ID     string `json:"orderId"`
	SKU    string `json:"sku"`
	Qty    int    `json:"qty"`
	Amount int64  `json:"amount"` // cents
}

var skus = []string{"sku-1", "sku-2", "sku-3", "sku-4", "sku-5"}

// topics of a run.
type topics struct {
	events, payments, inventory, shipping, orders string
	inbox, state, defs                            string
}

func (c *Config) topics() topics {
	p := c.Prefix
	return topics{events: p + "events", payments: p + "payments", inventory: p + "inventory", shipping: p + "shipping",
		orders: p + "orders", inbox: p + "saga.inbox", state: p + "saga.state", defs: p + "saga.definitions"}
}

// Definition is the order saga of the orchestration mode.
func Definition(t topics, stepTimeout time.Duration) *saga.Definition {
	comp := func(typ, topic, ok string) *saga.Compensation {
		return &saga.Compensation{Command: saga.Command{Type: typ, Topic: topic}, Success: []string{ok},
			Timeout: saga.Duration(stepTimeout), Retry: saga.RetryPolicy{MaxAttempts: 10, Backoff: saga.Duration(100 * time.Millisecond)}}
	}
	retry := saga.RetryPolicy{MaxAttempts: 5}
	return &saga.Definition{
		Name: "order",
		Steps: []saga.Step{
			{Name: "payment", Command: saga.Command{Type: "PaymentCommand", Topic: t.payments},
				Success: []string{"PaymentProcessed"}, Failure: []string{"PaymentDeclined"},
				Timeout: saga.Duration(stepTimeout), Retry: retry, Compensation: comp("RefundPayment", t.payments, "PaymentRefunded")},
			{Name: "inventory", Command: saga.Command{Type: "ReserveInventoryCommand", Topic: t.inventory},
				Success: []string{"InventoryReserved"}, Failure: []string{"InventoryUnavailable"},
				Timeout: saga.Duration(stepTimeout), Retry: retry, Compensation: comp("ReleaseInventory", t.inventory, "InventoryReleased")},
			{Name: "shipping", Command: saga.Command{Type: "CreateShipmentCommand", Topic: t.shipping},
				Success: []string{"ShipmentCreated"}, Failure: []string{"ShippingFailed"},
				Timeout: saga.Duration(stepTimeout), Retry: retry, Compensation: comp("CancelShipment", t.shipping, "ShipmentCancelled")},
			{Name: "complete", Command: saga.Command{Type: "CompleteOrderCommand", Topic: t.orders},
				Success: []string{"OrderCompleted"}, Timeout: saga.Duration(stepTimeout), Retry: retry},
		},
		OnCompensated: &saga.Command{Type: "CancelOrder", Topic: t.orders},
	}
}

// chance is a deterministic draw in [0, 1) per order and fault, so a
// resent command gets the same answer.
func chance(seed uint64, orderID, what string) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s/%s", seed, orderID, what)
	return float64(h.Sum64()>>11) / (1 << 53)
}

// output is an event a service published for an input, kept to answer a
// redelivery with the same events (same ids, so consumers dedup them).
type output struct {
	topic string
	ev    *event.Event
}

// ledger is a service's durable-in-spirit memory: what it did per input
// id. It outlives the service's crashes, as a database would.
type ledger struct {
	mu    sync.Mutex
	done  map[string][]output
	dups  int
	fresh atomic.Int64 // inputs handled the first time
}

func newLedger() *ledger { return &ledger{done: map[string][]output{}} }

// once runs f for input in unless it ran before, then publishes what f
// decided (or what it decided the first time). f runs under the ledger's
// lock, so its effects and their record are one step.
func (l *ledger) once(ctx context.Context, in *event.Event, f func() []output) error {
	l.mu.Lock()
	outs, seen := l.done[in.ID]
	if seen {
		l.dups++
	} else {
		outs = f()
		l.done[in.ID] = outs
		l.fresh.Add(1)
	}
	l.mu.Unlock()
	for _, o := range outs {
		if err := client.Publish(ctx, o.topic, o.ev.Clone()); err != nil {
			return err
		}
	}
	return nil
}

// emit builds an event caused by in with a deterministic id.
func emit(in *event.Event, source, typ string, o Order) *event.Event {
	e := event.NewFrom(in, source, typ)
	e.ID = in.ID + ">" + typ
	e.PartitionKey = o.ID
	e.Data, _ = json.Marshal(o)
	e.DataContentType = "application/json"
	return e
}

// reply builds a saga reply with a deterministic id.
func reply(cmd *event.Event, source, typ string, o Order) output {
	data, _ := json.Marshal(o)
	r := saga.Reply(cmd, source, typ, data)
	r.ID = cmd.ID + ">" + typ
	return output{topic: saga.ReplyTopic(cmd), ev: r}
}

// service is one consumer group running a handler; crash stops it without
// waiting and starts it again.
type service struct {
	name    string
	brokers []string
	group   string
	topics  []string
	h       client.HandlerFunc
	log     *slog.Logger
	tp      trace.TracerProvider

	mu     sync.Mutex
	sub    *client.Subscriber
	done   chan struct{}
	failed error
}

func (s *service) start() error {
	sub, err := client.NewSubscriber(s.brokers, s.group, s.topics, s.h,
		client.WithLogger(s.log), client.WithTracerProvider(s.tp), client.WithMiddleware(client.Trace()), client.WithShutdownTimeout(time.Millisecond), client.WithMaxPollRecords(500),
		client.WithDeliveryMode(client.ExactlyOnce), client.WithTransactionalID(s.group), client.WithTransactionTimeout(10*time.Second),
		client.WithFailurePause(100*time.Millisecond),
		client.WithKgoOptions(kgo.SessionTimeout(6*time.Second), kgo.RebalanceTimeout(5*time.Second)))
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sub.Run(context.Background()); err != nil {
			s.mu.Lock()
			s.failed = err
			s.mu.Unlock()
		}
	}()
	s.mu.Lock()
	s.sub, s.done = sub, done
	s.mu.Unlock()
	return nil
}

func (s *service) stop() {
	s.mu.Lock()
	sub, done := s.sub, s.done
	s.mu.Unlock()
	if sub != nil {
		sub.Close()
		<-done
	}
}

func (s *service) crash() error {
	s.stop()
	return s.start()
}

// world is the services' state.
type world struct {
	cfg  Config
	t    topics
	seed uint64

	payments  *ledger
	inventory *ledger
	shipping  *ledger
	orderSvc  *ledger
	analytics *ledger

	mu       sync.Mutex
	charged  map[string]int64 // order -> amount charged
	refunded map[string]int64
	stock    map[string]int
	reserved map[string]int // order -> units reserved and not released
	status   map[string]string
	placed   map[string]Order
	hourly   map[time.Time]*HourlyStat
	declined int
	shipFail int
}

func (w *world) order(e *event.Event) (Order, error) {
	var o Order
	if err := json.Unmarshal(e.Data, &o); err != nil || o.ID == "" {
		return o, client.Permanent(fmt.Errorf("event %s has no order: %v", e.ID, err))
	}
	return o, nil
}

// The services' actions; each returns the reply type. They run under
// their ledger's lock (once), so each happens once per input.

func (w *world) pay(o Order) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if chance(w.seed, o.ID, "decline") < w.cfg.PaymentDeclineRate {
		w.declined++
		return "PaymentDeclined"
	}
	w.charged[o.ID] += o.Amount
	return "PaymentProcessed"
}

func (w *world) refund(o Order) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refunded[o.ID] += o.Amount
	return "PaymentRefunded"
}

func (w *world) reserve(o Order) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stock[o.SKU] < o.Qty {
		return "InventoryUnavailable"
	}
	w.stock[o.SKU] -= o.Qty
	w.reserved[o.ID] += o.Qty
	return "InventoryReserved"
}

func (w *world) release(o Order) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stock[o.SKU] += o.Qty
	w.reserved[o.ID] -= o.Qty
	return "InventoryReleased"
}

func (w *world) ship(o Order) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if chance(w.seed, o.ID, "ship") < w.cfg.ShippingFailureRate {
		w.shipFail++
		return "ShippingFailed"
	}
	return "ShipmentCreated"
}

func (w *world) end(o Order, status string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status[o.ID] == "" {
		w.status[o.ID] = status
	}
}

func (w *world) count(e *event.Event, o Order) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := e.Time.UTC().Truncate(time.Hour)
	s := w.hourly[h]
	if s == nil {
		s = &HourlyStat{Hour: h}
		w.hourly[h] = s
	}
	s.Orders++
	s.Revenue += o.Amount
}

// Run runs the demo: it creates the run's topics, starts the services,
// places cfg.Orders orders, waits until each has ended (or cfg.Timeout),
// stops everything and returns the summary. It returns an error only when
// the run could not take place; a stuck order or an unbalanced book is in
// the Summary (Summary.OK).
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if cfg.Mode != Choreography && cfg.Mode != Orchestration {
		return nil, fmt.Errorf("mode %q: want %s or %s", cfg.Mode, Choreography, Orchestration)
	}
	if cfg.Orders <= 0 {
		cfg.Orders = 100
	}
	if cfg.PaymentDeclineRate < 0 || cfg.PaymentDeclineRate > 1 || cfg.ShippingFailureRate < 0 || cfg.ShippingFailureRate > 1 {
		return nil, errors.New("fault rates must be between 0 and 1")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Stock <= 0 {
		cfg.Stock = 1_000_000
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("demo.orders.%x.", rand.Uint32())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	w := &world{cfg: cfg, t: cfg.topics(), seed: cfg.Seed,
		payments: newLedger(), inventory: newLedger(), shipping: newLedger(), orderSvc: newLedger(), analytics: newLedger(),
		charged: map[string]int64{}, refunded: map[string]int64{}, stock: map[string]int{}, reserved: map[string]int{},
		status: map[string]string{}, placed: map[string]Order{}, hourly: map[time.Time]*HourlyStat{}}
	for _, s := range skus {
		w.stock[s] = cfg.Stock
	}
	if err := createTopics(ctx, cfg, w.t); err != nil {
		return nil, err
	}
	start := time.Now()
	var svcs []*service
	var engine *saga.Engine
	var engineMu sync.Mutex
	var err error
	if cfg.Mode == Choreography {
		svcs = w.choreography()
	} else {
		svcs = w.orchestration()
		engine, err = w.startEngine(ctx)
		if err != nil {
			return nil, err
		}
	}
	defer func() {
		engineMu.Lock()
		if engine != nil {
			engine.Close()
		}
		engineMu.Unlock()
		for _, s := range svcs {
			s.stop()
		}
	}()
	for _, s := range svcs {
		if err := s.start(); err != nil {
			return nil, err
		}
	}

	// Crashes: one service in turn (and the engine) every CrashEvery.
	crashes := 0
	stopCrash := make(chan struct{})
	crashDone := make(chan struct{})
	go func() {
		defer close(crashDone)
		if cfg.CrashEvery <= 0 {
			return
		}
		t := time.NewTicker(cfg.CrashEvery)
		defer t.Stop()
		// The engine (orchestration) goes first, then each service.
		var targets []func()
		if engine != nil {
			targets = append(targets, func() {
				cfg.Logger.Info("crashing the saga engine")
				engineMu.Lock()
				defer engineMu.Unlock()
				engine.Close()
				e, err := w.startEngine(context.Background())
				if err != nil {
					cfg.Logger.Error("restarting the saga engine failed", "err", err)
					return
				}
				engine = e
			})
		}
		for _, s := range svcs {
			targets = append(targets, func() {
				cfg.Logger.Info("crashing service", "service", s.name)
				if err := s.crash(); err != nil {
					cfg.Logger.Error("restarting service failed", "service", s.name, "err", err)
				}
			})
		}
		// NB: a crash waits until the services have handled a new input
		// since the last one. On a slow machine restarts and rebalances
		// can outlast CrashEvery, and crashes at a fixed rate would then
		// stop all progress; this way the flow always moves.
		last := int64(-1)
		for i := 0; ; {
			select {
			case <-stopCrash:
				return
			case <-t.C:
			}
			if n := w.freshInputs(); n == last {
				continue
			} else {
				last = n
			}
			targets[i%len(targets)]()
			crashes++
			i++
		}
	}()

	if err := w.place(ctx); err != nil {
		close(stopCrash)
		<-crashDone
		return nil, err
	}
	deadline := time.Now().Add(cfg.Timeout)
	lastProgress := time.Now()
	for {
		p := w.progress(start)
		if p.Completed+p.Compensated == cfg.Orders && w.analyticsCaughtUp() {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		if cfg.Progress != nil && time.Since(lastProgress) >= time.Second {
			cfg.Progress(p)
			lastProgress = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stopCrash)
	<-crashDone
	sum := w.summary(time.Since(start))
	sum.Crashes = crashes
	if cfg.Progress != nil {
		cfg.Progress(w.progress(start))
	}
	return sum, nil
}

func createTopics(ctx context.Context, cfg Config, t topics) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	names := []string{t.events}
	if cfg.Mode == Orchestration {
		names = append(names, t.payments, t.inventory, t.shipping, t.orders)
	}
	resp, err := adm.CreateTopics(ctx, 8, 1, nil, names...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

func (w *world) startEngine(ctx context.Context) (*saga.Engine, error) {
	return saga.Start(ctx, saga.Config{
		Brokers: w.cfg.Brokers, Inbox: w.t.inbox, StateTopic: w.t.state, DefinitionsTopic: w.t.defs,
		Group: w.cfg.Prefix + "engine", Definitions: []*saga.Definition{Definition(w.t, 5*time.Second)},
		Logger: w.cfg.Logger, TracerProvider: w.cfg.TracerProvider,
	})
}

func (w *world) svc(name string, topics []string, h client.HandlerFunc) *service {
	return &service{name: name, brokers: w.cfg.Brokers, group: w.cfg.Prefix + name, topics: topics, h: h,
		log: w.cfg.Logger.With("service", name), tp: w.cfg.TracerProvider}
}

// place publishes the orders: OrderCreated events (choreography) or saga
// start requests (orchestration), each in a trace of its own that starts
// with a "place order" span.
func (w *world) place(ctx context.Context) error {
	pub, err := client.NewPublisher(w.cfg.Brokers, client.WithTracerProvider(w.cfg.TracerProvider))
	if err != nil {
		return err
	}
	defer pub.Close()
	tracer := w.cfg.TracerProvider.Tracer("github.com/heraldhq/herald/examples/orders")
	r := rand.New(rand.NewPCG(w.seed, 1))
	def := Definition(w.t, 5*time.Second)
	def.Version = 1
	topic := w.t.events
	if w.cfg.Mode == Orchestration {
		topic = w.t.inbox
	}
	var mu sync.Mutex
	var firstErr error
	for i := range w.cfg.Orders {
		o := Order{ID: fmt.Sprintf("order-%06d", i+1), SKU: skus[r.IntN(len(skus))], Qty: 1 + r.IntN(3), Amount: int64(1000 + r.IntN(49000))}
		w.mu.Lock()
		w.placed[o.ID] = o
		w.mu.Unlock()
		data, _ := json.Marshal(o)
		var e *event.Event
		if w.cfg.Mode == Choreography {
			e = event.New("/orders", "OrderCreated")
			e.ID, e.PartitionKey, e.Data, e.DataContentType = o.ID+"/created", o.ID, data, "application/json"
		} else {
			e = saga.StartRequest(def, o.ID, data)
		}
		octx, span := tracer.Start(ctx, "place order", trace.WithNewRoot(),
			trace.WithAttributes(attribute.String("order.id", o.ID)))
		pub.PublishAsync(octx, topic, e, func(err error) {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
			span.End()
		})
	}
	if err := pub.Flush(ctx); err != nil {
		return fmt.Errorf("place orders: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return fmt.Errorf("place orders: %w", firstErr)
	}
	return nil
}

// choreography: every service reads the events topic and reacts.
func (w *world) choreography() []*service {
	t := w.t.events
	on := func(l *ledger, f func(in *event.Event, o Order) []output) saga.Reaction {
		return func(ctx context.Context, in *event.Event) error {
			o, err := w.order(in)
			if err != nil {
				return err
			}
			return l.once(ctx, in, func() []output { return f(in, o) })
		}
	}
	one := func(in *event.Event, source, typ string, o Order) []output {
		return []output{{topic: t, ev: emit(in, source, typ, o)}}
	}
	payment := saga.NewReactor("/payment").
		On("OrderCreated", on(w.payments, func(in *event.Event, o Order) []output { return one(in, "/payment", w.pay(o), o) })).
		On("InventoryReleased", on(w.payments, func(in *event.Event, o Order) []output { return one(in, "/payment", w.refund(o), o) })).
		On("InventoryUnavailable", on(w.payments, func(in *event.Event, o Order) []output { return one(in, "/payment", w.refund(o), o) }))
	inventory := saga.NewReactor("/inventory").
		On("PaymentProcessed", on(w.inventory, func(in *event.Event, o Order) []output { return one(in, "/inventory", w.reserve(o), o) })).
		On("ShippingFailed", on(w.inventory, func(in *event.Event, o Order) []output { return one(in, "/inventory", w.release(o), o) }))
	shipping := saga.NewReactor("/shipping").
		On("InventoryReserved", on(w.shipping, func(in *event.Event, o Order) []output { return one(in, "/shipping", w.ship(o), o) }))
	end := func(status, typ string) saga.Reaction {
		return on(w.orderSvc, func(in *event.Event, o Order) []output {
			w.end(o, status)
			return one(in, "/orders", typ, o)
		})
	}
	orders := saga.NewReactor("/orders").
		On("ShipmentCreated", end("completed", "OrderCompleted")).
		On("PaymentDeclined", end("compensated", "OrderCancelled")).
		On("PaymentRefunded", end("compensated", "OrderCancelled"))
	return []*service{
		w.svc("orders", []string{t}, orders.Handler()),
		w.svc("payment", []string{t}, payment.Handler()),
		w.svc("inventory", []string{t}, inventory.Handler()),
		w.svc("shipping", []string{t}, shipping.Handler()),
		w.svc("analytics", []string{t}, w.analyticsHandler()),
	}
}

func (w *world) analyticsHandler() client.HandlerFunc {
	return saga.NewReactor("/analytics").On("OrderCompleted", func(ctx context.Context, in *event.Event) error {
		o, err := w.order(in)
		if err != nil {
			return err
		}
		return w.analytics.once(ctx, in, func() []output { w.count(in, o); return nil })
	}).Handler()
}

// orchestration: each service answers its commands; the Order service also
// publishes OrderCompleted and OrderCancelled for Analytics.
func (w *world) orchestration() []*service {
	handle := func(l *ledger, source string, acts map[string]func(Order) string) client.HandlerFunc {
		return func(ctx context.Context, cmd *event.Event) error {
			act, ok := acts[cmd.Type]
			if !ok {
				return nil
			}
			o, err := w.order(cmd)
			if err != nil {
				return err
			}
			return l.once(ctx, cmd, func() []output { return []output{reply(cmd, source, act(o), o)} })
		}
	}
	orders := func(ctx context.Context, cmd *event.Event) error {
		o, err := w.order(cmd)
		if err != nil {
			return err
		}
		switch cmd.Type {
		case "CompleteOrderCommand":
			return w.orderSvc.once(ctx, cmd, func() []output {
				w.end(o, "completed")
				return []output{reply(cmd, "/orders", "OrderCompleted", o), {topic: w.t.events, ev: emit(cmd, "/orders", "OrderCompleted", o)}}
			})
		case "CancelOrder":
			return w.orderSvc.once(ctx, cmd, func() []output {
				w.end(o, "compensated")
				return []output{{topic: w.t.events, ev: emit(cmd, "/orders", "OrderCancelled", o)}}
			})
		}
		return nil
	}
	return []*service{
		w.svc("orders", []string{w.t.orders}, orders),
		w.svc("payment", []string{w.t.payments}, handle(w.payments, "/payment", map[string]func(Order) string{
			"PaymentCommand": w.pay, "RefundPayment": w.refund})),
		w.svc("inventory", []string{w.t.inventory}, handle(w.inventory, "/inventory", map[string]func(Order) string{
			"ReserveInventoryCommand": w.reserve, "ReleaseInventory": w.release})),
		w.svc("shipping", []string{w.t.shipping}, handle(w.shipping, "/shipping", map[string]func(Order) string{
			"CreateShipmentCommand": w.ship, "CancelShipment": func(Order) string { return "ShipmentCancelled" }})),
		w.svc("analytics", []string{w.t.events}, w.analyticsHandler()),
	}
}

// freshInputs is how many inputs the services have handled, not counting
// redeliveries.
func (w *world) freshInputs() int64 {
	var n int64
	for _, l := range []*ledger{w.payments, w.inventory, w.shipping, w.orderSvc, w.analytics} {
		n += l.fresh.Load()
	}
	return n
}

func (w *world) progress(start time.Time) Progress {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := Progress{Placed: len(w.placed), Total: w.cfg.Orders, Elapsed: time.Since(start)}
	for _, s := range w.status {
		if s == "completed" {
			p.Completed++
		} else {
			p.Compensated++
		}
	}
	return p
}

func (w *world) analyticsCaughtUp() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, done := 0, 0
	for _, s := range w.hourly {
		n += s.Orders
	}
	for _, s := range w.status {
		if s == "completed" {
			done++
		}
	}
	return n >= done
}

func (w *world) summary(d time.Duration) *Summary {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &Summary{Mode: w.cfg.Mode, Orders: w.cfg.Orders, Declined: w.declined, ShippingFailed: w.shipFail,
		Duration: d, Seconds: d.Seconds(), StockStart: w.cfg.Stock * len(skus), Problems: []string{}}
	problem := func(format string, args ...any) {
		if len(s.Problems) < 20 {
			s.Problems = append(s.Problems, fmt.Sprintf(format, args...))
		}
	}
	var stuck []string
	for id, o := range w.placed {
		switch w.status[id] {
		case "completed":
			s.Completed++
			s.Revenue += o.Amount
			s.UnitsCompleted += o.Qty
			if got := w.charged[id] - w.refunded[id]; got != o.Amount {
				problem("completed %s: charged %d net, want %d", id, got, o.Amount)
			}
			if w.reserved[id] != o.Qty {
				problem("completed %s: %d units reserved, want %d", id, w.reserved[id], o.Qty)
			}
		case "compensated":
			s.Compensated++
			if got := w.charged[id] - w.refunded[id]; got != 0 {
				problem("compensated %s: charged %d net, want 0", id, got)
			}
			if w.reserved[id] != 0 {
				problem("compensated %s: %d units still reserved", id, w.reserved[id])
			}
		default:
			stuck = append(stuck, id)
		}
	}
	slices.Sort(stuck)
	s.Stuck = len(stuck)
	if len(stuck) > 0 {
		problem("%d orders stuck, e.g. %v", len(stuck), stuck[:min(5, len(stuck))])
	}
	for _, v := range w.charged {
		s.Charged += v
	}
	for _, v := range w.refunded {
		s.Refunded += v
	}
	for _, v := range w.stock {
		s.StockEnd += v
	}
	for _, h := range w.hourly {
		s.Hourly = append(s.Hourly, *h)
		s.AnalyticsOrders += h.Orders
		s.AnalyticsRevenue += h.Revenue
	}
	slices.SortFunc(s.Hourly, func(a, b HourlyStat) int { return a.Hour.Compare(b.Hour) })
	if s.Charged-s.Refunded != s.Revenue {
		problem("money: charged %d - refunded %d = %d, but completed orders are worth %d", s.Charged, s.Refunded, s.Charged-s.Refunded, s.Revenue)
	}
	if s.AnalyticsRevenue != s.Revenue || s.AnalyticsOrders != s.Completed {
		problem("analytics: %d orders worth %d, but %d completed worth %d", s.AnalyticsOrders, s.AnalyticsRevenue, s.Completed, s.Revenue)
	}
	if s.StockStart-s.StockEnd != s.UnitsCompleted {
		problem("stock: %d units taken, but completed orders hold %d", s.StockStart-s.StockEnd, s.UnitsCompleted)
	}
	return s
}
