package rules

import (
	"net/http"
	"testing"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/httpapi/openapitest"
)

// checkedAgainstOpenAPI checks every response of mux against the document
// herald serve serves (httpapi's with this package's fragment). Requests
// no route matches pass through unchecked: a bare ServeMux answers them in
// text, the served API in the error shape.
func checkedAgainstOpenAPI(t *testing.T, mux *http.ServeMux) http.Handler {
	doc, err := httpapi.MergeOpenAPI(httpapi.OpenAPI, OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	checked := openapitest.Handler(t, doc, mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pat := mux.Handler(r); pat == "" {
			mux.ServeHTTP(w, r)
			return
		}
		checked.ServeHTTP(w, r)
	})
}
