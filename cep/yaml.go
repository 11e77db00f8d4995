package cep

import (
	"encoding/json"
	"fmt"

	"gopkg.in/yaml.v3"
)

// ParseYAML reads a pattern written in YAML (the fields of ParseJSON;
// durations as strings like "10m") and validates it. JSON, being YAML,
// is read too.
func ParseYAML(b []byte) (Pattern, error) {
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return Pattern{}, fmt.Errorf("pattern: bad YAML: %v", err)
	}
	j, err := json.Marshal(yamlToJSON(v))
	if err != nil {
		return Pattern{}, fmt.Errorf("pattern: bad YAML: %v", err)
	}
	return ParseJSON(j)
}

// yamlToJSON turns what yaml.v3 decodes into values encoding/json takes.
func yamlToJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = yamlToJSON(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = yamlToJSON(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = yamlToJSON(e)
		}
		return x
	}
	return v
}
