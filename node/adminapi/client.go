package adminapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
)

// Limits on what the client reads back.
const (
	maxResponse      = 64 << 20 // a large network's link-state database
	maxErrorResponse = 64 << 10
	clientTimeout    = 30 * time.Second
)

// Client calls one node's admin API.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client of the node at baseURL
// ("https://127.0.0.1:7443"), presenting the operator certificate cert and
// trusting servers whose certificate chains to roots and names a node (or,
// from a PKI of another kind, no qrelay kind at all). Requests time out
// after 30 s unless their context ends sooner.
func NewClient(baseURL string, cert tls.Certificate, roots *x509.CertPool) *Client {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server presented no certificate")
			}
			if _, err := pki.PeerID(cs.PeerCertificates[0], pki.Node); err != nil {
				return fmt.Errorf("the server's certificate is not a node's: %w", err)
			}
			return nil
		},
	}
	if len(cert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &Client{
		base: strings.TrimRight(baseURL, "/"),
		hc: &http.Client{
			Timeout: clientTimeout,
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				TLSClientConfig:     cfg,
				TLSHandshakeTimeout: 10 * time.Second,
				ForceAttemptHTTP2:   true,
				MaxIdleConns:        4,
				IdleConnTimeout:     90 * time.Second,
			},
		},
	}
}

// URL is the node's base URL, as errors name it.
func (c *Client) URL() string { return c.base }

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var v Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &v)
	return v, err
}

// Links is GET /v1/links.
func (c *Client) Links(ctx context.Context) ([]Link, error) {
	var v []Link
	err := c.do(ctx, http.MethodGet, "/v1/links", nil, &v)
	return v, err
}

// Routes is GET /v1/routes.
func (c *Client) Routes(ctx context.Context) ([]Route, error) {
	var v []Route
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, &v)
	return v, err
}

// Adverts is GET /v1/adverts.
func (c *Client) Adverts(ctx context.Context) ([]Advert, error) {
	var v []Advert
	err := c.do(ctx, http.MethodGet, "/v1/adverts", nil, &v)
	return v, err
}

// Pools is GET /v1/pools.
func (c *Client) Pools(ctx context.Context) ([]Pool, error) {
	var v []Pool
	err := c.do(ctx, http.MethodGet, "/v1/pools", nil, &v)
	return v, err
}

// Flows is GET /v1/flows.
func (c *Client) Flows(ctx context.Context) ([]Flow, error) {
	var v []Flow
	err := c.do(ctx, http.MethodGet, "/v1/flows", nil, &v)
	return v, err
}

// Tunnels is GET /v1/tunnels; a node that does not rotate WireGuard
// preshared keys answers with a 404 (errors.Is(err, ErrNotFound)).
func (c *Client) Tunnels(ctx context.Context) ([]Tunnel, error) {
	var v []Tunnel
	err := c.do(ctx, http.MethodGet, "/v1/tunnels", nil, &v)
	return v, err
}

// SetLinkState is POST /v1/links/{peer}/state: it sets the component state
// of the link to peer (one of States).
func (c *Client) SetLinkState(ctx context.Context, peer, state string) error {
	body, err := json.Marshal(StateRequest{State: state})
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/v1/links/"+url.PathEscape(peer)+"/state", body, nil)
}

// Error is a request that failed: StatusCode is the server's answer, or 0
// when none came (Err says why: the node is unreachable, TLS failed, the
// context ended). errors.Is matches ErrNotFound to a 404 and
// ErrBadRequest to a 400.
type Error struct {
	Node         string // the base URL
	Method, Path string
	StatusCode   int
	Message      string   // the server's message
	Details      []string // and its details
	Err          error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: %s %s: ", e.Node, e.Method, e.Path)
	if e.StatusCode == 0 {
		fmt.Fprint(&b, e.Err)
		return b.String()
	}
	fmt.Fprintf(&b, "%d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
	for _, d := range e.Details {
		b.WriteString("; ")
		b.WriteString(d)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound ||
		target == ErrBadRequest && e.StatusCode == http.StatusBadRequest
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	fail := func(err error) error {
		var ue *url.Error
		if errors.As(err, &ue) { // it repeats the method and URL
			err = ue.Err
		}
		return &Error{Node: c.base, Method: method, Path: path, Err: err}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorResponse))
		e := &Error{Node: c.base, Method: method, Path: path, StatusCode: resp.StatusCode}
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Message != "" {
			e.Message, e.Details = eb.Message, eb.Details
		} else {
			e.Message = firstLine(data)
		}
		return e
	}
	if out == nil {
		return nil
	}
	bad := func(msg string, err error) error {
		return &Error{Node: c.base, Method: method, Path: path, StatusCode: resp.StatusCode, Message: msg + ": " + err.Error(), Err: err}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return bad("reading the response", err)
	}
	if len(data) > maxResponse {
		return bad("reading the response", fmt.Errorf("larger than %d bytes", maxResponse))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return bad("the response is not the JSON expected (is this a qrelay admin API?)", err)
	}
	return nil
}

// firstLine is a non-JSON error body cut for a message.
func firstLine(data []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "(no message)"
	}
	return s
}
