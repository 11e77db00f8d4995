package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/xdg-go/scram"

	"github.com/heraldhq/herald/internal/tlstest"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newStore writes a users file with the name/password pairs and opens it.
func newStore(t testing.TB, pairs ...string) (string, *Store, *Metrics) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.json")
	for i := 0; i < len(pairs); i += 2 {
		if _, err := AddUser(path, pairs[i], pairs[i+1], MinIterations); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMetrics()
	s, err := OpenStore(path, quietLogger(), m)
	if err != nil {
		t.Fatal(err)
	}
	return path, s, m
}

// waitFor polls cond until it holds, failing after several seconds (the
// store and the certificate reloader recheck their files once a second).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeAtomic replaces path with b through a rename, so a reloader never
// sees a half-written file (which would count an extra failure).
func writeAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func counter(c *prometheus.CounterVec, mech string) float64 {
	return testutil.ToFloat64(c.WithLabelValues(mech))
}

// TestConcurrentEdits: edits at once (two "herald user" commands) each
// see the other's change; none is lost to the other's rename.
func TestConcurrentEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	const n = 16
	if _, err := AddUser(path, "keep", "pw", MinIterations); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := AddUser(path, fmt.Sprintf("user%02d", i), "pw", MinIterations); err != nil {
				errs <- err
			}
			if i%2 == 0 {
				if _, err := RemoveUser(path, fmt.Sprintf("user%02d", i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"keep"}
	for i := 1; i < n; i += 2 {
		want = append(want, fmt.Sprintf("user%02d", i))
	}
	if got := f.Names(); !slices.Equal(got, want) {
		t.Fatalf("after %d concurrent edits: users %q, want %q", n, got, want)
	}
}

func TestAddUserRemoveUser(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")
	f, err := ReadFile(path)
	if err != nil || f.Users == nil || len(f.Users) != 0 {
		t.Fatalf("ReadFile of a missing file: %+v, %v; want an empty file", f, err)
	}
	created, err := AddUser(path, "alice", "first", MinIterations)
	if err != nil || !created {
		t.Fatalf("AddUser: created %v, err %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Fatalf("users file mode %v, want 0600", mode)
	}
	created, err = AddUser(path, "alice", "second", DefaultIterations)
	if err != nil || created {
		t.Fatalf("AddUser of an existing user: created %v, err %v; want false, nil", created, err)
	}
	if _, err := AddUser(path, "bob", "pw", MinIterations); err != nil {
		t.Fatal(err)
	}
	f, err = ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Names(); len(got) != 2 || got[0] != "alice" || got[1] != "bob" {
		t.Fatalf("names %q, want [alice bob]", got)
	}
	if verify(f, "alice", "first") || !verify(f, "alice", "second") {
		t.Fatal("alice's password did not change")
	}
	for mech, c := range f.Users["alice"] {
		if c.Iterations != DefaultIterations || len(c.Salt) != 16 {
			t.Errorf("%s: %d iterations, %d-byte salt", mech, c.Iterations, len(c.Salt))
		}
	}
	if len(f.Users["alice"]) != 2 {
		t.Fatalf("alice has %d credentials, want SCRAM-SHA-256 and -512", len(f.Users["alice"]))
	}
	if s1, s2 := f.Users["alice"][ScramSHA256].Salt, f.Users["alice"][ScramSHA512].Salt; string(s1) == string(s2) {
		t.Fatal("the two mechanisms share a salt")
	}

	removed, err := RemoveUser(path, "alice")
	if err != nil || !removed {
		t.Fatalf("RemoveUser: removed %v, err %v", removed, err)
	}
	removed, err = RemoveUser(path, "alice")
	if err != nil || removed {
		t.Fatalf("RemoveUser of a removed user: removed %v, err %v", removed, err)
	}
	f, err = ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Names(); len(got) != 1 || got[0] != "bob" {
		t.Fatalf("names after removing alice %q", got)
	}
	// Atomic replacement leaves no temporary file behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the users file", len(ents))
	}
	// Bad input is refused before the file is touched.
	if _, err := AddUser(path, "a:b", "pw", MinIterations); err == nil {
		t.Fatal("AddUser accepted a name with ':'")
	}
	wantErr(t, func() error { _, err := AddUser(path, "carol", "", MinIterations); return err }(), "empty password")
	wantErr(t, func() error { _, err := AddUser(path, "carol", "pw", MinIterations-1); return err }(), "4095 iterations", "want 4096 to 1048576")
	wantErr(t, func() error { _, err := AddUser(path, "carol", "pw", MaxIterations+1); return err }(), "1048577 iterations")
}

// TestNewCredentialsSASLprep: passwords SASLprep refuses are refused
// without showing them; names it refuses are named.
func TestNewCredentialsSASLprep(t *testing.T) {
	for _, pass := range []string{"key 🔑", "tab\tchar", "nul\x00"} {
		_, err := NewCredentials("alice", pass, MinIterations)
		wantErr(t, err, "password refused by SASLprep")
		if strings.Contains(err.Error(), pass) {
			t.Errorf("error %q shows the password", err)
		}
	}
	_, err := NewCredentials("key🔑", "pw", MinIterations)
	wantErr(t, err, `user name "key🔑"`)
	// SASLprep maps some characters: the mapped form is the same password.
	_, s, _ := newStore(t, "alice", "s3\u00adcret\u00a0x")
	if !s.VerifyPassword("alice", "s3cret x") {
		t.Error("the SASLprep form of a password was refused")
	}
}

func TestCheckName(t *testing.T) {
	for _, name := range []string{"alice", "Zoë", "a b", "svc-ingest@example.com", "日本", strings.Repeat("x", MaxNameBytes)} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q): %v", name, err)
		}
	}
	for _, c := range []struct{ name, want string }{
		{"", "empty user name"},
		{strings.Repeat("x", MaxNameBytes+1), "user name of 257 bytes: want at most 256"},
		{"a:b", `user name "a:b": ':' is not allowed`},
		{"a\x00b", `'\x00' is not allowed`},
		{"a\nb", `'\n' is not allowed`},
		{"a\x7fb", `'\x7f' is not allowed`},
		{"a\xffb", `user name "a\xffb" is not valid UTF-8`},
	} {
		wantErr(t, CheckName(c.name), c.want)
	}
}

