package registry

import "net/http"

// GeneralHandler is the API without the fast path, for tests that hold the
// fast path to its answers.
func (r *Registry) GeneralHandler() http.Handler { return r.generalHandler() }

// FastHits is how many requests the fast path has answered.
func (r *Registry) FastHits() uint64 {
	var n uint64
	for i := range r.m.fast {
		n += r.m.fast[i].Load()
	}
	return n
}

// Handoffs is how many connections a Server has handed to net/http.
func (r *Registry) Handoffs() uint64 { return r.m.handoffs.Load() }
