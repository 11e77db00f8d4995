// Package inproc is a listener that only its own process can reach: Dial
// makes a connected pair of Unix sockets (socketpair(2)) and hands one end
// to Accept. No address, port or file exists for another process to
// connect to, so a server can trust its in-process clients on it (herald
// serve's saga engine, queries and patterns on its Kafka listener) while
// its network listeners demand TLS and authentication.
package inproc

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// Addr is the address of every in-process connection.
type Addr struct{}

func (Addr) Network() string { return "inproc" }
func (Addr) String() string  { return "inproc" }

// Listener accepts the connections Dial makes.
type Listener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// ErrClosed is returned by Dial and Accept once the listener is closed.
var ErrClosed = fmt.Errorf("inproc: %w", net.ErrClosed)

// Listen returns a new in-process listener.
func Listen() *Listener {
	return &Listener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for the next Dial.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	}
}

// Close stops Accept and Dial; connections already made stay open.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is Addr{}.
func (l *Listener) Addr() net.Addr { return Addr{} }

// Dial connects to the listener, whatever network and address say (so it
// can be a client library's dialer), and waits for Accept to take the
// other end.
func (l *Listener) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("inproc: socketpair: %w", err)
	}
	ours, err := fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, err
	}
	theirs, err := fileConn(fds[1])
	if err != nil {
		ours.Close()
		return nil, err
	}
	select {
	case l.ch <- theirs:
		return ours, nil
	case <-l.done:
		err = ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
	}
	ours.Close()
	theirs.Close()
	return nil, err
}

// fileConn makes fd a net.Conn (closing fd: net.FileConn dups it).
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "inproc")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("inproc: %w", err)
	}
	return conn{c}, nil
}

// conn reports Addr{} at both ends (a socketpair's ends have no address).
type conn struct{ net.Conn }

func (conn) LocalAddr() net.Addr  { return Addr{} }
func (conn) RemoteAddr() net.Addr { return Addr{} }
