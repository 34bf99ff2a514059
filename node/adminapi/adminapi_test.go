package adminapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/pki"
)

// fakeBackend serves fixed data; fail makes the named method fail.
type fakeBackend struct {
	status  Status
	links   []Link
	routes  []Route
	adverts []Advert
	pools   []Pool
	flows   []Flow
	tunnels []Tunnel
	records []audit.Record
	fail    map[string]error

	mu      sync.Mutex
	set     []string      // "operator peer state" of each SetLinkState call
	queries []audit.Query // of each Audit call
}

var _ Backend = (*fakeBackend)(nil)

func (f *fakeBackend) Status(context.Context) (Status, error) { return f.status, f.fail["Status"] }
func (f *fakeBackend) Links(context.Context) ([]Link, error)  { return f.links, f.fail["Links"] }
func (f *fakeBackend) Routes(context.Context) ([]Route, error) {
	return f.routes, f.fail["Routes"]
}
func (f *fakeBackend) Adverts(context.Context) ([]Advert, error) {
	return f.adverts, f.fail["Adverts"]
}
func (f *fakeBackend) Pools(context.Context) ([]Pool, error) { return f.pools, f.fail["Pools"] }
func (f *fakeBackend) Flows(context.Context) ([]Flow, error) { return f.flows, f.fail["Flows"] }
func (f *fakeBackend) Tunnels(context.Context) ([]Tunnel, error) {
	return f.tunnels, f.fail["Tunnels"]
}

var _ Tunneler = (*fakeBackend)(nil)

// plainBackend is a Backend and nothing more: no Tunneler, no Relayer.
type plainBackend struct{ Backend }

func (f *fakeBackend) SetLinkState(ctx context.Context, peer, state string) error {
	if peer != "node-b" {
		return fmt.Errorf("no link to peer %q: %w", peer, ErrNotFound)
	}
	if state == StateReserved {
		return fmt.Errorf("link to %s: a link with keys in flight cannot be reserved: %w", peer, ErrBadRequest)
	}
	if err := f.fail["SetLinkState"]; err != nil {
		return err
	}
	op, _ := OperatorID(ctx)
	f.mu.Lock()
	f.set = append(f.set, op+" "+peer+" "+state)
	f.mu.Unlock()
	return nil
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		status: Status{
			Node: "node-a", Version: "v0.1.0", Started: t0, UptimeS: 3723.5,
			Links: 2, LinksUp: 1, Reachable: 2, Routes: 2,
			Relay:   RelayStats{KeysDelivered: 4096, KeyBytesRelayed: 131072, FramesSent: 2, BadTags: 1, Pending: 3},
			Control: ControlStats{AdvertsOriginated: 5, SPFRuns: 7, Reroutes: 1, LastChange: t0.Add(time.Minute)},
		},
		links: []Link{{
			Peer: "node-b", Address: "10.0.0.2:7000", State: StateInService, Up: true, Master: true, Since: t0,
			Usable: true, Cost: 1.25,
			Tx:  Pad{Stock: 1 << 20, Capacity: 4 << 20, FillBps: 400e3, ConsumeBps: 100e3},
			Rx:  Pad{Stock: 2 << 20, Capacity: 4 << 20, FillBps: 400e3},
			QKD: QKD{Kind: "sim", Simulated: true, Up: true, QBER: 0.021, SecretRateBitS: 3.2e6},
		}, {
			Peer: "node-c", Address: "10.0.0.3:7000", State: StateOutOfService, LastError: "connection refused",
			Excluded: "out of service", QKD: QKD{Kind: "etsi014", Reason: "KME unreachable"},
		}},
		routes:  []Route{{Dst: "node-b", NextHop: "node-b", Path: []string{"node-a", "node-b"}, Cost: 1.25}, {Dst: "node-d", NextHop: "node-b", Path: []string{"node-a", "node-b", "node-d"}, Cost: 2.5, Static: true}},
		adverts: []Advert{{Origin: "node-b", Seq: 42, AgeS: 1.5, Links: []AdvertLink{{Peer: "node-a", Up: true, Usable: true, Cost: 1.25, TxStock: 100, RxStock: 200, QBER: 0.02, State: StateInService}}}},
		pools:   []Pool{{Remote: "node-d", Stock: 900, Capacity: 4096, Low: 512, High: 2048, Added: 1000, Taken: 100}},
		flows:   []Flow{{Dst: "node-d", ID: 7, NextSeq: 1000, Pending: 3}},
		tunnels: []Tunnel{{
			Interface: "wg0", Name: "dc1-dc2", Peer: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", Remote: "node-b",
			IntervalS: 120, OnMissingKey: "keep_current", Drives: true, Epoch: 14_580_000,
			LastRotation: t0.Add(-30 * time.Second), LastHandshake: t0.Add(-29500 * time.Millisecond),
			Rotations: 12, Failures: 1, LastError: "tunnel dc1-dc2 peer xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg= epoch 14579990: no key",
			Stream: TunnelStream{Held: 5, Served: 13, Released: 8},
		}, {
			// Never rotated: its stream's keys have not come.
			Interface: "wg1", Name: "dc1-dc3", Peer: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", Remote: "node-c",
			IntervalS: 1.5, OnMissingKey: "fail_closed", Epoch: 1_166_400_000, Failures: 3, FailedClosed: true,
			LastError: "no key", Stream: TunnelStream{Refused: 2},
		}},
		fail: map[string]error{},
	}
}

