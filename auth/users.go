// Package auth authenticates Herald's clients: a users file of salted
// SCRAM credentials (never passwords), SASL sessions for the Kafka
// listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), HTTP Basic
// authentication against the same users, and TLS configurations that
// pick up renewed certificates without a restart.
//
// The users file is JSON, written by "herald user add":
//
//	{"users": {"alice": {
//	    "SCRAM-SHA-256": {"salt": "…", "iterations": 4096, "stored_key": "…", "server_key": "…"},
//	    "SCRAM-SHA-512": {…}}}}
//
// A Store rereads the file when its modification time or size changes,
// so users are added and removed without restarting the server.
package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/xdg-go/scram"
)

// The SASL mechanisms Herald accepts.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Mechanisms lists the mechanisms in the order servers advertise them.
var Mechanisms = []string{ScramSHA512, ScramSHA256, Plain}

// scramMechs are the mechanisms whose credentials the file stores.
var scramMechs = map[string]scram.HashGeneratorFcn{ScramSHA256: scram.SHA256, ScramSHA512: scram.SHA512}

// MinIterations is the fewest PBKDF2 iterations a credential may have
// (RFC 7677 and Kafka's minimum); DefaultIterations is what new ones get.
const (
	MinIterations     = 4096
	DefaultIterations = 8192
	// MaxIterations bounds the work one authentication can cost.
	MaxIterations = 1 << 20
)

// MaxNameBytes bounds a user name.
const MaxNameBytes = 256

// ErrUnknownUser is returned for a user the file does not have.
var ErrUnknownUser = errors.New("unknown user")

