package vfs

import (
	"errors"
	"io"
	"sync"
)

// Op names an operation that an Injector can fail.
type Op string

// Operations an Injector sees.
const (
	OpWrite  Op = "write"
	OpSync   Op = "sync"
	OpCreate Op = "create"
	OpRename Op = "rename"
)

// ErrInjected is the error an ErrorFS returns for an injected fault.
var ErrInjected = errors.New("injected fault")

// Injector decides whether an operation on a file fails. It returns nil to
// let the operation run.
type Injector func(op Op, name string) error

// ErrorFS wraps an FS and fails the operations its injector chooses. It is
// for tests of failure handling; swap the injector at any time with Set.
type ErrorFS struct {
	FS
	mu  sync.Mutex
	inj Injector
}

// NewErrorFS wraps fsys; with a nil injector nothing fails until Set.
func NewErrorFS(fsys FS, inj Injector) *ErrorFS { return &ErrorFS{FS: fsys, inj: inj} }

// Set replaces the injector.
func (e *ErrorFS) Set(inj Injector) {
	e.mu.Lock()
	e.inj = inj
	e.mu.Unlock()
}

func (e *ErrorFS) check(op Op, name string) error {
	e.mu.Lock()
	inj := e.inj
	e.mu.Unlock()
	if inj == nil {
		return nil
	}
	return inj(op, name)
}

func (e *ErrorFS) wrap(f File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return &errorFile{File: f, fs: e}, nil
}

// Create implements FS.
func (e *ErrorFS) Create(name string) (File, error) {
	if err := e.check(OpCreate, name); err != nil {
		return nil, err
	}
	return e.wrap(e.FS.Create(name))
}

// OpenRW implements FS.
func (e *ErrorFS) OpenRW(name string) (File, error) { return e.wrap(e.FS.OpenRW(name)) }

// Open implements FS.
func (e *ErrorFS) Open(name string) (File, error) { return e.wrap(e.FS.Open(name)) }

// Rename implements FS.
func (e *ErrorFS) Rename(oldname, newname string) error {
	if err := e.check(OpRename, newname); err != nil {
		return err
	}
	return e.FS.Rename(oldname, newname)
}

// SyncDir implements FS.
func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.check(OpSync, dir); err != nil {
		return err
	}
	return e.FS.SyncDir(dir)
}

// Lock implements FS.
func (e *ErrorFS) Lock(name string) (io.Closer, error) { return e.FS.Lock(name) }

type errorFile struct {
	File
	fs *ErrorFS
}

func (f *errorFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpWrite, f.Name()); err != nil {
		// A failing disk often writes part of the buffer first.
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, err
	}
	return f.File.WriteAt(p, off)
}

func (f *errorFile) Sync() error {
	if err := f.fs.check(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}