// syncBuffer collects logs written from the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	ca   *pki.CA
	back *fakeBackend
	srv  *httptest.Server
	logs *syncBuffer
}

// newFixture serves a fake backend's admin API over mutual TLS on loopback,
// with a node certificate for 127.0.0.1.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, back: newFakeBackend(), logs: &syncBuffer{}}
	f.srv = serve(t, NewHandler(f.back, slog.New(slog.NewTextHandler(f.logs, nil))), issue(t, ca, pki.Node, "node-a", "127.0.0.1"), ca.Pool())
	return f
}

func serve(t *testing.T, h http.Handler, cert tls.Certificate, roots *x509.CertPool) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = TLSConfig(cert, roots)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func issue(t *testing.T, ca *pki.CA, kind pki.Kind, id string, hosts ...string) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(kind, id, time.Hour, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return c.TLS
}

func (f *fixture) client(t *testing.T, kind pki.Kind, id string) *Client {
	return NewClient(f.srv.URL, issue(t, f.ca, kind, id), f.ca.Pool())
}

// raw makes a request with an operator certificate and returns the status,
// headers and body.
func (f *fixture) raw(t *testing.T, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	c := f.client(t, pki.Operator, "admin")
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

func TestGetRoutes(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, pki.Operator, "admin")
	ctx := context.Background()
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s = %+v\nwant %+v", name, got, want)
		}
	}
	st, err := c.Status(ctx)
	check("Status", st, f.back.status, err)
	links, err := c.Links(ctx)
	check("Links", links, f.back.links, err)
	routes, err := c.Routes(ctx)
	check("Routes", routes, f.back.routes, err)
	adverts, err := c.Adverts(ctx)
	check("Adverts", adverts, f.back.adverts, err)
	pools, err := c.Pools(ctx)
	check("Pools", pools, f.back.pools, err)
	flows, err := c.Flows(ctx)
	check("Flows", flows, f.back.flows, err)
	tunnels, err := c.Tunnels(ctx)
	check("Tunnels", tunnels, f.back.tunnels, err)
}

