package typed_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/heraldhq/herald/broker"
	"github.com/heraldhq/herald/eventlog/embedded"
	"github.com/heraldhq/herald/schema/registry"
	"github.com/heraldhq/herald/schema/typed"
)

func newClient(t *testing.T) *sr.Client {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	b, err := broker.Open(broker.Config{DataDir: t.TempDir(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	l, err := embedded.New(embedded.Config{Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.Open(context.Background(), registry.Config{Log: l, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// Three versions of one event, as a service's code evolves.
type paymentV1 struct {
	ID    string `json:"id"`
	Cents int64  `json:"cents"`
}

type paymentV2 struct {
	ID       string  `json:"id"`
	Cents    int64   `json:"cents"`
	Currency *string `json:"currency"` // added, optional
}

type Payment struct { // v3: a note, optional
	ID       string    `json:"id"`
	Cents    int64     `json:"cents"`
	Currency *string   `json:"currency"`
	Note     *string   `json:"note"`
	At       time.Time `json:"at"`
}

func TestEvolutionWithUpcasters(t *testing.T) {
	for _, format := range []typed.Format{typed.JSON, typed.Avro} {
		name := map[typed.Format]string{typed.JSON: "json", typed.Avro: "avro"}[format]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			cl := newClient(t)
			subject := "payments-value"
			c1, err := typed.New[paymentV1](ctx, cl, subject, format)
			if err != nil {
				t.Fatal(err)
			}
			old, err := c1.Encode(paymentV1{ID: "p1", Cents: 250})
			if err != nil {
				t.Fatal(err)
			}
			c2, err := typed.New[paymentV2](ctx, cl, subject, format)
			if err != nil {
				t.Fatalf("v2 (an optional field added): %v", err)
			}
			eur := "EUR"
			mid, err := c2.Encode(paymentV2{ID: "p2", Cents: 300, Currency: &eur})
			if err != nil {
				t.Fatal(err)
			}
			// CI before the deploy: v3 adds a required field.
			if msgs, err := typed.Check[Payment](ctx, cl, subject, format); err != nil || len(msgs) == 0 {
				t.Fatalf("Check of v3: %v, %v", msgs, err)
			}
			if msgs, err := typed.Check[paymentV2](ctx, cl, subject, format); err != nil || len(msgs) != 0 {
				t.Fatalf("Check of v2 again: %v, %v", msgs, err)
			}
			if format == typed.Avro {
				// Avro v3 adds a required "at": incompatible (no default).
				if _, err := typed.New[Payment](ctx, cl, subject, format); !errors.Is(err, typed.ErrIncompatible) || !strings.Contains(err.Error(), "/at") {
					t.Fatalf("v3 with a required field: %v", err)
				}
				if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subject); res[0].Err != nil {
					t.Fatal(res[0].Err)
				}
			} else if _, err := typed.New[Payment](ctx, cl, subject, format); !errors.Is(err, typed.ErrIncompatible) || !strings.Contains(err.Error(), "REQUIRED_PROPERTY_ADDED") {
				t.Fatalf("v3 with a required field: %v", err)
			} else if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, subject); res[0].Err != nil {
				t.Fatal(res[0].Err)
			}
			epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			c3, err := typed.New[Payment](ctx, cl, subject, format,
				// v1 events had no currency: they were all in euros.
				typed.Upcaster{From: 1, Fn: func(m map[string]any) (map[string]any, error) {
					m["currency"] = "EUR"
					return m, nil
				}},
				// v2 events had no time: the start of the year.
				typed.Upcaster{From: 2, Fn: func(m map[string]any) (map[string]any, error) {
					m["at"] = epoch.Format(time.RFC3339)
					return m, nil
				}},
			)
			if err != nil {
				t.Fatal(err)
			}
			if c3.Version() != 3 || c2.Version() != 2 || c1.Version() != 1 {
				t.Fatalf("versions %d %d %d", c1.Version(), c2.Version(), c3.Version())
			}
			note := "thanks"
			now := time.Now().UTC().Truncate(time.Millisecond)
			cur, err := c3.Encode(Payment{ID: "p3", Cents: 1, Currency: &eur, Note: &note, At: now})
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				data []byte
				want Payment
			}{
				{old, Payment{ID: "p1", Cents: 250, Currency: &eur, At: epoch}},
				{mid, Payment{ID: "p2", Cents: 300, Currency: &eur, At: epoch}},
				{cur, Payment{ID: "p3", Cents: 1, Currency: &eur, Note: &note, At: now}},
			} {
				got, err := c3.Decode(ctx, tc.data)
				if err != nil {
					t.Fatal(err)
				}
				got.At = got.At.UTC()
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("decoded %+v, want %+v", got, tc.want)
				}
			}
			if _, err := c3.Decode(ctx, []byte("plain")); err == nil {
				t.Fatal("plain bytes decoded")
			}
		})
	}
}

func TestDerivedSchemas(t *testing.T) {
	type Inner struct {
		Tags map[string]string `json:"tags"`
	}
	type Event struct {
		ID      string  `json:"id"`
		Skip    string  `json:"-"`
		Maybe   *int32  `json:"maybe"`
		Items   []Inner `json:"items"`
		Raw     []byte  `json:"raw,omitempty"`
		private int
	}
	js, err := typed.JSONSchemaFor(reflect.TypeOf(Event{}))
	if err != nil {
		t.Fatal(err)
	}
	if js["additionalProperties"] != false || !reflect.DeepEqual(js["required"], []string{"id", "items"}) {
		t.Fatalf("JSON Schema %v", js)
	}
	as, err := typed.AvroSchemaFor(reflect.TypeOf(Event{}), "")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"fields":[{"name":"id","type":"string"},{"default":null,"name":"maybe","type":["null","int"]},{"name":"items","type":{"items":{"fields":[{"name":"tags","type":{"type":"map","values":"string"}}],"name":"Inner","type":"record"},"type":"array"}},{"name":"raw","type":"bytes"}],"name":"Event","type":"record"}`
	if as != want {
		t.Fatalf("Avro schema\n%s\nwant\n%s", as, want)
	}
	if _, err := typed.AvroSchemaFor(reflect.TypeOf(struct{ C chan int }{}), "x"); err == nil {
		t.Fatal("a channel field derived a schema")
	}
}
