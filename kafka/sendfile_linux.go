package kafka

import (
	"net"
	"syscall"

	"github.com/heraldhq/herald/commitlog"
)

// sendfileSupported reports whether responses on nc may be sent with
// sendfile.
func sendfileSupported(nc net.Conn) bool {
	_, ok := nc.(*net.TCPConn)
	return ok
}

// sendSpan sends a span's bytes with sendfile(2) from the segment file at
// the span's position (an explicit offset: the file's own position is
// shared by every reader of the segment and stays untouched).
func sendSpan(nc net.Conn, s *commitlog.FileSpan) (int64, error) {
	tc, ok := nc.(*net.TCPConn)
	fd, fok := s.File().(interface{ Fd() uintptr })
	if !ok || !fok {
		return copySpan(nc, s)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return copySpan(nc, s)
	}
	src := int(fd.Fd())
	off, remain := s.Pos, s.Len
	var serr error
	err = rc.Write(func(dst uintptr) bool {
		for remain > 0 {
			n, e := syscall.Sendfile(int(dst), src, &off, int(min(remain, 1<<30)))
			if n > 0 {
				remain -= int64(n)
			}
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false // wait until the socket is writable
			case e != nil:
				serr = e
				return true
			case n == 0:
				serr = errShortSpan
				return true
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return s.Len - remain, err
}

// writeMore writes b; with more set it flags MSG_MORE so that the kernel
// holds a short write to send it with the bytes that follow.
func writeMore(nc net.Conn, b []byte, more bool) (int, error) {
	tc, ok := nc.(*net.TCPConn)
	if !ok || !more {
		return nc.Write(b)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc.Write(b)
	}
	done := 0
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			n, e := syscall.SendmsgN(int(fd), b[done:], nil, nil, syscall.MSG_MORE)
			if n > 0 {
				done += n
			}
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false
			case e != nil:
				serr = e
				return true
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return done, err
}