// TestTunnels: GET /v1/tunnels shows a Tunneler's tunnels with the wire
// names scripts rely on; a Backend that is no Tunneler answers 404.
func TestTunnels(t *testing.T) {
	f := newFixture(t)
	code, hd, body := f.raw(t, http.MethodGet, "/v1/tunnels", "")
	if code != http.StatusOK || hd.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/tunnels: %d %q: %s", code, hd.Get("Content-Type"), body)
	}
	var raw []map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || len(raw) != 2 {
		t.Fatalf("GET /v1/tunnels = %s (%v); want a JSON array of 2 tunnels", body, err)
	}
	want := map[string]any{
		"interface": "wg0", "name": "dc1-dc2", "peer": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "remote": "node-b",
		"interval_s": 120.0, "on_missing_key": "keep_current", "drives": true, "epoch": 14580000.0,
		"last_rotation": "2025-06-01T11:59:30Z", "last_handshake": "2025-06-01T11:59:30.5Z",
		"rotations": 12.0, "failures": 1.0, "last_error": f.back.tunnels[0].LastError, "failed_closed": false,
		"stream": map[string]any{"held": 5.0, "served": 13.0, "released": 8.0, "refused": 0.0},
	}
	if !reflect.DeepEqual(raw[0], want) {
		t.Errorf("GET /v1/tunnels: first tunnel\n%v\nwant exactly\n%v", raw[0], want)
	}
	// A tunnel never rotated, and with no handshake seen, has no times.
	for _, k := range []string{"last_rotation", "last_handshake"} {
		if v, ok := raw[1][k]; ok {
			t.Errorf("GET /v1/tunnels: a tunnel never rotated has %s %v; want it left out", k, v)
		}
	}
	if raw[1]["failed_closed"] != true || raw[1]["interval_s"] != 1.5 || raw[1]["drives"] != false {
		t.Errorf("GET /v1/tunnels: second tunnel %v; want failed_closed true, interval_s 1.5, drives false", raw[1])
	}

	// The hint of an unknown route lists it.
	_, _, body = f.raw(t, http.MethodGet, "/v1/tunnel", "")
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Details) != 1 || !strings.Contains(eb.Details[0], "/v1/flows, /v1/tunnels;") {
		t.Errorf("GET /v1/tunnel = %s (%v); want a 404 whose details list GET /v1/tunnels", body, err)
	}

	// No tunnels is [], not null.
	f.back.tunnels = nil
	if _, _, body := f.raw(t, http.MethodGet, "/v1/tunnels", ""); string(body) != "[]\n" {
		t.Errorf("GET /v1/tunnels with no tunnels = %q; want []", body)
	}
	// The backend failing is a 500 with its message.
	f.back.fail["Tunnels"] = errors.New("wireguard: interface wg0: netlink: permission denied")
	_, err := f.client(t, pki.Operator, "admin").Tunnels(context.Background())
	if e := (*Error)(nil); !errors.As(err, &e) || e.StatusCode != http.StatusInternalServerError || !strings.Contains(e.Message, "interface wg0: netlink: permission denied") {
		t.Errorf("Tunnels from a failing backend: %v; want a 500 with its message", err)
	}
	if code, hd, _ := f.raw(t, http.MethodPost, "/v1/tunnels", "{}"); code != http.StatusMethodNotAllowed || hd.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /v1/tunnels: %d, Allow %q; want 405, Allow GET, HEAD", code, hd.Get("Allow"))
	}

	// A Backend that does not rotate WireGuard PSKs.
	ca := f.ca
	srv := serve(t, NewHandler(plainBackend{newFakeBackend()}, slog.New(slog.DiscardHandler)), issue(t, ca, pki.Node, "node-a", "127.0.0.1"), ca.Pool())
	c := NewClient(srv.URL, issue(t, ca, pki.Operator, "admin"), ca.Pool())
	tunnels, err := c.Tunnels(context.Background())
	if !errors.Is(err, ErrNotFound) || tunnels != nil ||
		!strings.Contains(err.Error(), "node "+srv.URL+": GET /v1/tunnels: 404 Not Found: this node serves no WireGuard tunnels") {
		t.Errorf("Tunnels from a Backend that is no Tunneler = %v, %v; want a 404 saying the node serves no tunnels", tunnels, err)
	}
	// It still checks the method first, and the rest of the API works.
	if _, err := c.Flows(context.Background()); err != nil {
		t.Errorf("Flows from a Backend that is no Tunneler: %v", err)
	}
	req, err := http.NewRequest(http.MethodDelete, srv.URL+"/v1/tunnels", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("DELETE /v1/tunnels on a Backend that is no Tunneler: %d, Allow %q; want 405", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestJSONNames pins the wire names scripts rely on.
func TestJSONNames(t *testing.T) {
	f := newFixture(t)
	f.back.flows = nil
	cases := []struct {
		path string
		want []string
	}{
		{"/v1/status", []string{`"node":"node-a"`, `"started":"2025-06-01T12:00:00Z"`, `"uptime_s":3723.5`, `"links_up":1`, `"reachable":2`,
			`"relay":{"keys_delivered":4096,"key_bytes_relayed":131072`, `"pad_mac_bytes":0`, `"pending":3`,
			`"control":{"adverts_originated":5`, `"spf_runs":7`, `"last_change":"2025-06-01T12:01:00Z"`}},
		{"/v1/links", []string{`"peer":"node-b"`, `"state":"in_service"`, `"since":"2025-06-01T12:00:00Z"`,
			`"tx":{"stock":1048576,"capacity":4194304,"fill_bps":400000,"consume_bps":100000}`,
			`"qkd":{"kind":"sim","simulated":true,"up":true,"qber":0.021,"secret_rate_bit_s":3200000}`,
			`"last_error":"connection refused"`, `"excluded":"out of service"`, `"reason":"KME unreachable"`}},
		{"/v1/routes", []string{`"next_hop":"node-b"`, `"path":["node-a","node-b","node-d"]`, `"static":true`}},
		{"/v1/adverts", []string{`"origin":"node-b"`, `"seq":42`, `"age_s":1.5`, `"tx_stock":100`, `"rx_stock":200`}},
		{"/v1/pools", []string{`"remote":"node-d"`, `"low":512`, `"high":2048`, `"expired":0`}},
		{"/v1/flows", []string{"[]\n"}}, // an empty list is [], not null
	}
	for _, c := range cases {
		code, hd, body := f.raw(t, http.MethodGet, c.path, "")
		if code != http.StatusOK || hd.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %q: %s", c.path, code, hd.Get("Content-Type"), body)
		}
		for _, w := range c.want {
			if !strings.Contains(string(body), w) {
				t.Errorf("GET %s = %s\nwant it to contain %s", c.path, body, w)
			}
		}
	}
	// The second link never went up: no zero time on the wire.
	_, _, body := f.raw(t, http.MethodGet, "/v1/links", "")
	if strings.Contains(string(body), "0001-01-01") {
		t.Errorf("GET /v1/links shows a zero time: %s", body)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	f.back.fail["Routes"] = errors.New("routing table: locked by a dying goroutine")
	f.back.pools = []Pool{{Remote: "node-d"}}
	f.back.links = []Link{{Peer: "node-b", Cost: math.Inf(1)}}
	state := func(s string) string { return `{"state":"` + s + `"}` }
	cases := []struct {
		name               string
		method, path, body string
		code               int
		inMessage          string
		allow              string
	}{
		{"unknown route", "GET", "/v1/keys", "", 404, "no route /v1/keys", ""},
		{"a tunnel by name", "GET", "/v1/tunnels/dc1-dc2", "", 404, "no route /v1/tunnels/dc1-dc2", ""},
		{"trailing slash", "GET", "/v1/links/", "", 404, "no route /v1/links/", ""},
		{"POST to a read-only route", "POST", "/v1/status", "{}", 405, "method POST not allowed on /v1/status", "GET, HEAD"},
		{"DELETE a route list", "DELETE", "/v1/links", "", 405, "use GET, HEAD", "GET, HEAD"},
		{"GET the state", "GET", "/v1/links/node-b/state", "", 405, "use POST", "POST"},
		{"backend failure", "GET", "/v1/routes", "", 500, "locked by a dying goroutine", ""},
		{"Inf in a response", "GET", "/v1/links", "", 500, "unsupported value: +Inf", ""},
		{"unknown peer", "POST", "/v1/links/node-x/state", state("standby"), 404, `no link to peer "node-x"`, ""},
		{"peer that is no node ID", "POST", "/v1/links/node%20x/state", state("standby"), 400, `peer "node x" in the path is not a node ID`, ""},
		{"state the backend refuses", "POST", "/v1/links/node-b/state", state("reserved"), 400, "cannot be reserved", ""},
		{"unknown state", "POST", "/v1/links/node-b/state", state("drained"), 400, `field "state": unknown state "drained": want one of in_service, out_of_service, standby, reserved`, ""},
		{"unknown field", "POST", "/v1/links/node-b/state", `{"state":"standby","force":true}`, 400, `unknown field "force"`, ""},
		{"field in capitals", "POST", "/v1/links/node-b/state", `{"State":"standby"}`, 400, `unknown field "State"`, ""},
		{"state twice", "POST", "/v1/links/node-b/state", `{"state":"standby","state":"in_service"}`, 400, `field "state" given twice`, ""},
		{"state a number", "POST", "/v1/links/node-b/state", `{"state":1}`, 400, `field "state": want a string, got a number`, ""},
		{"state null", "POST", "/v1/links/node-b/state", `{"state":null}`, 400, `want a string, got null`, ""},
		{"no state", "POST", "/v1/links/node-b/state", `{}`, 400, `field "state" is missing`, ""},
		{"empty body", "POST", "/v1/links/node-b/state", ``, 400, `empty body`, ""},
		{"array", "POST", "/v1/links/node-b/state", `["standby"]`, 400, `want a JSON object, got an array`, ""},
		{"two objects", "POST", "/v1/links/node-b/state", state("standby") + "{}", 400, `data after the JSON object`, ""},
		{"broken JSON", "POST", "/v1/links/node-b/state", `{"state":"standby"`, 400, `not JSON`, ""},
		{"huge body", "POST", "/v1/links/node-b/state", `{"state":"` + strings.Repeat("x", maxStateBody) + `"}`, 413, "larger than 4096 bytes", ""},
	}
	for _, c := range cases {
		code, hd, body := f.raw(t, c.method, c.path, c.body)
		var eb ErrorBody
		err := json.Unmarshal(body, &eb)
		if code != c.code || err != nil || !strings.Contains(eb.Message, c.inMessage) || hd.Get("Allow") != c.allow || hd.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %s %s: %d, Allow %q, body %s (decode: %v)\nwant %d, Allow %q, JSON message containing %q",
				c.name, c.method, c.path, code, hd.Get("Allow"), body, err, c.code, c.allow, c.inMessage)
		}
		if c.code == 400 && strings.Contains(c.inMessage, "field") && (len(eb.Details) == 0 || !strings.Contains(eb.Details[0], `{"state": "<state>"}`)) {
			t.Errorf("%s: details %q; want the expected body shown", c.name, eb.Details)
		}
	}
	if f.back.set != nil {
		t.Errorf("refused requests changed link states: %q", f.back.set)
	}
}

