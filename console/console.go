// Package console is Herald's web console: plain HTML, CSS and JavaScript
// modules, checked in under static/ and embedded in the binary, with no build
// step. `herald serve` mounts Handler at "/"; the pages call the JSON APIs
// that serve mounts beside it (/v1/, /registry/, /metrics), so the console
// needs no network beyond the server it came from.
//
// Every value taken from an event, a topic name or an API answer is put in the
// page as text (textContent), never as markup, and the Content-Security-Policy
// forbids inline scripts, so an event carrying HTML or a script shows as text.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Assets is the console's files (index.html, app.js, ...), rooted at static/.
func Assets() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // static is embedded: cannot happen
	}
	return sub
}

// csp allows only the console's own scripts and styles and calls to the
// server it came from.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// Handler serves the console: index.html at "/" and the assets beside it.
// The pages are routed in the browser (#/topics, #/groups/NAME, ...), so any
// other path is 404. Only GET and HEAD are answered.
func Handler() http.Handler {
	assets := Assets()
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache") // revalidate: assets change with the binary
		p := path.Clean("/" + r.URL.Path)
		if p == "/" || p == "/index.html" {
			serveIndex(w, r, assets)
			return
		}
		name := strings.TrimPrefix(p, "/")
		if st, err := fs.Stat(assets, name); err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = p
		files.ServeHTTP(w, r2)
	})
}

func serveIndex(w http.ResponseWriter, r *http.Request, assets fs.FS) {
	b, err := fs.ReadFile(assets, "index.html")
	if err != nil {
		http.Error(w, "console: index.html missing", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}