// validFile returns a file with alice's credentials, for mutating.
func validFile(t testing.TB) *File {
	t.Helper()
	creds, err := NewCredentials("alice", "pw", MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	return &File{Users: map[string]map[string]Credential{"alice": creds}}
}

// TestValidate reaches every error of File.validate, both through
// WriteFile (which refuses to write a bad file) and through ReadFile
// (which refuses to read one, naming the file).
func TestValidate(t *testing.T) {
	mutate := func(mech string, fn func(*Credential)) func(*File) {
		return func(f *File) {
			c := f.Users["alice"][mech]
			fn(&c)
			f.Users["alice"][mech] = c
		}
	}
	cases := []struct {
		name   string
		mutate func(*File)
		want   []string
	}{
		{"few iterations", mutate(ScramSHA256, func(c *Credential) { c.Iterations = MinIterations - 1 }),
			[]string{`user "alice", SCRAM-SHA-256: 4095 iterations: want 4096 to 1048576`}},
		{"too many iterations", mutate(ScramSHA512, func(c *Credential) { c.Iterations = MaxIterations + 1 }),
			[]string{`user "alice", SCRAM-SHA-512: 1048577 iterations: want 4096 to 1048576`}},
		{"short salt", mutate(ScramSHA256, func(c *Credential) { c.Salt = c.Salt[:7] }),
			[]string{`user "alice", SCRAM-SHA-256: salt of 7 bytes: want at least 8`}},
		{"no salt", mutate(ScramSHA512, func(c *Credential) { c.Salt = nil }),
			[]string{`user "alice", SCRAM-SHA-512: salt of 0 bytes: want at least 8`}},
		{"short stored key", mutate(ScramSHA256, func(c *Credential) { c.StoredKey = c.StoredKey[:31] }),
			[]string{`user "alice", SCRAM-SHA-256: keys of 31 and 32 bytes: want 32`}},
		{"long server key", mutate(ScramSHA512, func(c *Credential) { c.ServerKey = append(c.ServerKey, 0) }),
			[]string{`user "alice", SCRAM-SHA-512: keys of 64 and 65 bytes: want 64`}},
		{"SHA-256 keys under SHA-512", func(f *File) {
			f.Users["alice"][ScramSHA512] = f.Users["alice"][ScramSHA256]
		}, []string{`user "alice", SCRAM-SHA-512: keys of 32 and 32 bytes: want 64`}},
		{"unknown mechanism", func(f *File) { f.Users["alice"]["SCRAM-SHA-1"] = f.Users["alice"][ScramSHA256] },
			[]string{`user "alice": unknown mechanism "SCRAM-SHA-1" (want SCRAM-SHA-256 or SCRAM-SHA-512)`}},
		{"lower-case mechanism", func(f *File) { f.Users["alice"]["scram-sha-256"] = f.Users["alice"][ScramSHA256] },
			[]string{`unknown mechanism "scram-sha-256"`}},
		{"no credentials", func(f *File) { f.Users["bob"] = map[string]Credential{} },
			[]string{`user "bob" has no credentials`}},
		{"null credentials", func(f *File) { f.Users["bob"] = nil },
			[]string{`user "bob" has no credentials`}},
		{"name with colon", func(f *File) { f.Users["bo:b"] = f.Users["alice"] },
			[]string{`user name "bo:b": ':' is not allowed`}},
		{"name with control", func(f *File) { f.Users["bo\tb"] = f.Users["alice"] },
			[]string{`user name "bo\tb": '\t' is not allowed`}},
		{"empty name", func(f *File) { f.Users[""] = f.Users["alice"] },
			[]string{"empty user name"}},
		{"long name", func(f *File) { f.Users[strings.Repeat("é", 129)] = f.Users["alice"] },
			[]string{"user name of 258 bytes: want at most 256"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := validFile(t)
			c.mutate(f)
			path := filepath.Join(t.TempDir(), "users.json")
			wantErr(t, WriteFile(path, f), c.want...)
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("WriteFile of an invalid file wrote it (stat: %v)", err)
			}
			b, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = ReadFile(path)
			wantErr(t, err, append([]string{"users file " + path + ": "}, c.want...)...)
			_, err = OpenStore(path, quietLogger(), nil)
			wantErr(t, err, c.want...)
		})
	}
	// Invalid UTF-8 cannot come through JSON (it becomes U+FFFD) but is
	// refused on the way out.
	f := validFile(t)
	f.Users["a\xffb"] = f.Users["alice"]
	wantErr(t, WriteFile(filepath.Join(t.TempDir(), "u.json"), f), `user name "a\xffb" is not valid UTF-8`)
}