func TestSetLinkState(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, pki.Operator, "alice")
	ctx := context.Background()
	if err := c.SetLinkState(ctx, "node-b", StateOutOfService); err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice node-b out_of_service"}; !reflect.DeepEqual(f.back.set, want) {
		t.Fatalf("backend saw %q; want %q", f.back.set, want)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `msg="adminapi: link state set" operator=alice peer=node-b state=out_of_service`) {
		t.Fatalf("the write was not logged with the operator: %s", logs)
	}

	err := c.SetLinkState(ctx, "node-x", StateInService)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "node "+f.srv.URL+": POST /v1/links/node-x/state: 404 Not Found: no link to peer \"node-x\"") {
		t.Fatalf("SetLinkState(unknown peer) = %v; want a 404 naming the node and the peer", err)
	}
	err = c.SetLinkState(ctx, "node-b", "drained")
	if !errors.Is(err, ErrBadRequest) || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `unknown state "drained"`) {
		t.Fatalf("SetLinkState(bad state) = %v; want a 400 naming the state", err)
	}
	if logs := f.logs.String(); !strings.Contains(logs, `msg="adminapi: link state not set" operator=alice peer=node-x`) {
		t.Fatalf("the refused write was not logged: %s", logs)
	}
	// A peer that needs escaping reaches the handler whole, and is refused.
	if err := c.SetLinkState(ctx, "a/b", StateInService); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), `peer "a/b"`) {
		t.Fatalf("SetLinkState(a/b) = %v", err)
	}
}

