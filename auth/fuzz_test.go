package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
)

// FuzzParseFile: the users file is read from disk at every change. No
// input panics; whatever is accepted is valid and survives WriteFile and
// ReadFile unchanged.
func FuzzParseFile(f *testing.F) {
	creds, err := NewCredentials("alice", "s3cret", MinIterations)
	if err != nil {
		f.Fatal(err)
	}
	good := &File{Users: map[string]map[string]Credential{
		"alice":           creds,
		"svc=ingest,ou=x": {ScramSHA512: creds[ScramSHA512]},
		"Zoë 日本":          {ScramSHA256: creds[ScramSHA256]},
	}}
	b, err := json.MarshalIndent(good, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	compact, _ := json.Marshal(good)
	f.Add(b)
	f.Add(compact)
	f.Add(append(b, '\n'))
	f.Add(append(b, b...))
	f.Add(b[:len(b)/2])
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `"users"`, `{"users":null}`, `{"users":{}}`, `{"USERS":{}}`,
		`{"users":{}} `, `{"users":{}}x`, `{"users":{},"extra":1}`,
		`{"users":{"a":null}}`, `{"users":{"a":{}}}`, `{"users":{"a":{"SCRAM-SHA-256":null}}}`,
		`{"users":{"a:b":{}}}`, `{"users":{"\u0000":{}}}`, `{"users":{"\ud800":{}}}`, "{\"users\":{\"\xff\":{}}}",
		`{"users":{"a":{"SCRAM-SHA-256":{"salt":"AAAAAAAAAAA=","iterations":4096,"stored_key":"","server_key":""}}}}`,
		`{"users":{"a":{"SCRAM-SHA-256":{"iterations":1e400}}}}`,
		`{"users":{"a":{"SCRAM-SHA-256":{"iterations":-1}}}}`,
		`{"users":{"a":{"SCRAM-SHA-256":{"salt":"%%%"}}}}`,
	} {
		f.Add([]byte(s))
	}
	// Duplicate and escaped keys, case-folded field names.
	f.Add([]byte(strings.Replace(string(compact), `"alice"`, `"\u0061lice"`, 1)))
	f.Add([]byte(strings.Replace(string(compact), `"salt"`, `"SALT"`, 1)))
	f.Add([]byte(strings.Replace(string(compact), `"iterations":4096`, `"iterations":4096,"iterations":1`, 1)))
	path := filepath.Join(f.TempDir(), "users.json")
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := parseFile("fuzz.json", in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "users file fuzz.json: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if got.Users == nil {
			t.Fatal("accepted file has nil Users")
		}
		if err := got.validate(); err != nil {
			t.Fatalf("accepted an invalid file: %v", err)
		}
		if err := WriteFile(path, got); err != nil {
			t.Fatalf("WriteFile of an accepted file: %v", err)
		}
		back, err := ReadFile(path)
		if err != nil {
			t.Fatalf("ReadFile of a written file: %v", err)
		}
		if !reflect.DeepEqual(got, back) {
			t.Fatalf("round trip changed the file:\n%+v\n%+v", got, back)
		}
	})
}

const (
	fuzzUser = "alice"
	fuzzPass = "s3cret"
)

// plainRight is the oracle for PLAIN: the message names alice (acting as
// herself) and carries her password, up to SASLprep's mapping.
func plainRight(msg []byte) bool {
	if len(msg) > MaxSASLBytes {
		return false
	}
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 || string(parts[1]) != fuzzUser || (len(parts[0]) > 0 && string(parts[0]) != fuzzUser) {
		return false
	}
	p, err := stringprep.SASLprep.Prepare(string(parts[2]))
	return err == nil && p == fuzzPass
}

