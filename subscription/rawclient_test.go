package subscription

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// rawClient is the pull benchmark's client: one keep-alive HTTP/1.1
// connection, requests written into a reused buffer, responses read into
// a reused buffer, and a decoder that only finds the ack ids. It costs a
// small part of what the server spends per message, so the benchmark
// measures Herald rather than encoding/json.
type rawClient struct {
	conn net.Conn
	br   *bufio.Reader
	host string
	req  []byte
	body []byte
	ack  []byte
}

func dialRaw(hostport string) (*rawClient, error) {
	c, err := net.Dial("tcp", hostport)
	if err != nil {
		return nil, err
	}
	return &rawClient{conn: c, br: bufio.NewReaderSize(c, 64<<10), host: hostport}, nil
}

// post sends body to path and returns the status and the response body
// (valid until the next call).
func (c *rawClient) post(path string, body []byte) (int, []byte, error) {
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.host...)
	c.req = append(c.req, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, nil, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	n, chunked := -1, false
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(h) <= 2 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err = strconv.Atoi(string(v))
			if err != nil {
				return 0, nil, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		}
	}
	c.body = c.body[:0]
	switch {
	case n >= 0:
		c.body = growTo(c.body, n)
		if _, err := io.ReadFull(c.br, c.body); err != nil {
			return 0, nil, err
		}
	case chunked:
		for {
			l, err := c.br.ReadSlice('\n')
			if err != nil {
				return 0, nil, err
			}
			size, err := strconv.ParseInt(strings.TrimSpace(string(l)), 16, 32)
			if err != nil {
				return 0, nil, fmt.Errorf("bad chunk size %q", l)
			}
			start := len(c.body)
			c.body = growTo(c.body, start+int(size))
			if _, err := io.ReadFull(c.br, c.body[start:]); err != nil {
				return 0, nil, err
			}
			if _, err := c.br.Discard(2); err != nil {
				return 0, nil, err
			}
			if size == 0 {
				break
			}
		}
	default:
		return 0, nil, errors.New("response without a length")
	}
	return status, c.body, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) < n {
		nb := make([]byte, n, n+n/4)
		copy(nb, b)
		return nb
	}
	return b[:n]
}

var ackIDKey = []byte(`"ackId":"`)

// pullAck pulls up to max messages from sub and acknowledges them with one
// call; it returns how many it got.
func (c *rawClient) pullAck(sub string, max int) (int, error) {
	st, body, err := c.post("/v1/subscriptions/"+sub+":pull", fmt.Appendf(nil, `{"maxMessages":%d}`, max))
	if err != nil {
		return 0, err
	}
	if st != 200 {
		return 0, fmt.Errorf("pull: %d %s", st, body)
	}
	c.ack = append(c.ack[:0], `{"ackIds":[`...)
	n := 0
	for {
		i := bytes.Index(body, ackIDKey)
		if i < 0 {
			break
		}
		body = body[i+len(ackIDKey):]
		j := bytes.IndexByte(body, '"')
		if j < 0 {
			return 0, errors.New("unterminated ack id")
		}
		if n > 0 {
			c.ack = append(c.ack, ',')
		}
		c.ack = append(c.ack, '"')
		c.ack = append(c.ack, body[:j]...)
		c.ack = append(c.ack, '"')
		body = body[j:]
		n++
	}
	if n == 0 {
		return 0, nil
	}
	c.ack = append(c.ack, "]}"...)
	st, body, err = c.post("/v1/subscriptions/"+sub+":acknowledge", c.ack)
	if err != nil {
		return 0, err
	}
	if st != 200 || !bytes.Equal(bytes.TrimSpace(body), []byte("{}")) {
		return 0, fmt.Errorf("acknowledge: %d %s", st, body)
	}
	return n, nil
}

// runRawPullers pulls and acks with pullers connections until n messages
// have been acknowledged.
func runRawPullers(hostport, sub string, pullers, n int) error {
	var got atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, pullers)
	done := make(chan struct{})
	var once sync.Once
	for range pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialRaw(hostport)
			if err != nil {
				errs <- err
				return
			}
			defer c.conn.Close()
			for got.Load() < int64(n) {
				k, err := c.pullAck(sub, 1000)
				if err != nil {
					errs <- err
					return
				}
				if got.Add(int64(k)) >= int64(n) {
					once.Do(func() { close(done) })
				}
			}
		}()
	}
	go func() { wg.Wait(); once.Do(func() { close(done) }) }()
	<-done
	select {
	case err := <-errs:
		return err
	default:
	}
	if g := got.Load(); g < int64(n) {
		return fmt.Errorf("acknowledged %d messages, want %d", g, n)
	}
	return nil
}

// TestRawPullClientProcess is the benchmark's client when run as a child
// process (BenchmarkPullAck/via=http): it does nothing otherwise.
func TestRawPullClientProcess(t *testing.T) {
	addr := os.Getenv("HERALD_BENCH_PULL_ADDR")
	if addr == "" {
		return
	}
	pullers, _ := strconv.Atoi(os.Getenv("HERALD_BENCH_PULLERS"))
	n, _ := strconv.Atoi(os.Getenv("HERALD_BENCH_N"))
	if err := runRawPullers(addr, os.Getenv("HERALD_BENCH_SUB"), pullers, n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0) // the other pullers may be waiting in a pull
}
