package subscription

import (
	"errors"
	"strings"
	"testing"
)

// TestFilterVectors checks the semantics Pub/Sub documents for its filter
// language against messages with and without the attributes concerned.
func TestFilterVectors(t *testing.T) {
	msgs := map[string]map[string]string{
		"none":     {},
		"com":      {"domain": "com"},
		"org":      {"domain": "org"},
		"com-us":   {"domain": "com", "region": "us-east1"},
		"order":    {"type": "OrderCreated", "source": "orders/eu"},
		"order-x":  {"type": "OrderCreated", "source": "billing/eu"},
		"dotted":   {"iana.org/language_tag": "en"},
		"hyphen":   {"ce-type": "x", "-lead": "y"},
		"empty":    {"domain": ""},
		"prefixed": {"domain": "company"},
	}
	cases := []struct {
		filter string
		match  []string
	}{
		{``, []string{"none", "com", "org", "com-us", "order", "order-x", "dotted", "hyphen", "empty", "prefixed"}},
		{`attributes:domain`, []string{"com", "org", "com-us", "empty", "prefixed"}},
		{`NOT attributes:domain`, []string{"none", "order", "order-x", "dotted", "hyphen"}},
		{`-attributes:domain`, []string{"none", "order", "order-x", "dotted", "hyphen"}},
		{`attributes.domain = "com"`, []string{"com", "com-us"}},
		{`attributes.domain != "com"`, []string{"none", "org", "order", "order-x", "dotted", "hyphen", "empty", "prefixed"}},
		{`NOT attributes.domain = "com"`, []string{"none", "org", "order", "order-x", "dotted", "hyphen", "empty", "prefixed"}},
		{`attributes:domain AND attributes.domain != "com"`, []string{"org", "empty", "prefixed"}},
		{`hasPrefix(attributes.domain, "co")`, []string{"com", "com-us", "prefixed"}},
		{`hasPrefix(attributes.domain, "")`, []string{"com", "org", "com-us", "empty", "prefixed"}},
		{`attributes.domain = ""`, []string{"empty"}},
		{`attributes.domain = "com" OR attributes.domain = "org"`, []string{"com", "org", "com-us"}},
		{`attributes.domain = "com" AND attributes.region = "us-east1"`, []string{"com-us"}},
		{`attributes:domain AND (attributes.region = "us-east1" OR attributes.domain = "org")`, []string{"org", "com-us"}},
		{`attributes.type = "OrderCreated" AND hasPrefix(attributes.source, "orders/")`, []string{"order"}},
		{`attributes."iana.org/language_tag" = "en"`, []string{"dotted"}},
		{`attributes.ce-type = "x" AND attributes:-lead`, []string{"hyphen"}},
		{`NOT (attributes:domain OR attributes:type)`, []string{"none", "dotted", "hyphen"}},
		{`((attributes.domain = "com"))`, []string{"com", "com-us"}},
		{`attributes.Domain = "com"`, nil}, // keys are case-sensitive
		{`attributes.domain = "COM"`, nil}, // so are values
	}
	for _, tc := range cases {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tc.filter, err)
			continue
		}
		want := map[string]bool{}
		for _, m := range tc.match {
			want[m] = true
		}
		for name, attrs := range msgs {
			if got := f.MatchMap(attrs); got != want[name] {
				t.Errorf("%q on %s %v: got %v, want %v", tc.filter, name, attrs, got, want[name])
			}
		}
	}
}

func TestFilterErrors(t *testing.T) {
	cases := []struct {
		filter string
		pos    int
		reason string
	}{
		{`attributes:a AND attributes:b OR attributes:c`, 30, "AND and OR cannot be mixed"},
		{`attributes:a OR attributes:b AND attributes:c`, 29, "AND and OR cannot be mixed"},
		{`attributes.a = "x`, 15, "unterminated string"},
		{`attributes.a = x`, 15, "want a double-quoted string"},
		{`attributes.a == "x"`, 14, "want a double-quoted string"},
		{`attributes.a`, 12, `want "=" or "!="`},
		{`attributes`, 10, `want "." or ":"`},
		{`attributes:a and attributes:b`, 13, "must be upper case"},
		{`(attributes:a`, 13, `want ")" to close the "(" at position 0`},
		{`attributes:a)`, 12, "unexpected \")\" after the end"},
		{`hasPrefix(attributes.a "x")`, 23, `want ","`},
		{`hasPrefix(labels.a, "x")`, 10, "hasPrefix takes attributes.KEY"},
		{`labels.a = "x"`, 0, "unexpected \"labels\""},
		{`attributes.a = "x" AND`, 22, "unexpected end of filter"},
		{`attributes.a ! "x"`, 13, `"!" must be followed by "="`},
		{`attributes.a = "\n"`, 16, "bad escape"},
		{`attributes.a = "x" # comment`, 19, "unexpected character"},
		{`NOT`, 3, "unexpected end"},
		{`attributes:""`, 11, "want an attribute key"},
		{strings.Repeat("(", 40) + "attributes:a" + strings.Repeat(")", 40), 33, "nested deeper"},
		{`attributes.a = "` + strings.Repeat("x", 300) + `"`, MaxFilterLen, "longer than the limit of 256"},
	}
	for _, tc := range cases {
		_, err := ParseFilter(tc.filter)
		var fe *FilterError
		if !errors.As(err, &fe) {
			t.Errorf("ParseFilter(%q): got %v, want a FilterError", tc.filter, err)
			continue
		}
		if fe.Pos != tc.pos || !strings.Contains(fe.Reason, tc.reason) {
			t.Errorf("ParseFilter(%q): got position %d %q, want %d %q", tc.filter, fe.Pos, fe.Reason, tc.pos, tc.reason)
		}
	}
}

// FuzzParseFilter: no input crashes the parser; an error is a FilterError
// with a position inside the input; a filter that parses evaluates.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		``, `attributes:a`, `NOT attributes.a = "x"`, `-attributes:a`, `hasPrefix(attributes.a, "p")`,
		`(attributes:a OR attributes:b) AND attributes.c != "d\"e"`, `attributes."x.y" = "z"`,
		`attributes:a AND attributes:b OR attributes:c`, `((((`, `"`, `!`, `attributes.-a = ""`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) || fe.Pos < 0 || fe.Pos > max(len(s), MaxFilterLen) {
				t.Fatalf("ParseFilter(%q): %v", s, err)
			}
			return
		}
		flt.MatchMap(map[string]string{"a": "x", "b": ""})
		flt.MatchMap(nil)
	})
}