// FuzzSASL: client messages arrive from the network. No sequence of them
// panics, every failure wraps ErrAuthFailed, PLAIN authenticates exactly
// the messages carrying the right password, and SCRAM, whose proofs the
// fuzzer cannot compute (the server's nonce is random), never
// authenticates.
func FuzzSASL(f *testing.F) {
	path := filepath.Join(f.TempDir(), "users.json")
	if _, err := AddUser(path, fuzzUser, fuzzPass, MinIterations); err != nil {
		f.Fatal(err)
	}
	s, err := OpenStore(path, quietLogger(), nil)
	if err != nil {
		f.Fatal(err)
	}
	// Real SCRAM messages: a client-first and the client-final of a
	// conversation with another server (its nonce is not this one's).
	for i, h := range []scram.HashGeneratorFcn{scram.SHA512, scram.SHA256} {
		mech := Mechanisms[i]
		cl, _ := h.NewClient(fuzzUser, fuzzPass, "")
		conv := cl.NewConversation()
		first, _ := conv.Step("")
		sess, _ := s.Start(mech)
		serverFirst, _, _ := sess.Step([]byte(first))
		final, _ := conv.Step(string(serverFirst))
		f.Add(uint8(i), []byte(first), []byte(final), []byte(nil))
		f.Add(uint8(i), []byte(first), []byte(final), []byte(final))
		f.Add(uint8(i), []byte("n,a=bob,n=alice,r=abc"), []byte(final), []byte(nil))
		f.Add(uint8(i), []byte("n,,n=al=2Cice,r=abc"), []byte("c=biws,r=abc,p=AAAA"), []byte(nil))
		f.Add(uint8(i), []byte("p=tls-unique,,n=alice,r=abc"), []byte(nil), []byte(nil))
		f.Add(uint8(i), []byte("y,,n=alice,r=abc,m=ext"), []byte(nil), []byte(nil))
		f.Add(uint8(i), []byte("n,,n=mallory,r=abc"), []byte("c=biws,r=abc,p=AAAA"), []byte(nil))
		f.Add(uint8(i), []byte("\x00alice\x00s3cret"), []byte(nil), []byte(nil))
	}
	for _, m := range []string{
		"\x00alice\x00s3cret", "alice\x00alice\x00s3cret", "bob\x00alice\x00s3cret", "\x00alice\x00s3\u00adcret",
		"\x00alice\x00S3cret", "\x00alice\x00", "\x00\x00", "", "alice", "\x00alice\x00s3cret\x00",
		"\x00mallory\x00s3cret", "\x00alice\x00" + strings.Repeat("s", MaxSASLBytes),
	} {
		f.Add(uint8(2), []byte(m), []byte(nil), []byte(nil))
	}
	f.Fuzz(func(t *testing.T, mechIdx uint8, m1, m2, m3 []byte) {
		mech := Mechanisms[int(mechIdx)%len(Mechanisms)]
		sess, err := s.Start(mech)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range [][]byte{m1, m2, m3} {
			out, done, err := sess.Step(m)
			if err != nil {
				if !done {
					t.Fatalf("%s step %d: error %v without done", mech, i, err)
				}
				if !errors.Is(err, ErrAuthFailed) {
					t.Fatalf("%s step %d: error %v does not wrap ErrAuthFailed", mech, i, err)
				}
				if sess.User() != "" {
					t.Fatalf("%s: user %q after a failure", mech, sess.User())
				}
				if mech == Plain && plainRight(m) {
					t.Fatalf("PLAIN refused the right password in %q: %v", m, err)
				}
				return
			}
			if !done {
				if mech == Plain {
					t.Fatal("PLAIN session not done after one message")
				}
				if len(out) == 0 {
					t.Fatalf("%s step %d: no answer", mech, i)
				}
				continue
			}
			if mech != Plain {
				t.Fatalf("%s authenticated %q from fuzzed messages %q, %q, %q", mech, sess.User(), m1, m2, m3)
			}
			if !plainRight(m) {
				t.Fatalf("PLAIN authenticated %q without the right password: %q", sess.User(), m)
			}
			if sess.User() != fuzzUser {
				t.Fatalf("PLAIN authenticated as %q", sess.User())
			}
			return
		}
		if mech == Plain {
			t.Fatal("PLAIN session never finished")
		}
	})
}