// Credential is one mechanism's stored credential, as the file holds it.
type Credential struct {
	Salt       []byte `json:"salt"`
	Iterations int    `json:"iterations"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

func (c Credential) stored() scram.StoredCredentials {
	return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations}, StoredKey: c.StoredKey, ServerKey: c.ServerKey}
}

// File is the users file's content.
type File struct {
	Users map[string]map[string]Credential `json:"users"`
}

// validate checks every user and credential, naming the first bad one.
func (f *File) validate() error {
	for _, name := range f.Names() {
		if err := CheckName(name); err != nil {
			return err
		}
		creds := f.Users[name]
		if len(creds) == 0 {
			return fmt.Errorf("user %q has no credentials", name)
		}
		for mech, c := range creds {
			h, ok := scramMechs[mech]
			if !ok {
				return fmt.Errorf("user %q: unknown mechanism %q (want %s or %s)", name, mech, ScramSHA256, ScramSHA512)
			}
			size := h().Size()
			switch {
			case c.Iterations < MinIterations || c.Iterations > MaxIterations:
				return fmt.Errorf("user %q, %s: %d iterations: want %d to %d", name, mech, c.Iterations, MinIterations, MaxIterations)
			case len(c.Salt) < 8:
				return fmt.Errorf("user %q, %s: salt of %d bytes: want at least 8", name, mech, len(c.Salt))
			case len(c.StoredKey) != size || len(c.ServerKey) != size:
				return fmt.Errorf("user %q, %s: keys of %d and %d bytes: want %d", name, mech, len(c.StoredKey), len(c.ServerKey), size)
			}
		}
	}
	return nil
}

// Names returns the users' names, sorted.
func (f *File) Names() []string {
	names := make([]string, 0, len(f.Users))
	for n := range f.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckName checks a user name: 1 to MaxNameBytes bytes of UTF-8 with no
// control characters, and no ':' (HTTP Basic credentials split there).
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("user name of %d bytes: want at most %d", len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("user name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == ':' {
			return fmt.Errorf("user name %q: %q is not allowed", name, r)
		}
	}
	return nil
}

// NewCredentials derives the credentials of every mechanism for a password
// with fresh salts.
func NewCredentials(name, password string, iterations int) (map[string]Credential, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if password == "" {
		return nil, errors.New("empty password")
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return nil, fmt.Errorf("%d iterations: want %d to %d", iterations, MinIterations, MaxIterations)
	}
	out := make(map[string]Credential, len(scramMechs))
	for mech, h := range scramMechs {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		cl, err := h.NewClient(name, password, "")
		if err != nil {
			if _, nerr := h.NewClient(name, "p", ""); nerr != nil {
				return nil, fmt.Errorf("user name %q: %w", name, nerr)
			}
			// NB: the library's error quotes the password; never show it.
			return nil, errors.New("password refused by SASLprep (RFC 4013): no control characters, and no characters unassigned in Unicode 3.2 (such as emoji)")
		}
		sc, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iterations})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mech, err)
		}
		out[mech] = Credential{Salt: salt, Iterations: iterations, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}
	}
	return out, nil
}

// ReadFile reads and checks a users file; a missing file is an empty one.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Users: map[string]map[string]Credential{}}, nil
	}
	if err != nil {
		return nil, err
	}
	return parseFile(path, b)
}

func parseFile(path string, b []byte) (*File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	// NB: Decode stops after one value; anything but space after it
	// (a second object from a bad merge, a torn write) is refused.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("users file %s: data after the users object at byte %d", path, dec.InputOffset())
	}
	if f.Users == nil {
		f.Users = map[string]map[string]Credential{}
	}
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return &f, nil
}

// WriteFile replaces the users file atomically (a synced temporary file
// renamed over it), readable by its owner only.
func WriteFile(path string, f *File) error {
	if err := f.validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Store answers credential lookups from a users file, rereading it when it
// changes. A file that becomes unreadable or invalid keeps the users last
// read (logged and counted), so a bad edit locks nobody out mid-way.
type Store struct {
	path   string
	logger *slog.Logger
	m      *Metrics

	mu      sync.Mutex
	file    *File
	stamp   fileStamp
	checked time.Time
	gen     uint64 // bumped on every reload (caches key on it)

	decoyKey [32]byte // derives unknown users' decoy SCRAM credentials
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(st fs.FileInfo) fileStamp { return fileStamp{st.ModTime(), st.Size()} }

// recheckEvery bounds how often a Store stats its file.
const recheckEvery = time.Second

// OpenStore reads the users file at path (which must exist and be valid).
// m may be nil.
func OpenStore(path string, logger *slog.Logger, m *Metrics) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if m == nil {
		m = NewMetrics()
	}
	s := &Store{path: path, logger: logger, m: m}
	if _, err := rand.Read(s.decoyKey[:]); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	f, err := parseFile(path, b)
	if err != nil {
		return nil, err
	}
	if len(f.Users) == 0 {
		return nil, fmt.Errorf("users file %s has no users (add one with herald user add)", path)
	}
	s.file, s.stamp, s.checked = f, stampOf(st), time.Now()
	m.users.Set(float64(len(f.Users)))
	return s, nil
}

// Path is the users file's path.
func (s *Store) Path() string { return s.path }

// Metrics returns the store's metrics, shared by the listeners that use it.
func (s *Store) Metrics() *Metrics { return s.m }

// current returns the users, rereading the file if it changed.
func (s *Store) current() (*File, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.checked) < recheckEvery {
		return s.file, s.gen
	}
	s.checked = now
	st, err := os.Stat(s.path)
	if err != nil {
		// Counted and logged once, not at every check until it is back.
		if s.stamp != (fileStamp{}) {
			s.reloadFailed(err)
			s.stamp = fileStamp{}
		}
		return s.file, s.gen
	}
	if stampOf(st) == s.stamp {
		return s.file, s.gen
	}
	b, err := os.ReadFile(s.path)
	if err == nil {
		var f *File
		if f, err = parseFile(s.path, b); err == nil {
			s.file, s.stamp = f, stampOf(st)
			s.gen++
			s.m.reloads.Inc()
			s.m.users.Set(float64(len(f.Users)))
			s.logger.Info("auth: users file reloaded", "path", s.path, "users", len(f.Users))
			return s.file, s.gen
		}
	}
	s.reloadFailed(err)
	// Try again at the next check rather than on every lookup.
	s.stamp = stampOf(st)
	return s.file, s.gen
}

func (s *Store) reloadFailed(err error) {
	s.m.reloadFailures.Inc()
	s.logger.Error("auth: users file unreadable; keeping the users read before", "path", s.path, "err", err)
}

// Credential returns name's stored credential for a SCRAM mechanism.
func (s *Store) Credential(mech, name string) (scram.StoredCredentials, error) {
	f, _ := s.current()
	c, ok := f.Users[name][mech]
	if !ok {
		return scram.StoredCredentials{}, ErrUnknownUser
	}
	return c.stored(), nil
}

// VerifyPassword reports whether password is name's, checking it against
// the SHA-256 credential (or the SHA-512 one when that is all there is).
// It costs one PBKDF2 derivation.
func (s *Store) VerifyPassword(name, password string) bool {
	f, _ := s.current()
	return verify(f, name, password)
}

func verify(f *File, name, password string) bool {
	creds := f.Users[name]
	for _, mech := range []string{ScramSHA256, ScramSHA512} {
		c, ok := creds[mech]
		if !ok {
			continue
		}
		cl, err := scramMechs[mech].NewClient(name, password, "")
		if err != nil {
			return false
		}
		sc, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations})
		if err != nil {
			return false
		}
		return subtle.ConstantTimeCompare(sc.StoredKey, c.StoredKey) == 1
	}
	return false
}

// HasUser reports whether the file has name.
func (s *Store) HasUser(name string) bool {
	f, _ := s.current()
	_, ok := f.Users[name]
	return ok
}

// Users returns the users' names, sorted.
func (s *Store) Users() []string {
	f, _ := s.current()
	return slices.Clone(f.Names())
}

// AddUser adds name to the users file at path (creating it), or sets its
// password if it is there; it reports whether the user was new.
func AddUser(path, name, password string, iterations int) (created bool, err error) {
	creds, err := NewCredentials(name, password, iterations)
	if err != nil {
		return false, err
	}
	unlock, err := lockDir(path)
	if err != nil {
		return false, err
	}
	defer unlock()
	f, err := ReadFile(path)
	if err != nil {
		return false, err
	}
	_, had := f.Users[name]
	f.Users[name] = creds
	return !had, WriteFile(path, f)
}

// RemoveUser removes name from the users file at path; it reports
// whether the user was there.
func RemoveUser(path, name string) (bool, error) {
	unlock, err := lockDir(path)
	if err != nil {
		return false, err
	}
	defer unlock()
	f, err := ReadFile(path)
	if err != nil {
		return false, err
	}
	if _, ok := f.Users[name]; !ok {
		return false, nil
	}
	delete(f.Users, name)
	return true, WriteFile(path, f)
}

// lockDir holds an exclusive lock on the directory of the users file at
// path until the returned function is called, so that two edits (two
// "herald user" commands at once) do not both read the old file and the
// second rename lose the first one's change. It waits for the lock.
func lockDir(path string) (func(), error) {
	dir := filepath.Dir(path)
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("lock %s for the users file: %w", dir, err)
	}
	return func() { d.Close() }, nil // closing releases the lock
}
