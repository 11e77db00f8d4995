package inproc

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestDialAccept: bytes flow both ways between Dial's and Accept's ends,
// closing one end is EOF at the other, and both ends report Addr{}.
func TestDialAccept(t *testing.T) {
	l := Listen()
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := l.Dial(context.Background(), "tcp", "ignored:1")
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if c.LocalAddr().String() != "inproc" || s.RemoteAddr().Network() != "inproc" {
		t.Fatalf("addresses %v %v", c.LocalAddr(), s.RemoteAddr())
	}
	big := make([]byte, 1<<20) // more than a socket buffer: needs both sides moving
	for i := range big {
		big[i] = byte(i)
	}
	go func() {
		s.Write(big)
		s.Close()
	}()
	got, err := io.ReadAll(c)
	if err != nil || len(got) != len(big) || got[12345] != big[12345] {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		// A write may succeed once before the peer's close is seen; a
		// second one fails.
		time.Sleep(10 * time.Millisecond)
		if _, err := c.Write([]byte("x")); err == nil {
			t.Error("writes to a closed peer succeed")
		}
	}
	c.Close()
}

// TestClose: Dial and Accept fail with ErrClosed after Close, and a
// canceled Dial gives up.
func TestClose(t *testing.T) {
	l := Listen()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Dial(ctx, "", ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial nobody accepts: %v", err)
	}
	l.Close()
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
	if _, err := l.Dial(context.Background(), "", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("dial after close: %v", err)
	}
}
