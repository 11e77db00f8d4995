package httpstore_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/eventstore"
	"github.com/heraldhq/herald/eventstore/embedded"
	"github.com/heraldhq/herald/eventstore/httpapi"
	"github.com/heraldhq/herald/eventstore/httpstore"
	"github.com/heraldhq/herald/eventstore/storetest"
)

// remote is an HTTP server over an embedded store in dir, and a client.
type remote struct {
	dir    string
	store  *embedded.Store
	api    *httpapi.API
	server *httptest.Server
	client *httpstore.Client
}

func startRemote(t *testing.T, dir string) *remote {
	t.Helper()
	s, err := embedded.Open(embedded.Config{Dir: dir, SegmentBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api := httpapi.Routes(mux, s)
	srv := httptest.NewServer(mux)
	r := &remote{dir: dir, store: s, api: api, server: srv, client: httpstore.New(srv.URL, nil)}
	t.Cleanup(r.stop)
	return r
}

func (r *remote) stop() {
	r.client.Close()
	r.server.CloseClientConnections()
	r.server.Close()
	r.api.Close()
	r.store.Close()
}

// The conformance suite through the HTTP API and the Go client.
func TestConformanceOverHTTP(t *testing.T) {
	remotes := map[eventstore.Store]*remote{}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) eventstore.Store {
			r := startRemote(t, t.TempDir())
			remotes[r.client] = r
			return r.client
		},
		Reopen: func(t *testing.T, s eventstore.Store) eventstore.Store {
			old := remotes[s]
			old.stop()
			r := startRemote(t, old.dir)
			remotes[r.client] = r
			return r.client
		},
	})
}