func TestAuthorisation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, k := range []pki.Kind{pki.Node, pki.SAE} {
		_, err := f.client(t, k, "node-b").Links(ctx)
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != http.StatusForbidden ||
			!strings.Contains(e.Message, "an operator certificate is required") || !strings.Contains(e.Message, string(k)+":node-b") ||
			len(e.Details) == 0 || !strings.Contains(e.Details[0], "qrelayctl pki") {
			t.Errorf("%s certificate: %v; want a 403 saying an operator certificate is required and how to make one", k, err)
		}
		if _, err := f.client(t, k, "node-b").Tunnels(ctx); !errors.As(err, &e) || e.StatusCode != http.StatusForbidden {
			t.Errorf("%s certificate: Tunnels: %v; want a 403", k, err)
		}
		if err := f.client(t, k, "node-b").SetLinkState(ctx, "node-b", StateOutOfService); err == nil {
			t.Errorf("%s certificate set a link state", k)
		}
	}
	if f.back.set != nil {
		t.Errorf("refused clients changed link states: %q", f.back.set)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "adminapi: refused request") {
		t.Errorf("refusals not logged: %s", logs)
	}

	// A certificate from the same CA naming nobody's kind, only a CN.
	_, err := NewClient(f.srv.URL, bareCert(t, f.ca, "admin"), f.ca.Pool()).Status(ctx)
	if e := (*Error)(nil); !errors.As(err, &e) || e.StatusCode != http.StatusForbidden || !strings.Contains(e.Message, "no qrelay:operator:<id> URI SAN") {
		t.Errorf("certificate with a CN only: %v; want a 403", err)
	}

	// No client certificate, or one from another CA: refused in the
	// handshake, and the error names the node.
	other, err := pki.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]tls.Certificate{
		"no certificate":         {},
		"operator of another CA": issue(t, other, pki.Operator, "admin"),
	} {
		_, err := NewClient(f.srv.URL, cert, f.ca.Pool()).Status(ctx)
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != 0 || !strings.Contains(err.Error(), "node "+f.srv.URL+": GET /v1/status: ") || !strings.Contains(err.Error(), "tls") {
			t.Errorf("%s: %v; want a TLS refusal naming the node", name, err)
		}
	}
}

