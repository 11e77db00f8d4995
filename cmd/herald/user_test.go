package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldhq/herald/auth"
)

// TestUserCommands: herald user add, list and remove, and their errors.
func TestUserCommands(t *testing.T) {
	s := &cliServer{} // no server: these commands only touch the file
	path := filepath.Join(t.TempDir(), "users.json")
	if out := s.ok(t, "pw1\n", "user", "add", "alice", "--users", path, "--iterations", "4096"); out != `user "alice" added in `+path+"\n" {
		t.Fatalf("add: %q", out)
	}
	if out := s.ok(t, "pw2\r\nignored\n", "user", "add", "alice", "--users", path, "--iterations", "4096"); !strings.Contains(out, "password changed") {
		t.Fatalf("add again: %q", out)
	}
	t.Setenv("HERALD_USERS", path)
	s.ok(t, "b", "user", "add", "bob", "--iterations", "5000") // no trailing newline
	store, err := auth.OpenStore(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !store.VerifyPassword("alice", "pw2") || store.VerifyPassword("alice", "pw1") || !store.VerifyPassword("bob", "b") {
		t.Fatal("the file does not hold the passwords given")
	}
	if out := s.ok(t, "", "user", "list"); out != "NAME   MECHANISMS                   ITERATIONS\nalice  SCRAM-SHA-256,SCRAM-SHA-512  4096\nbob    SCRAM-SHA-256,SCRAM-SHA-512  5000\n" {
		t.Fatalf("list:\n%s", out)
	}
	var rows []struct {
		Name       string
		Mechanisms []string
	}
	if err := json.Unmarshal([]byte(s.ok(t, "", "user", "list", "-o", "json")), &rows); err != nil || len(rows) != 2 || rows[1].Name != "bob" {
		t.Fatalf("list -o json: %v %+v", err, rows)
	}
	s.fails(t, exitNotFound, `user "carol" not found`, "", "user", "remove", "carol", "alice")
	if out := s.ok(t, "", "user", "list"); strings.Contains(out, "alice") {
		t.Fatalf("alice not removed after the failed name before her:\n%s", out)
	}
	s.fails(t, exitUsage, "no password on standard input", "", "user", "add", "carol")
	s.fails(t, exitUsage, `user name "a:b"`, "pw\n", "user", "add", "a:b")
	s.fails(t, exitUsage, "--iterations 10: want 4096 to 1048576", "pw\n", "user", "add", "carol", "--iterations", "10")
	s.fails(t, exitUsage, "accepts 1 arg", "", "user", "add")
	t.Setenv("HERALD_USERS", "")
	s.fails(t, exitUsage, "--users: name the users file", "pw\n", "user", "add", "carol")
	s.fails(t, exitNotFound, "no such file", "", "user", "list", "--users", path+".nope")
	if err := os.WriteFile(path, []byte(`{"users":{"x":{}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s.fails(t, exitFailure, `user "x" has no credentials`, "", "user", "list", "--users", path)
}

// TestServeSecurityFlags: bad --users, --tls-* and --sasl-mechanisms stop
// herald serve before it listens, saying what is wrong.
func TestServeSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users.json")
	if _, err := auth.AddUser(users, "alice", "pw", auth.MinIterations); err != nil {
		t.Fatal(err)
	}
	s := &cliServer{}
	base := []string{"serve", "--data", filepath.Join(dir, "data"), "--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--registry-addr", ""}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--users", filepath.Join(dir, "none.json")}, "--users: users file: stat"},
		{[]string{"--users", users, "--sasl-mechanisms", "GSSAPI"}, `--sasl-mechanisms: SASL mechanism "GSSAPI": want SCRAM-SHA-512, SCRAM-SHA-256, PLAIN`},
		{[]string{"--tls-cert", users}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-cert", users, "--tls-key", users}, "TLS certificate " + users},
	} {
		r := s.run(t, "", append(base, tc.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("serve %v: exit %d, %q; want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
