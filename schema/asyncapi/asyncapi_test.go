package asyncapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGenerate checks the document's shape and that every $ref in it
// resolves within it.
func TestGenerate(t *testing.T) {
	doc := Generate(Info{Title: "Shop", Servers: map[string]string{"local": "127.0.0.1:9092"}}, []Topic{
		{Name: "orders", Partitions: 3, Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": "86400000"},
			EventTypes: []string{"com.shop.order.created", "com.shop.order.paid"},
			Value:      &Schema{Subject: "orders-value", Version: 2, ID: 7, Type: "AVRO", Text: `{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}`},
			Key:        &Schema{Subject: "orders-key", Version: 1, ID: 1, Type: "AVRO", Text: `"string"`}},
		{Name: "audit log", Partitions: 1},
		{Name: "events", Partitions: 1, Value: &Schema{Subject: "events-value", Version: 1, ID: 3, Type: "JSON", Text: `{"type":"object"}`}},
	})
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	json.Unmarshal(b, &d)
	if d["asyncapi"] != "3.0.0" {
		t.Fatalf("asyncapi %v", d["asyncapi"])
	}
	ch := d["channels"].(map[string]any)
	if len(ch) != 3 || ch["audit_log"].(map[string]any)["address"] != "audit log" {
		t.Fatalf("channels %v", ch)
	}
	orders := ch["orders"].(map[string]any)
	if len(orders["messages"].(map[string]any)) != 2 {
		t.Fatalf("orders messages %v", orders["messages"])
	}
	kb := orders["bindings"].(map[string]any)["kafka"].(map[string]any)
	if kb["partitions"] != float64(3) || kb["topicConfiguration"].(map[string]any)["retention.ms"] != float64(86400000) {
		t.Fatalf("orders binding %v", kb)
	}
	ops := d["operations"].(map[string]any)
	if len(ops) != 6 || ops["publish_orders"].(map[string]any)["action"] != "send" {
		t.Fatalf("operations %v", ops)
	}
	comps := d["components"].(map[string]any)
	sch := comps["schemas"].(map[string]any)["orders-value"].(map[string]any)
	if !strings.HasPrefix(sch["schemaFormat"].(string), "application/vnd.apache.avro") || sch["schema"].(map[string]any)["name"] != "Order" {
		t.Fatalf("orders-value schema %v", sch)
	}
	msg := comps["messages"].(map[string]any)["orders.com.shop.order.paid"].(map[string]any)
	if msg["title"] != "com.shop.order.paid" || msg["headers"] == nil {
		t.Fatalf("message %v", msg)
	}
	// Every $ref resolves.
	var walk func(v any)
	n := 0
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				n++
				var cur any = d
				for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, ok := cur.(map[string]any)
					if !ok || m[tok] == nil {
						t.Fatalf("$ref %s does not resolve (at %q)", ref, tok)
					}
					cur = m[tok]
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(d)
	if n < 10 {
		t.Fatalf("only %d $refs", n)
	}
}
