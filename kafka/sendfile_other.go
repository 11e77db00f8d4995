//go:build !linux

package kafka

import (
	"net"

	"github.com/heraldhq/herald/commitlog"
)

func sendfileSupported(nc net.Conn) bool { return false }

func sendSpan(nc net.Conn, s *commitlog.FileSpan) (int64, error) { return copySpan(nc, s) }

func writeMore(nc net.Conn, b []byte, more bool) (int, error) { return nc.Write(b) }
