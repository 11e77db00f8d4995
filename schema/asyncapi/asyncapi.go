// Package asyncapi generates an AsyncAPI 3.0 document describing Herald's
// topics: one channel per topic (with its Kafka binding: partitions and
// configs), the messages on it (one per CloudEvents type seen, else one per
// topic) with payloads from the schema registry (Avro, JSON Schema or
// Protobuf, in AsyncAPI's multi-format schema objects), and a send and a
// receive operation per channel. It does no I/O: callers gather topics,
// schemas and event types (herald schema asyncapi does, over the Kafka
// protocol and the registry API).
package asyncapi

import (
	"encoding/json"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Info heads the document.
type Info struct {
	Title, Version, Description string
	// Servers maps a name to a Kafka bootstrap HOST:PORT.
	Servers map[string]string
}

// Schema is a registered schema version.
type Schema struct {
	Subject string
	Version int
	ID      int
	Type    string // AVRO, JSON or PROTOBUF
	Text    string
}

// Topic is what is known of one topic.
type Topic struct {
	Name       string
	Partitions int
	Configs    map[string]string
	// EventTypes are the CloudEvents types (ce_type) seen on the topic.
	EventTypes []string
	// Key and Value are the latest schemas of TOPIC-key and TOPIC-value,
	// if registered.
	Key, Value *Schema
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// id makes a component key (AsyncAPI keys match ^[\w\d.\-_]+$).
func id(s string) string { return strings.Trim(nonID.ReplaceAllString(s, "_"), "_") }

// Generate returns the document.
func Generate(info Info, topics []Topic) map[string]any {
	if info.Title == "" {
		info.Title = "Herald events"
	}
	if info.Version == "" {
		info.Version = "1.0.0"
	}
	servers := map[string]any{}
	for name, host := range info.Servers {
		servers[id(name)] = map[string]any{"host": host, "protocol": "kafka"}
	}
	channels := map[string]any{}
	operations := map[string]any{}
	messages := map[string]any{}
	schemas := map[string]any{}
	sort.Slice(topics, func(i, j int) bool { return topics[i].Name < topics[j].Name })
	for _, t := range topics {
		ch := id(t.Name)
		var payload, key any
		if t.Value != nil {
			sid := id(t.Value.Subject)
			schemas[sid] = schemaObject(t.Value)
			payload = map[string]any{"$ref": "#/components/schemas/" + sid}
		}
		if t.Key != nil {
			sid := id(t.Key.Subject)
			schemas[sid] = schemaObject(t.Key)
			key = map[string]any{"$ref": "#/components/schemas/" + sid}
		}
		msgRefs := map[string]any{}
		types := t.EventTypes
		if len(types) == 0 {
			types = []string{""}
		}
		for _, et := range types {
			name := ch
			if et != "" {
				name = ch + "." + id(et)
			}
			m := map[string]any{"name": name, "contentType": contentType(t.Value)}
			if et != "" {
				m["title"] = et
				m["summary"] = "CloudEvent of type " + et + " (Kafka binary binding)"
				m["headers"] = map[string]any{"type": "object", "required": []string{"ce_type", "ce_source", "ce_id", "ce_specversion"},
					"properties": map[string]any{
						"ce_type": map[string]any{"type": "string", "const": et}, "ce_source": map[string]any{"type": "string"},
						"ce_id": map[string]any{"type": "string"}, "ce_specversion": map[string]any{"type": "string", "const": "1.0"},
					}}
			}
			if payload != nil {
				m["payload"] = payload
			}
			kb := map[string]any{"bindingVersion": "0.5.0"}
			if key != nil {
				kb["key"] = key
			}
			if t.Value != nil {
				kb["schemaIdLocation"] = "payload"
				kb["schemaIdPayloadEncoding"] = "confluent"
				kb["schemaLookupStrategy"] = "TopicNameStrategy"
			}
			m["bindings"] = map[string]any{"kafka": kb}
			messages[name] = m
			msgRefs[name] = map[string]any{"$ref": "#/components/messages/" + name}
		}
		binding := map[string]any{"topic": t.Name, "bindingVersion": "0.5.0"}
		if t.Partitions > 0 {
			binding["partitions"] = t.Partitions
		}
		if tc := topicConfiguration(t.Configs); len(tc) > 0 {
			binding["topicConfiguration"] = tc
		}
		c := map[string]any{"address": t.Name, "messages": msgRefs, "bindings": map[string]any{"kafka": binding}}
		if len(servers) > 0 {
			var refs []any
			for name := range servers {
				refs = append(refs, map[string]any{"$ref": "#/servers/" + name})
			}
			sort.Slice(refs, func(i, j int) bool {
				return refs[i].(map[string]any)["$ref"].(string) < refs[j].(map[string]any)["$ref"].(string)
			})
			c["servers"] = refs
		}
		channels[ch] = c
		var opMsgs []any
		for name := range msgRefs {
			opMsgs = append(opMsgs, map[string]any{"$ref": "#/channels/" + ch + "/messages/" + name})
		}
		sort.Slice(opMsgs, func(i, j int) bool {
			return opMsgs[i].(map[string]any)["$ref"].(string) < opMsgs[j].(map[string]any)["$ref"].(string)
		})
		for _, op := range []struct{ verb, action string }{{"publish", "send"}, {"consume", "receive"}} {
			operations[op.verb+"_"+ch] = map[string]any{
				"action": op.action, "channel": map[string]any{"$ref": "#/channels/" + ch}, "messages": opMsgs,
			}
		}
	}
	doc := map[string]any{
		"asyncapi":   "3.0.0",
		"info":       map[string]any{"title": info.Title, "version": info.Version},
		"channels":   channels,
		"operations": operations,
		"components": map[string]any{"messages": messages, "schemas": schemas},
	}
	if info.Description != "" {
		doc["info"].(map[string]any)["description"] = info.Description
	}
	if len(servers) > 0 {
		doc["servers"] = servers
	}
	return doc
}

func contentType(s *Schema) string {
	if s == nil {
		return "application/octet-stream"
	}
	switch s.Type {
	case "JSON":
		return "application/json"
	case "PROTOBUF":
		return "application/x-protobuf"
	}
	return "application/vnd.apache.avro+binary"
}

// schemaObject is AsyncAPI's multi-format schema object for a registered
// schema.
func schemaObject(s *Schema) map[string]any {
	var doc any
	if s.Type != "PROTOBUF" {
		if err := json.Unmarshal([]byte(s.Text), &doc); err != nil {
			doc = s.Text
		}
	} else {
		doc = s.Text
	}
	format := "application/vnd.apache.avro+json;version=1.9.0"
	switch s.Type {
	case "JSON":
		format = "application/schema+json;version=draft-07"
	case "PROTOBUF":
		format = "application/vnd.google.protobuf;version=3"
	}
	return map[string]any{
		"schemaFormat": format,
		"schema":       doc,
		"x-herald-registry": map[string]any{
			"subject": s.Subject, "version": s.Version, "id": s.ID,
		},
	}
}

// topicConfiguration keeps the configs the Kafka binding knows.
func topicConfiguration(cfg map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range cfg {
		switch k {
		case "cleanup.policy":
			out[k] = strings.Split(v, ",")
		case "retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}