func TestParseFileSyntax(t *testing.T) {
	good, err := json.Marshal(validFile(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, in string
		want     []string
	}{
		{"unknown top-level field", `{"users":{},"groups":{}}`, []string{`unknown field "groups"`}},
		{"unknown credential field", strings.Replace(string(good), `"salt"`, `"pepper":"AA==","salt"`, 1), []string{`unknown field "pepper"`}},
		{"not JSON", `users: alice`, []string{"invalid character"}},
		{"truncated", string(good[:len(good)/2]), []string{"unexpected EOF"}},
		{"iterations as string", `{"users":{"a":{"SCRAM-SHA-256":{"iterations":"4096"}}}}`, []string{"iterations"}},
		{"salt not base64", `{"users":{"a":{"SCRAM-SHA-256":{"salt":"%%%"}}}}`, []string{"illegal base64"}},
		{"trailing data", string(good) + `{"users":{}}`, []string{"after the users object"}},
		{"trailing garbage", string(good) + "xyz", []string{"after the users object"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseFile("u.json", []byte(c.in))
			wantErr(t, err, append([]string{"users file u.json: "}, c.want...)...)
		})
	}
	// Whitespace after the object is fine (editors add newlines).
	if _, err := parseFile("u.json", append(good, " \n\n"...)); err != nil {
		t.Fatalf("trailing newline: %v", err)
	}
	for _, empty := range []string{`{}`, `{"users":{}}`, `{"users":null}`, `null`} {
		f, err := parseFile("u.json", []byte(empty))
		if err != nil || f.Users == nil || len(f.Users) != 0 {
			t.Errorf("%s: %+v, %v; want an empty file", empty, f, err)
		}
	}
}

func TestOpenStoreRefuses(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	_, err := OpenStore(missing, nil, nil)
	wantErr(t, err, "users file", missing)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, []byte(`{"users":{}}`), 0o600)
	_, err = OpenStore(empty, nil, nil)
	wantErr(t, err, "users file "+empty+" has no users", "herald user add")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"users":`), 0o600)
	_, err = OpenStore(bad, nil, nil)
	wantErr(t, err, "users file "+bad)
}

func TestStoreVerifyPassword(t *testing.T) {
	const bobPass = "pä:ss wörd ✓ ﬁ"
	path, s, m := newStore(t, "alice", "s3cret", "bob", bobPass)
	if s.Path() != path || s.Metrics() != m {
		t.Fatal("Path or Metrics do not return what OpenStore got")
	}
	for _, c := range []struct {
		name, pass string
		want       bool
	}{
		{"alice", "s3cret", true},
		{"alice", "s3cret ", false},
		{"alice", "S3cret", false},
		{"alice", "", false},
		{"alice", bobPass, false},
		{"bob", bobPass, true},
		{"bob", "pä:ss wörd ✓", false},
		{"bob", "s3cret", false},
		{"mallory", "s3cret", false},
		{"", "s3cret", false},
		{"Alice", "s3cret", false},
	} {
		if got := s.VerifyPassword(c.name, c.pass); got != c.want {
			t.Errorf("VerifyPassword(%q, %q) = %v, want %v", c.name, c.pass, got, c.want)
		}
	}
	if !s.HasUser("bob") || s.HasUser("mallory") {
		t.Fatal("HasUser")
	}
	if got := s.Users(); len(got) != 2 || got[0] != "alice" || got[1] != "bob" {
		t.Fatalf("Users() = %q", got)
	}
	if _, err := s.Credential(ScramSHA256, "mallory"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("Credential of an unknown user: %v", err)
	}
	if _, err := s.Credential("SCRAM-SHA-1", "alice"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("Credential of an unknown mechanism: %v", err)
	}
	if got := testutil.ToFloat64(m.users); got != 2 {
		t.Fatalf("herald_auth_users = %v, want 2", got)
	}
}

// TestStoreReload: users added, a file made invalid, removed and fixed
// again, as an operator editing it while the server runs would.
func TestStoreReload(t *testing.T) {
	t.Parallel() // waits for once-a-second rechecks
	path, s, m := newStore(t, "alice", "s3cret")
	if _, err := AddUser(path, "carol", "c4rol", MinIterations); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "carol to be read", func() bool { return s.VerifyPassword("carol", "c4rol") })
	if got := testutil.ToFloat64(m.reloads); got != 1 {
		t.Errorf("herald_auth_users_reloads_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.users); got != 2 {
		t.Errorf("herald_auth_users = %v, want 2", got)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// An invalid file keeps the users read before, and is counted once
	// (not on every lookup) until it changes again.
	writeAtomic(t, path, []byte(`{"users": {"carol": `))
	waitFor(t, "the reload failure to be counted", func() bool {
		s.HasUser("alice")
		return testutil.ToFloat64(m.reloadFailures) >= 1
	})
	if !s.VerifyPassword("alice", "s3cret") || !s.VerifyPassword("carol", "c4rol") {
		t.Fatal("an invalid users file dropped the users read before")
	}
	time.Sleep(1100 * time.Millisecond)
	s.HasUser("alice")
	if got := testutil.ToFloat64(m.reloadFailures); got != 1 {
		t.Errorf("herald_auth_users_reload_failures_total = %v after rechecking an unchanged bad file, want 1", got)
	}
	if got := testutil.ToFloat64(m.users); got != 2 {
		t.Errorf("herald_auth_users = %v, want 2", got)
	}

	// A file that is valid JSON but breaks a rule is kept out too.
	f := validFile(t)
	f.Users["alice"][ScramSHA256] = Credential{Salt: []byte("12345678"), Iterations: 1, StoredKey: make([]byte, 32), ServerKey: make([]byte, 32)}
	b, _ := json.Marshal(f)
	writeAtomic(t, path, b)
	waitFor(t, "the second reload failure", func() bool {
		s.HasUser("alice")
		return testutil.ToFloat64(m.reloadFailures) >= 2
	})
	if !s.VerifyPassword("alice", "s3cret") || !s.HasUser("carol") {
		t.Fatal("a users file with a weak credential replaced the users read before")
	}

	// A deleted file keeps the users too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missing file to be counted", func() bool {
		s.HasUser("alice")
		return testutil.ToFloat64(m.reloadFailures) >= 3
	})
	if !s.VerifyPassword("alice", "s3cret") {
		t.Fatal("a deleted users file dropped the users")
	}
	time.Sleep(1100 * time.Millisecond) // past the next check
	s.HasUser("alice")
	if got := testutil.ToFloat64(m.reloadFailures); got != 3 {
		t.Errorf("a file still missing was counted again: %v failures, want 3", got)
	}

	// Fixed again, without carol: the store follows.
	fixed := filepath.Join(t.TempDir(), "users.json")
	writeAtomic(t, fixed, good)
	if _, err := RemoveUser(fixed, "carol"); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(fixed)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, b)
	waitFor(t, "carol to be removed", func() bool { return !s.HasUser("carol") })
	if !s.VerifyPassword("alice", "s3cret") || s.VerifyPassword("carol", "c4rol") {
		t.Fatal("after carol's removal")
	}
	if got := testutil.ToFloat64(m.users); got != 1 {
		t.Errorf("herald_auth_users = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.reloads); got != 2 {
		t.Errorf("herald_auth_users_reloads_total = %v, want 2", got)
	}
}

func TestMetricsRegister(t *testing.T) {
	_, s, m := newStore(t, "alice", "s3cret")
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(reg); err == nil {
		t.Fatal("registering twice did not fail")
	}
	sess, _ := s.Start(Plain)
	sess.Step([]byte("\x00alice\x00s3cret"))
	n, err := testutil.GatherAndCount(reg, "herald_auth_successes_total", "herald_auth_users")
	if err != nil || n != 2 {
		t.Fatalf("gathered %d series, %v", n, err)
	}
}

// plainStep runs a one-message PLAIN session.
func plainStep(t *testing.T, s *Store, msg string) (string, error) {
	t.Helper()
	sess, err := s.Start(Plain)
	if err != nil {
		t.Fatal(err)
	}
	out, done, err := sess.Step([]byte(msg))
	if !done || out != nil {
		t.Fatalf("PLAIN step: done %v, out %q; want done with no answer", done, out)
	}
	return sess.User(), err
}

func TestPlain(t *testing.T) {
	_, s, m := newStore(t, "alice", "s3cret", "bob", "pä:ss?")
	for _, c := range []struct {
		name, msg string
		user      string   // "" for a failure
		want      []string // error texts
	}{
		{"right", "\x00alice\x00s3cret", "alice", nil},
		{"authzid is the user", "alice\x00alice\x00s3cret", "alice", nil},
		{"authzid is another user", "bob\x00alice\x00s3cret", "", []string{`user "alice" may not act as "bob"`}},
		{"wrong password", "\x00alice\x00S3cret", "", []string{`wrong user name or password (user "alice")`}},
		{"empty password", "\x00alice\x00", "", []string{"wrong user name or password"}},
		{"unknown user", "\x00mallory\x00s3cret", "", []string{`wrong user name or password (user "mallory")`}},
		{"empty", "", "", []string{"malformed PLAIN message"}},
		{"no NULs", "alices3cret", "", []string{"malformed PLAIN message"}},
		{"one NUL", "alice\x00s3cret", "", []string{"malformed PLAIN message"}},
		{"too many parts", "\x00alice\x00s3cret\x00", "", []string{"malformed PLAIN message"}},
		// A password with a NUL cannot be sent over PLAIN (RFC 4616).
		{"NUL in password", "\x00alice\x00s3\x00cret", "", []string{"malformed PLAIN message"}},
		{"oversized", "\x00alice\x00" + strings.Repeat("x", MaxSASLBytes), "", []string{"PLAIN message of 4103 bytes: want at most 4096"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := counter(m.failures, Plain)
			user, err := plainStep(t, s, c.msg)
			if user != c.user {
				t.Errorf("user %q, want %q", user, c.user)
			}
			if c.user != "" {
				if err != nil {
					t.Fatalf("err %v", err)
				}
				return
			}
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("err %v does not wrap ErrAuthFailed", err)
			}
			wantErr(t, err, c.want...)
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "S3cret") {
				t.Errorf("error %q shows the password", err)
			}
			if got := counter(m.failures, Plain); got != before+1 {
				t.Errorf("herald_auth_failures_total{mechanism=PLAIN} went from %v to %v, want +1", before, got)
			}
		})
	}
	if got := counter(m.successes, Plain); got != 2 {
		t.Fatalf("herald_auth_successes_total{mechanism=PLAIN} = %v, want 2", got)
	}
	// A password with ':' and non-ASCII works: only NUL is special.
	_, s2, _ := newStore(t, "carol", "ü:b:€ ✓")
	if u, err := plainStep(t, s2, "\x00carol\x00ü:b:€ ✓"); err != nil || u != "carol" {
		t.Fatalf("carol: %q, %v", u, err)
	}
}

// scramLogin runs a full SCRAM conversation between an xdg-go/scram
// client and a server session; it returns the session's user and error.
func scramLogin(t *testing.T, s *Store, mech, user, pass string) (string, error) {
	t.Helper()
	return scramLoginAs(t, s, mech, user, pass, "")
}

func scramLoginAs(t *testing.T, s *Store, mech, user, pass, authz string) (string, error) {
	t.Helper()
	conv, sess := scramPair(t, s, mech, user, pass, authz)
	var in string
	for i := 0; i < 5; i++ {
		msg, err := conv.Step(in)
		if err != nil {
			t.Fatalf("client step %d: %v", i, err)
		}
		out, done, serr := sess.Step([]byte(msg))
		if done {
			if serr != nil {
				return sess.User(), serr
			}
			// The client checks the server's signature.
			if _, err := conv.Step(string(out)); err != nil || !conv.Valid() {
				t.Fatalf("client does not accept the server's final message %q: %v", out, err)
			}
			return sess.User(), nil
		}
		in = string(out)
	}
	t.Fatal("SCRAM conversation did not end")
	return "", nil
}

func TestSCRAM(t *testing.T) {
	_, s, m := newStore(t, "alice", "s3cret", "b,o=b", "pä:ss wörd")
	for _, mech := range []string{ScramSHA256, ScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			for _, c := range []struct{ user, pass string }{{"alice", "s3cret"}, {"b,o=b", "pä:ss wörd"}} {
				u, err := scramLogin(t, s, mech, c.user, c.pass)
				if err != nil || u != c.user {
					t.Fatalf("%s: user %q, err %v", c.user, u, err)
				}
			}
			for _, c := range []struct{ user, pass string }{{"alice", "S3cret"}, {"alice", "pä:ss wörd"}, {"mallory", "s3cret"}} {
				u, err := scramLogin(t, s, mech, c.user, c.pass)
				if u != "" {
					t.Errorf("%s/%s: user %q after a failure", c.user, c.pass, u)
				}
				if !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("%s/%s: err %v, want ErrAuthFailed", c.user, c.pass, err)
				}
				wantErr(t, err, mech, `user "`+c.user+`": wrong user name or password`)
			}
			if got := counter(m.successes, mech); got != 2 {
				t.Errorf("successes{%s} = %v, want 2", mech, got)
			}
			if got := counter(m.failures, mech); got != 3 {
				t.Errorf("failures{%s} = %v, want 3", mech, got)
			}
		})
	}
	// An authorization id: the user's own is fine, another user's is
	// refused (as Kafka does) even with the right password.
	if u, err := scramLoginAs(t, s, ScramSHA256, "alice", "s3cret", "alice"); err != nil || u != "alice" {
		t.Fatalf("authzid alice: %q, %v", u, err)
	}
	if u, err := scramLoginAs(t, s, ScramSHA256, "b,o=b", "pä:ss wörd", "b,o=b"); err != nil || u != "b,o=b" {
		t.Fatalf("authzid b,o=b: %q, %v", u, err)
	}
	u, err := scramLoginAs(t, s, ScramSHA512, "alice", "s3cret", "b,o=b")
	if u != "" || !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("authzid of another user: %q, %v", u, err)
	}
	wantErr(t, err, `user "alice" may not act as "b,o=b"`)
	if got := counter(m.failures, ScramSHA512); got != 4 {
		t.Errorf("failures{SCRAM-SHA-512} = %v, want 4", got)
	}
	// Malformed and oversized messages fail and are counted.
	for _, msg := range []string{"", "hello", "n,,n=alice", "p=tls-unique,,n=alice,r=abc", strings.Repeat("n", MaxSASLBytes+1)} {
		before := counter(m.failures, ScramSHA256)
		sess, _ := s.Start(ScramSHA256)
		_, done, err := sess.Step([]byte(msg))
		if !done || !errors.Is(err, ErrAuthFailed) {
			t.Errorf("%.20q: done %v, err %v", msg, done, err)
		}
		if got := counter(m.failures, ScramSHA256); got != before+1 {
			t.Errorf("%.20q: failures went from %v to %v", msg, before, got)
		}
	}
	// A client-final message that does not answer the server's nonce.
	sess, _ := s.Start(ScramSHA512)
	if _, done, err := sess.Step([]byte("n,,n=alice,r=abcdef")); done || err != nil {
		t.Fatalf("client-first: done %v, err %v", done, err)
	}
	_, done, err := sess.Step([]byte("c=biws,r=abcdef,p=AAAA"))
	if !done || !errors.Is(err, ErrAuthFailed) || sess.User() != "" {
		t.Fatalf("forged client-final: done %v, err %v, user %q", done, err, sess.User())
	}
}

func TestStartUnknownMechanism(t *testing.T) {
	_, s, _ := newStore(t, "alice", "s3cret")
	for _, mech := range []string{"GSSAPI", "OAUTHBEARER", "plain", "SCRAM-SHA-1", ""} {
		_, err := s.Start(mech)
		wantErr(t, err, "unsupported SASL mechanism", "SCRAM-SHA-512, SCRAM-SHA-256, PLAIN")
	}
}

func TestParseMechanisms(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"PLAIN", []string{Plain}},
		{"scram-sha-256, Plain", []string{ScramSHA256, Plain}},
		{" SCRAM-SHA-512 ,scram-sha-512,PLAIN,plain,", []string{ScramSHA512, Plain}},
		{"PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", []string{Plain, ScramSHA256, ScramSHA512}},
	} {
		got, err := ParseMechanisms(c.in)
		if err != nil || strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("ParseMechanisms(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	_, err := ParseMechanisms("PLAIN,GSSAPI")
	wantErr(t, err, `SASL mechanism "GSSAPI": want SCRAM-SHA-512, SCRAM-SHA-256, PLAIN`)
	for _, in := range []string{"", " , ,"} {
		_, err := ParseMechanisms(in)
		wantErr(t, err, "no SASL mechanism in")
	}
}

// httpServer serves a handler echoing the authenticated user behind
// a.Wrap, with /healthz public.
func httpServer(t *testing.T, a *HTTPAuth) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := User(r.Context())
		if !ok {
			u = "(nobody)"
		}
		io.WriteString(w, u)
	})
	srv := httptest.NewServer(a.Wrap(h, func(r *http.Request) bool { return r.URL.Path == "/healthz" }))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, auth func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != nil {
		auth(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func basic(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func TestHTTPWrap(t *testing.T) {
	_, s, m := newStore(t, "alice", "s3cret", "bob", "pa:ss wörd")
	a := NewHTTPAuth(s, "herald")
	srv := httpServer(t, a)

	resp, body := get(t, srv.URL+"/v1/topics", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="herald", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var msg map[string]any
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if !strings.Contains(body, "authentication required") {
		t.Errorf("body %q does not say authentication is required", body)
	}

	for _, bad := range []func(*http.Request){basic("alice", "wrong"), basic("mallory", "s3cret"), basic("", ""), basic("alice", "")} {
		resp, body := get(t, srv.URL+"/v1/topics", bad)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "authentication failed: wrong user name or password") {
			t.Errorf("bad credentials: %d %q", resp.StatusCode, body)
		}
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Error("no challenge after bad credentials")
		}
		if err := json.Unmarshal([]byte(body), &msg); err != nil {
			t.Errorf("body %q is not JSON: %v", body, err)
		}
	}
	// A malformed Authorization header is a failure, not a crash.
	resp, _ = get(t, srv.URL+"/", func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") })
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("malformed header: %d", resp.StatusCode)
	}

	for _, c := range []struct{ user, pass string }{{"alice", "s3cret"}, {"bob", "pa:ss wörd"}} {
		resp, body := get(t, srv.URL+"/v1/topics", basic(c.user, c.pass))
		if resp.StatusCode != http.StatusOK || body != c.user {
			t.Errorf("%s: %d %q", c.user, resp.StatusCode, body)
		}
	}
	resp, body = get(t, srv.URL+"/healthz", nil)
	if resp.StatusCode != http.StatusOK || body != "(nobody)" {
		t.Errorf("public path: %d %q", resp.StatusCode, body)
	}
	// A public path with credentials passes them through unchecked.
	resp, _ = get(t, srv.URL+"/healthz", basic("alice", "wrong"))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("public path with bad credentials: %d", resp.StatusCode)
	}
	if got := counter(m.failures, BasicMechanism); got != 4 {
		t.Errorf("failures{http-basic} = %v, want 4", got)
	}

	// nil public: everything needs credentials.
	srv2 := httptest.NewServer(a.Wrap(http.NotFoundHandler(), nil))
	defer srv2.Close()
	if resp, _ := get(t, srv2.URL+"/healthz", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("nil public: %d", resp.StatusCode)
	}
	if _, ok := User(t.Context()); ok {
		t.Error("User of a bare context reported a user")
	}
}

func basicRequest(user, pass string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return r
}

// TestHTTPCache: a verified password is remembered until the users file
// changes; the successes counter shows derivations, not requests.
func TestHTTPCache(t *testing.T) {
	t.Parallel() // waits for once-a-second rechecks
	path, s, m := newStore(t, "alice", "s3cret")
	a := NewHTTPAuth(s, "herald")
	check := func(user, pass string) bool {
		u, ok := a.Check(basicRequest(user, pass))
		if ok && u != user {
			t.Fatalf("Check(%q) authenticated %q", user, u)
		}
		return ok
	}
	for range 100 {
		if !check("alice", "s3cret") {
			t.Fatal("alice refused")
		}
	}
	if got := counter(m.successes, BasicMechanism); got != 1 {
		t.Fatalf("successes{http-basic} = %v after 100 checks, want 1 (cached)", got)
	}
	// A wrong password is not cached as right, nor is a right password
	// for another name.
	for range 3 {
		if check("alice", "S3cret") || check("mallory", "s3cret") {
			t.Fatal("wrong credentials accepted")
		}
	}
	if got := counter(m.failures, BasicMechanism); got != 6 {
		t.Fatalf("failures{http-basic} = %v, want 6 (failures are never cached)", got)
	}
	// Concurrent checks (for the race detector).
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if !check("alice", "s3cret") {
					t.Error("alice refused")
					return
				}
			}
		})
	}
	wg.Wait()

	// Adding a user changes the file: the cache is dropped, alice's
	// password is derived once more, then cached again.
	if _, err := AddUser(path, "bob", "b0b", MinIterations); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob", func() bool { return check("bob", "b0b") })
	check("alice", "s3cret")
	check("alice", "s3cret")
	if got := counter(m.successes, BasicMechanism); got < 3 || got > 4 {
		t.Fatalf("successes{http-basic} = %v, want alice once more (3, or 4 if a check straddled the reload)", got)
	}
	// Removing alice refuses her cached credentials once the file is
	// reread.
	if _, err := RemoveUser(path, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's removal", func() bool { return !check("alice", "s3cret") })
	time.Sleep(1100 * time.Millisecond)
	if check("alice", "s3cret") {
		t.Fatal("a removed user authenticated")
	}
	if !check("bob", "b0b") {
		t.Fatal("bob refused")
	}
}

// BenchmarkHTTPCheck compares a cached Basic check with one that derives
// the key (the cache is what keeps per-request cost low; the test above
// asserts it through the successes counter).
func BenchmarkHTTPCheck(b *testing.B) {
	_, s, _ := newStore(b, "alice", "s3cret")
	b.Run("cached", func(b *testing.B) {
		a := NewHTTPAuth(s, "herald")
		r := basicRequest("alice", "s3cret")
		for b.Loop() {
			if _, ok := a.Check(r); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			if !s.VerifyPassword("alice", "s3cret") {
				b.Fatal("refused")
			}
		}
	})
}

// serial returns the serial of the certificate in a PEM file.
func serial(t *testing.T, path string) *big.Int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

// tlsServer serves "ok" with cfg.
func tlsServer(t *testing.T, cfg *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = cfg
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// servedSerial makes a new TLS connection and returns the serial of the
// certificate the server presents.
func servedSerial(t *testing.T, addr string, cfg *tls.Config) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, to, b)
}

func TestServerTLSReload(t *testing.T) {
	t.Parallel() // waits for once-a-second rechecks
	dir := t.TempDir()
	files := tlstest.New(t, dir)
	m := NewMetrics()
	cfg, err := ServerTLS(TLSFiles{Cert: files.Cert, Key: files.Key}, quietLogger(), m)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.NoClientCert {
		t.Fatalf("MinVersion %x, ClientAuth %v", cfg.MinVersion, cfg.ClientAuth)
	}
	srv := tlsServer(t, cfg)
	addr := srv.Listener.Addr().String()
	client := files.ClientConfig(t, false)
	first := serial(t, files.Cert)
	if got := servedSerial(t, addr, client); got.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want %v", got, first)
	}
	// An HTTPS request goes through.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Renewal: a new pair copied over the served files.
	newCert, newKey := files.Issue(t, t.TempDir(), "renewed", x509.ExtKeyUsageServerAuth)
	second := serial(t, newCert)
	copyFile(t, newCert, files.Cert)
	copyFile(t, newKey, files.Key)
	waitFor(t, "the renewed certificate", func() bool { return servedSerial(t, addr, client).Cmp(second) == 0 })
	if got := testutil.ToFloat64(m.tlsReloads); got != 1 {
		t.Errorf("herald_tls_certificate_reloads_total = %v, want 1", got)
	}
	// Only this test's handshakes check the files, so no half-copied
	// state was seen: nothing failed.
	if got := testutil.ToFloat64(m.tlsFailures); got != 0 {
		t.Errorf("herald_tls_certificate_reload_failures_total = %v, want 0", got)
	}

	// Garbage keeps the renewed certificate in service.
	writeAtomic(t, files.Cert, []byte("not a certificate\n"))
	waitFor(t, "the failed reload to be counted", func() bool {
		if got := servedSerial(t, addr, client); got.Cmp(second) != 0 {
			t.Fatalf("served serial %v after a bad certificate, want %v", got, second)
		}
		return testutil.ToFloat64(m.tlsFailures) >= 1
	})
	// A key that does not match the certificate is refused too.
	_, otherKey := files.Issue(t, t.TempDir(), "other", x509.ExtKeyUsageServerAuth)
	copyFile(t, otherKey, files.Key)
	copyFile(t, newCert, files.Cert)
	base := testutil.ToFloat64(m.tlsFailures)
	waitFor(t, "the mismatched pair to be counted", func() bool {
		if got := servedSerial(t, addr, client); got.Cmp(second) != 0 {
			t.Fatalf("served serial %v after a mismatched pair, want %v", got, second)
		}
		return testutil.ToFloat64(m.tlsFailures) >= base+1
	})
	if got := testutil.ToFloat64(m.tlsReloads); got != 1 {
		t.Errorf("herald_tls_certificate_reloads_total = %v, want 1", got)
	}
	// Deleting the files keeps the certificate as well, counted once.
	base = testutil.ToFloat64(m.tlsFailures)
	os.Remove(files.Cert)
	time.Sleep(1100 * time.Millisecond)
	if got := servedSerial(t, addr, client); got.Cmp(second) != 0 {
		t.Fatalf("served serial %v with the files gone, want %v", got, second)
	}
	time.Sleep(1100 * time.Millisecond)
	servedSerial(t, addr, client)
	if got := testutil.ToFloat64(m.tlsFailures); got != base+1 {
		t.Errorf("herald_tls_certificate_reload_failures_total went from %v to %v with the file gone: want one more", base, got)
	}
}

func TestServerTLSClientCA(t *testing.T) {
	files := tlstest.New(t, t.TempDir())
	cfg, err := ServerTLS(TLSFiles{Cert: files.Cert, Key: files.Key, ClientCA: files.CA}, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Fatalf("ClientAuth %v", cfg.ClientAuth)
	}
	srv := tlsServer(t, cfg)
	do := func(withCert bool) error {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: files.ClientConfig(t, withCert)}, Timeout: 10 * time.Second}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(srv.URL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			t.Fatalf("body %q", b)
		}
		return nil
	}
	if err := do(true); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	if err := do(false); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	// A certificate signed by another CA is refused.
	other := tlstest.New(t, t.TempDir())
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: func() *tls.Config {
		c := other.ClientConfig(t, true)
		c.RootCAs = files.ClientConfig(t, false).RootCAs
		return c
	}()}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	if resp, err := hc.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Fatal("a client certificate from another CA got through")
	}
}

func TestServerTLSErrors(t *testing.T) {
	dir := t.TempDir()
	files := tlstest.New(t, dir)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o600)
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("just text\n"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		name  string
		files TLSFiles
		want  []string
	}{
		{"no cert", TLSFiles{Key: files.Key}, []string{"TLS needs both a certificate and a key file"}},
		{"no key", TLSFiles{Cert: files.Cert}, []string{"TLS needs both a certificate and a key file"}},
		{"missing cert", TLSFiles{Cert: missing, Key: files.Key}, []string{"TLS: ", missing}},
		{"missing key", TLSFiles{Cert: files.Cert, Key: missing}, []string{"TLS: ", missing}},
		{"bad cert PEM", TLSFiles{Cert: garbage, Key: files.Key}, []string{"TLS certificate " + garbage + " and key " + files.Key}},
		{"bad key PEM", TLSFiles{Cert: files.Cert, Key: empty}, []string{"TLS certificate " + files.Cert + " and key " + empty}},
		{"cert as key", TLSFiles{Cert: files.Cert, Key: files.Cert}, []string{"TLS certificate"}},
		{"mismatched pair", TLSFiles{Cert: files.Cert, Key: files.ClientKey}, []string{"TLS certificate", "private key does not match"}},
		{"missing client CA", TLSFiles{Cert: files.Cert, Key: files.Key, ClientCA: missing}, []string{"TLS client CA: ", missing}},
		{"client CA without certificates", TLSFiles{Cert: files.Cert, Key: files.Key, ClientCA: empty}, []string{"TLS client CA " + empty + ": no PEM certificate in it"}},
		{"client CA is a key", TLSFiles{Cert: files.Cert, Key: files.Key, ClientCA: files.Key}, []string{"no PEM certificate in it"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ServerTLS(c.files, quietLogger(), nil)
			if cfg != nil {
				t.Error("a configuration came with the error")
			}
			wantErr(t, err, c.want...)
		})
	}
}

// scramAnswers runs a SCRAM conversation and returns the server's answers
// and its final error.
func scramAnswers(t *testing.T, s *Store, mech, user, pass string) ([]string, error) {
	t.Helper()
	conv, sess := scramPair(t, s, mech, user, pass, "")
	var answers []string
	in := ""
	for range 3 {
		msg, err := conv.Step(in)
		if err != nil {
			t.Fatalf("client: %v", err)
		}
		out, done, serr := sess.Step([]byte(msg))
		answers = append(answers, string(out))
		if done {
			return answers, serr
		}
		in = string(out)
	}
	t.Fatal("SCRAM conversation did not end")
	return nil, nil
}

// serverFirst splits a server-first message into its salt and iterations.
func serverFirst(t *testing.T, msg string) (salt, iters string) {
	t.Helper()
	f := strings.Split(msg, ",")
	if len(f) != 3 || !strings.HasPrefix(f[0], "r=") || !strings.HasPrefix(f[1], "s=") || !strings.HasPrefix(f[2], "i=") {
		t.Fatalf("server-first message %q", msg)
	}
	return f[1], f[2]
}

// TestSCRAMUnknownUser: to a client, an unknown user looks like a known
// one with a wrong password (RFC 5802 section 9 advises it): the same
// number of steps, a salt stable per name, the iterations real users
// have, and the same final answer, so SCRAM cannot list the users.
func TestSCRAMUnknownUser(t *testing.T) {
	_, s, m := newStore(t, "alice", "s3cret")
	for _, mech := range []string{ScramSHA256, ScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			wrong, err := scramAnswers(t, s, mech, "alice", "wrong")
			if !errors.Is(err, ErrAuthFailed) || len(wrong) != 2 {
				t.Fatalf("wrong password: answers %q, err %v", wrong, err)
			}
			before := counter(m.failures, mech)
			unknown, err := scramAnswers(t, s, mech, "mallory", "s3cret")
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("unknown user: err %v", err)
			}
			wantErr(t, err, `user "mallory": wrong user name or password`)
			if got := counter(m.failures, mech); got != before+1 {
				t.Errorf("failures went from %v to %v", before, got)
			}
			if len(unknown) != len(wrong) {
				t.Fatalf("unknown user: answers %q; a wrong password gets %q", unknown, wrong)
			}
			if unknown[1] != wrong[1] {
				t.Errorf("final answer %q for an unknown user, %q for a wrong password", unknown[1], wrong[1])
			}
			realSalt, realIters := serverFirst(t, wrong[0])
			salt, iters := serverFirst(t, unknown[0])
			if iters != realIters || len(salt) != len(realSalt) || salt == realSalt {
				t.Errorf("unknown user's %s %s, alice's %s %s", salt, iters, realSalt, realIters)
			}
			again, _ := scramAnswers(t, s, mech, "mallory", "other")
			if salt2, _ := serverFirst(t, again[0]); salt2 != salt {
				t.Errorf("unknown user's salt changed from %s to %s", salt, salt2)
			}
			other, _ := scramAnswers(t, s, mech, "mallory2", "s3cret")
			if salt3, _ := serverFirst(t, other[0]); salt3 == salt {
				t.Error("two unknown users share a salt")
			}
		})
	}
}

// scramByHand runs a SCRAM exchange computing the client's side here, so
// the final message can repeat the client nonce before the combined one
// as librdkafka up to 2.x does; it returns the server's final answer.
func scramByHand(t *testing.T, s *Store, mech string, h func() hash.Hash, user, pass string, doubled bool) (string, error) {
	t.Helper()
	sess, err := s.Start(mech)
	if err != nil {
		t.Fatal(err)
	}
	const cnonce = "fyko+d2lbbFgONRv9qkxdawL"
	bare := "n=" + user + ",r=" + cnonce
	first, done, err := sess.Step([]byte("n,," + bare))
	if err != nil || done {
		t.Fatalf("client-first: %v (done %v)", err, done)
	}
	var nonce, salt string
	var iters int
	for _, a := range strings.Split(string(first), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			b, _ := base64.StdEncoding.DecodeString(a[2:])
			salt = string(b)
		case strings.HasPrefix(a, "i="):
			iters, _ = strconv.Atoi(a[2:])
		}
	}
	if !strings.HasPrefix(nonce, cnonce) || len(nonce) <= len(cnonce) {
		t.Fatalf("server nonce %q does not extend the client's", nonce)
	}
	salted, err := pbkdf2.Key(h, pass, []byte(salt), iters, h().Size())
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(h, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	hh := h()
	hh.Write(clientKey)
	storedKey := hh.Sum(nil)
	r := nonce
	if doubled {
		r = cnonce + nonce
	}
	withoutProof := "c=biws,r=" + r
	authMsg := bare + "," + string(first) + "," + withoutProof
	sig := mac(storedKey, authMsg)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	final, done, err := sess.Step([]byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)))
	if !done {
		t.Fatal("not done after client-final")
	}
	if err == nil {
		want := "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, "Server Key"), authMsg))
		if string(final) != want {
			t.Fatalf("server signature %q, want %q", final, want)
		}
		if sess.User() != user {
			t.Fatalf("user %q", sess.User())
		}
	}
	return string(final), err
}

// TestSCRAMLibrdkafkaNonce: the final message may carry the client nonce
// again before the combined one (librdkafka up to 2.x does; Kafka brokers
// accept it), and the proof is checked over the message as sent. Any
// other nonce is refused.
func TestSCRAMLibrdkafkaNonce(t *testing.T) {
	_, s, _ := newStore(t, "alice", "pw")
	for _, tc := range []struct {
		mech string
		h    func() hash.Hash
	}{{ScramSHA256, sha256.New}, {ScramSHA512, sha512.New}} {
		for _, doubled := range []bool{false, true} {
			if _, err := scramByHand(t, s, tc.mech, tc.h, "alice", "pw", doubled); err != nil {
				t.Errorf("%s, doubled %v: %v", tc.mech, doubled, err)
			}
			if out, err := scramByHand(t, s, tc.mech, tc.h, "alice", "nope", doubled); err == nil || out != "e=invalid-proof" {
				t.Errorf("%s, doubled %v, wrong password: %q %v", tc.mech, doubled, out, err)
			}
		}
		sess, _ := s.Start(tc.mech)
		sess.Step([]byte("n,,n=alice,r=abc"))
		if _, _, err := sess.Step([]byte("c=biws,r=abcXYZ,p=AAAA")); err == nil || !strings.Contains(err.Error(), "nonce is not the one agreed") {
			t.Errorf("%s: a foreign nonce: %v", tc.mech, err)
		}
	}
}

// TestHTTPFailureDelay: wrong credentials are answered after
// FailureDelay; missing ones (a browser's first request) at once.
func TestHTTPFailureDelay(t *testing.T) {
	_, s, _ := newStore(t, "alice", "pw")
	a := NewHTTPAuth(s, "test")
	a.FailureDelay = 300 * time.Millisecond
	srv := httpServer(t, a)
	start := time.Now()
	if resp, _ := get(t, srv.URL+"/x", basic("alice", "nope")); resp.StatusCode != 401 {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("wrong password answered after %v, want at least 300ms", took)
	}
	start = time.Now()
	if resp, _ := get(t, srv.URL+"/x", nil); resp.StatusCode != 401 {
		t.Fatalf("no credentials: %d", resp.StatusCode)
	}
	if took := time.Since(start); took >= 300*time.Millisecond {
		t.Errorf("a request without credentials waited %v", took)
	}
}

// scramPair starts a server session of s and an xdg-go/scram client
// conversation for mech.
func scramPair(t *testing.T, s *Store, mech, user, pass, authz string) (*scram.ClientConversation, Session) {
	t.Helper()
	h := scram.SHA256
	if mech == ScramSHA512 {
		h = scram.SHA512
	}
	cl, err := h.NewClient(user, pass, authz)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.Start(mech)
	if err != nil {
		t.Fatal(err)
	}
	return cl.NewConversation(), sess
}