// bareCert is a client certificate from ca with a CN and no qrelay URI SAN,
// as a PKI other than qrelay's would make.
func bareCert(t *testing.T, ca *pki.CA, cn string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestClientRefusesServer(t *testing.T) {
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	op := issue(t, ca, pki.Operator, "admin")
	ctx := context.Background()

	// An SAE's certificate serving the admin API is no node's.
	srv := serve(t, NewHandler(newFakeBackend(), nil), issue(t, ca, pki.SAE, "sae-1", "127.0.0.1"), ca.Pool())
	if _, err := NewClient(srv.URL, op, ca.Pool()).Status(ctx); err == nil || !strings.Contains(err.Error(), "not a node's") {
		t.Errorf("client accepted an SAE certificate as the server's: %v", err)
	}
	// A node certificate for another host.
	srv = serve(t, NewHandler(newFakeBackend(), nil), issue(t, ca, pki.Node, "node-a", "node-a.example"), ca.Pool())
	if _, err := NewClient(srv.URL, op, ca.Pool()).Status(ctx); err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("client accepted a certificate for another host: %v", err)
	}
	// Nobody listening.
	dead := httptest.NewUnstartedServer(nil)
	addr := dead.Listener.Addr().String()
	dead.Listener.Close()
	_, err = NewClient("https://"+addr+"/", op, ca.Pool()).Flows(ctx)
	if e := (*Error)(nil); !errors.As(err, &e) || e.StatusCode != 0 || !strings.HasPrefix(err.Error(), "node https://"+addr+": GET /v1/flows: ") {
		t.Errorf("unreachable node: %v; want an error naming it", err)
	}
}

// TestNotAPI: a server that answers with something other than the admin
// API's JSON gives errors that say what came back.
func TestNotAPI(t *testing.T) {
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/links" {
			io.WriteString(w, "<html>hello</html>")
			return
		}
		http.Error(w, "upstream gone\nmore", http.StatusBadGateway)
	}), issue(t, ca, pki.Node, "node-a", "127.0.0.1"), ca.Pool())
	c := NewClient(srv.URL, issue(t, ca, pki.Operator, "admin"), ca.Pool())
	if _, err := c.Links(context.Background()); err == nil || !strings.Contains(err.Error(), "not the JSON expected") {
		t.Errorf("Links from a web page: %v", err)
	}
	if _, err := c.Pools(context.Background()); err == nil || !strings.HasSuffix(err.Error(), "502 Bad Gateway: upstream gone") {
		t.Errorf("Pools from a 502: %v", err)
	}
}

func TestDecodeStateBody(t *testing.T) {
	for _, body := range []string{`{"state":"in_service"}`, " {\n \"state\" : \"standby\" } \n", `{"state":"out_of_service"}`, `{"state":"reserved"}`} {
		if _, err := decodeStateBody([]byte(body)); err != nil {
			t.Errorf("decodeStateBody(%q): %v", body, err)
		}
	}
	long := `{"` + strings.Repeat("k", 1000) + `":1}`
	if _, err := decodeStateBody([]byte(long)); err == nil || len(err.Error()) > 200 {
		t.Errorf("a long unknown field: %v; want a short error", err)
	}
}
