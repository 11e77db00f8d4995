package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Result()
}

func TestHandlerServesIndexAndAssets(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/", "text/html", `<script type="module" src="app.js">`},
		{"/index.html", "text/html", "Herald console"},
		{"/app.js", "javascript", "hashchange"},
		{"/style.css", "text/css", "--accent"},
		{"/pages/topics.js", "javascript", "Produce a test event"},
		{"/pages/sagas.js", "javascript", "Timeline"},
	} {
		resp := get(t, h, "GET", tc.path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", tc.path, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: Content-Security-Policy %q must allow only the console's own scripts", tc.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
	}
}

func TestHandlerRefusesOtherPathsAndMethods(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/nope", "/pages/", "/pages", "/../console.go", "/static/index.html"} {
		if resp := get(t, h, "GET", p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	resp := get(t, h, "POST", "/")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q; want 405 and GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp = get(t, h, "HEAD", "/")
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD /: %d with %d bytes", resp.StatusCode, len(body))
	}
}

var importRE = regexp.MustCompile(`(?m)^\s*import\s[^;]*?from\s+"([^"]+)"`)

// TestAssetsAreSelfContained checks what a browser test would find late:
// every module import resolves to an embedded file, nothing is loaded from
// another host, and no page turns text into markup.
func TestAssetsAreSelfContained(t *testing.T) {
	assets := Assets()
	var scripts int
	err := fs.WalkDir(assets, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, p)
		if err != nil {
			return err
		}
		src := string(b)
		for _, bad := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(src, bad) && !strings.Contains(src, "http://www.w3.org/2000/svg") {
				t.Errorf("%s refers to another host (%q): the console must work with no network", p, bad)
			}
		}
		if !strings.HasSuffix(p, ".js") {
			return nil
		}
		scripts++
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if strings.Contains(src, bad) {
				t.Errorf("%s uses %s: build elements with h() and text instead", p, bad)
			}
		}
		for _, m := range importRE.FindAllStringSubmatch(src, -1) {
			target := path.Join(path.Dir(p), m[1])
			if _, err := fs.Stat(assets, target); err != nil {
				t.Errorf("%s imports %q: %s is not embedded", p, m[1], target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scripts < 8 {
		t.Errorf("found %d scripts, want the app and its pages", scripts)
	}
}
