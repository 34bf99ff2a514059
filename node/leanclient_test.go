package node

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/url"
	"strconv"
)

// leanClient is an SAE as a small C client would be: one TLS connection,
// a request written in one piece, the response read by Content-Length,
// one request in flight. It costs the benchmark far less CPU than
// net/http's client, which on a 2-core machine shares the cores with the
// node it measures.
type leanClient struct {
	conn *tls.Conn
	r    *bufio.Reader
	req  []byte
	buf  []byte
}

func dialLean(rawURL string, body string, cfg *tls.Config) (*leanClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	conn, err := tls.Dial("tcp", u.Host, cfg)
	if err != nil {
		return nil, err
	}
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		u.RequestURI(), u.Host, len(body), body)
	return &leanClient{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), req: req}, nil
}

// do sends the request and reads the response; it returns the status.
func (c *leanClient) do() (int, error) {
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, err
	}
	status, length := 0, -1
	for first := true; ; first = false {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if first {
			if len(line) < 12 {
				return 0, fmt.Errorf("bad status line %q", line)
			}
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if k, v, ok := bytes.Cut(line, []byte(": ")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(v))
		}
	}
	if length < 0 {
		return status, fmt.Errorf("response without Content-Length")
	}
	if cap(c.buf) < length {
		c.buf = make([]byte, length)
	}
	_, err := io.ReadFull(c.r, c.buf[:length])
	clear(c.buf[:length])
	return status, err
}

func (c *leanClient) close() { c.conn.Close() }
