package httpapi

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/httpapi/openapitest"
)

func TestOpenAPIDocumentIsValid(t *testing.T) {
	if _, err := openapitest.Load(OpenAPI); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
}

func TestConformanceCatchesDrift(t *testing.T) {
	d, err := openapitest.Load(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	// The checker itself must fail on bodies the document does not allow.
	for _, tc := range []struct {
		pattern string
		status  int
		body    string
	}{
		{"GET /v1/topics", 200, `{"topics":[],"extra":1}`},
		{"GET /v1/topics", 200, `{"topics":[{"name":"a","partitions":"1","internal":false}]}`},
		{"GET /v1/topics", 418, `{}`},
		{"", 404, `{"message":"x"}`},
		{"POST /v1/topics", 201, `{"name":"x"}`},
	} {
		method := "GET"
		if m, _, ok := strings.Cut(tc.pattern, " "); ok {
			method = m
		}
		if err := openapitest.CheckResponse(d, method, tc.pattern, tc.status, "application/json", []byte(tc.body)); err == nil {
			t.Errorf("%s %d %s passed", tc.pattern, tc.status, tc.body)
		}
	}
	if err := openapitest.CheckResponse(d, "GET", "GET /v1/topics", 200, "application/json", []byte(`{"topics":[{"name":"a","partitions":1,"internal":false}],"nextPageToken":"x"}`)); err != nil {
		t.Errorf("a good body failed: %v", err)
	}
}
