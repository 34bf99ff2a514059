package http1

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// response is the http.ResponseWriter of one request: it buffers the
// body and sends status line, headers and body in one write.
type response struct {
	loop        *loop
	req         *http.Request // nil for the server's own refusals
	hdr         http.Header
	code        int
	wroteHeader bool
	closeAfter  bool
	body        []byte   // the handler's body, zeroised after sending
	out         []byte   // the wire form, zeroised after sending
	names       []string // header names, sorted for a stable order
}

var _ http.ResponseWriter = (*response)(nil)

func (w *response) reset(req *http.Request) {
	w.req = req
	if w.hdr == nil {
		w.hdr = make(http.Header, 4)
	}
	clear(w.hdr)
	w.code, w.wroteHeader, w.closeAfter = 0, false, false
	w.body = w.body[:0]
}

func (w *response) Header() http.Header { return w.hdr }

// WriteHeader records the status; informational codes (1xx) are not
// forwarded (the server sends its own 100 Continue), a second call is
// ignored as in net/http.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("http1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		return
	}
	w.code, w.wroteHeader = code, true
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.code) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// WriteString saves the conversion io.WriteString would make.
func (w *response) WriteString(s string) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.code) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, s...)
	return len(s), nil
}

func bodyAllowed(code int) bool {
	return code != http.StatusNoContent && code != http.StatusNotModified && code >= 200
}

// discard drops what a failed handler wrote.
func (w *response) discard() {
	clear(w.body)
	w.body = w.body[:0]
}

// send writes the response and zeroises the buffers it went through.
func (w *response) send() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	out := w.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.code), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(w.code)...)
	out = append(out, "\r\nDate: "...)
	out = append(out, httpDate()...)
	out = append(out, "\r\n"...)
	w.names = w.names[:0]
	for k := range w.hdr {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Transfer-Encoding", "Date", "Connection":
			continue // the server's own
		}
		if validName(k) {
			w.names = append(w.names, k)
		}
	}
	slices.Sort(w.names)
	for _, k := range w.names {
		for _, v := range w.hdr[k] {
			out = append(out, k...)
			out = append(out, ": "...)
			out = appendValue(out, v)
			out = append(out, "\r\n"...)
		}
	}
	if bodyAllowed(w.code) {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, int64(len(w.body)), 10)
		out = append(out, "\r\n"...)
	}
	if w.closeAfter {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	if w.req == nil || w.req.Method != http.MethodHead {
		out = append(out, w.body...)
	}
	_, err := w.loop.rw.Write(out)
	clear(out)
	clear(w.body)
	w.body = w.body[:0]
	if cap(out) > maxKeptBuffer {
		out = nil
	}
	if cap(w.body) > maxKeptBuffer {
		w.body = nil
	}
	w.out = out[:0]
	return err
}

// validName reports whether k is a header field name (an RFC 9110
// token); others are dropped, as net/http does.
func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// appendValue appends v with CR and LF replaced by spaces, so a value can
// never start a header of its own (net/http does the same).
func appendValue(out []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		out = append(out, c)
	}
	return out
}

// dateCache holds the Date header's value for the current second.
type dateCache struct {
	unix int64
	text string
}

var date atomic.Pointer[dateCache]

func httpDate() string {
	now := time.Now()
	if d := date.Load(); d != nil && d.unix == now.Unix() {
		return d.text
	}
	d := &dateCache{unix: now.Unix(), text: now.UTC().Format(http.TimeFormat)}
	date.Store(d)
	return d.text
}
