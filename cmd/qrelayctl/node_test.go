package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/node/adminapi"
)

// fakeBackend is a node with two links, routes, one advert, one pool, no
// flows and three WireGuard tunnels.
type fakeBackend struct {
	mu      sync.Mutex
	set     []string      // "peer state" of each SetLinkState
	queries []audit.Query // of each Audit
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var (
	fakeStatus = adminapi.Status{
		Node: "node-a", Version: "v0.1.0", Started: t0, UptimeS: 3723.5,
		Links: 2, LinksUp: 1, Reachable: 2, Routes: 2,
		Relay:   adminapi.RelayStats{KeysDelivered: 4096, KeyBytesRelayed: 131072, FramesSent: 2, BadTags: 1, Pending: 3, PadMACBytes: 1536},
		Control: adminapi.ControlStats{AdvertsOriginated: 5, SPFRuns: 7, Reroutes: 1, LastChange: t0.Add(time.Minute)},
	}
	fakeLinks = []adminapi.Link{{
		Peer: "node-b", Address: "10.0.0.2:7000", State: adminapi.StateInService, Up: true, Master: true, Since: t0,
		Usable: true, Cost: 1.25,
		Tx:  adminapi.Pad{Stock: 1 << 20, Capacity: 4 << 20, FillBps: 400e3, ConsumeBps: 100e3},
		Rx:  adminapi.Pad{Stock: 2 << 20, Capacity: 4 << 20, FillBps: 400e3},
		QKD: adminapi.QKD{Kind: "sim", Simulated: true, Up: true, QBER: 0.021, SecretRateBitS: 3.2e6},
	}, {
		Peer: "node-c", Address: "10.0.0.3:7000", State: adminapi.StateOutOfService, LastError: "connection refused",
		Excluded: "out of service", QKD: adminapi.QKD{Kind: "etsi014", Reason: "KME unreachable"},
	}}
	fakeRoutes = []adminapi.Route{
		{Dst: "node-b", NextHop: "node-b", Path: []string{"node-a", "node-b"}, Cost: 1.25},
		{Dst: "node-d", NextHop: "node-b", Path: []string{"node-a", "node-b", "node-d"}, Cost: 2.5, Static: true},
	}
	fakeAdverts = []adminapi.Advert{{Origin: "node-b", Seq: 42, AgeS: 1.5, Links: []adminapi.AdvertLink{
		{Peer: "node-a", Up: true, Usable: true, Cost: 1.25, TxStock: 3 << 20, RxStock: 200, QBER: 0.02, State: adminapi.StateInService},
	}}}
	fakePools   = []adminapi.Pool{{Remote: "node-d", Stock: 300, Capacity: 4096, Low: 512, High: 2048, Added: 1000, Taken: 700}}
	fakeTunnels = []adminapi.Tunnel{{
		Interface: "wg0", Name: "dc1-dc2", Peer: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", Remote: "node-b",
		IntervalS: 120, OnMissingKey: "fail_closed", Drives: true, Epoch: 14_580_001,
		LastRotation: t0.Add(2*time.Minute - 3*time.Second), LastHandshake: t0.Add(2*time.Minute - 2500*time.Millisecond),
		Rotations: 12, Stream: adminapi.TunnelStream{Held: 5, Served: 12, Released: 7},
	}, {
		// Failed closed at start: no key has come.
		Interface: "wg0", Name: "dc1-dc3", Peer: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", Remote: "node-c",
		IntervalS: 120, OnMissingKey: "fail_closed", Epoch: 14_580_001, Failures: 1, FailedClosed: true,
		LastError: "tunnel dc1-dc3 peer HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw= epoch 14580001: no key for the epoch: " +
			"stream dc1-dc3: key 14580001 from node node-c not ready: context deadline exceeded",
	}, {
		// Recovered from a failure; the handshake time is ahead of this
		// machine's clock.
		Interface: "wg1", Name: "lab", Peer: "short", Remote: "node-d",
		IntervalS: 1, OnMissingKey: "keep_current", Epoch: 1_748_779_319,
		LastRotation: t0.Add(2*time.Minute - time.Second), LastHandshake: t0.Add(2*time.Minute + 2*time.Second),
		Rotations: 300, Failures: 2, LastError: "tunnel lab peer short epoch 1748779200: writing the PSKs:\n  device busy",
		Stream: adminapi.TunnelStream{Held: 11, Served: 300, Released: 290, Refused: 1},
	}}
)

func (*fakeBackend) Status(context.Context) (adminapi.Status, error)    { return fakeStatus, nil }
func (*fakeBackend) Links(context.Context) ([]adminapi.Link, error)     { return fakeLinks, nil }
func (*fakeBackend) Routes(context.Context) ([]adminapi.Route, error)   { return fakeRoutes, nil }
func (*fakeBackend) Adverts(context.Context) ([]adminapi.Advert, error) { return fakeAdverts, nil }
func (*fakeBackend) Pools(context.Context) ([]adminapi.Pool, error)     { return fakePools, nil }
func (*fakeBackend) Flows(context.Context) ([]adminapi.Flow, error)     { return nil, nil }
func (*fakeBackend) Tunnels(context.Context) ([]adminapi.Tunnel, error) { return fakeTunnels, nil }

var fakeRecords = []audit.Record{
	{Time: t0, Kind: audit.KindPadAppended, Peer: "node-b", Dir: audit.DirMasterToSlave, From: 0, To: 65536, Block: "blk-1"},
	{Time: t0.Add(time.Second), Kind: audit.KindPadUsed, Peer: "node-b", Dir: audit.DirMasterToSlave, Side: audit.SideTx, From: 0, To: 4096},
	{Time: t0.Add(2 * time.Second), Kind: audit.KindPadBurnt, Peer: "node-b", Dir: audit.DirSlaveToMaster, Side: audit.SideRx, From: 1 << 20, To: 3 << 20, Reason: audit.ReasonSync},
	{Time: t0.Add(3 * time.Second), Kind: audit.KindKeys, Remote: "node-d", SAE: "sae-1", Role: audit.RoleMaster,
		KeyIDs: []string{"e18ba9a8-8d35-5c2c-9b2b-48ebbcfafd0c", "26f7603b-464e-5118-a8ee-4d49d6a5d9aa", "0b0e5a39-0b6f-5d0c-8d2e-7a6c5f0b9a11"}},
	{Time: t0.Add(4 * time.Second), Kind: audit.KindKeys, Remote: "node-d", SAE: "dc1-dc2", Role: audit.RoleStream,
		KeyIDs: []string{"26f7603b-464e-5118-a8ee-4d49d6a5d9aa"}},
}

// Audit serves the fake records, at most the query's limit of them.
func (f *fakeBackend) Audit(_ context.Context, q audit.Query) ([]audit.Record, error) {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	if q.Limit > 0 && q.Limit < len(fakeRecords) {
		return fakeRecords[:q.Limit], nil
	}
	return fakeRecords, nil
}

func (f *fakeBackend) SetLinkState(_ context.Context, peer, state string) error {
	if peer != "node-b" && peer != "node-c" {
		return fmt.Errorf("no link to peer %q: %w", peer, adminapi.ErrNotFound)
	}
	f.mu.Lock()
	f.set = append(f.set, peer+" "+state)
	f.mu.Unlock()
	return nil
}

// testNode is a fake node's admin API served over mutual TLS with
// certificates made by `qrelayctl pki`.
type testNode struct {
	dir  string // the pki directory
	url  string
	back *fakeBackend
}

func newTestNode(t *testing.T, pkiFlags ...string) *testNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	mustRun(t, append([]string{"pki", "--dir", dir, "--nodes", "node-a", "--saes", "sae-1"}, pkiFlags...)...)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node-node-a.pem"), filepath.Join(dir, "node-node-a.key"))
	if err != nil {
		t.Fatal(err)
	}
	back := &fakeBackend{}
	srv := httptest.NewUnstartedServer(adminapi.NewHandler(back, slog.New(slog.DiscardHandler)))
	srv.TLS = adminapi.TLSConfig(cert, ca.Pool())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &testNode{dir: dir, url: srv.URL, back: back}
}

// flags are the connection flags for n, as the operator.
func (n *testNode) flags() []string {
	return []string{"--node", n.url, "--cert", filepath.Join(n.dir, "operator.pem"), "--key", filepath.Join(n.dir, "operator.key"), "--ca", filepath.Join(n.dir, "ca.pem")}
}

func setNow(t *testing.T, at time.Time) {
	old := now
	now = func() time.Time { return at }
	t.Cleanup(func() { now = old })
}

func clearEnv(t *testing.T) {
	for _, e := range []string{envNode, envCert, envKey, envCA} {
		t.Setenv(e, "")
	}
}

func TestShow(t *testing.T) {
	clearEnv(t)
	setNow(t, t0.Add(2*time.Minute))
	n := newTestNode(t)
	cases := []struct {
		cmd  string
		want []string // each in stdout
	}{
		{"status", []string{"node            node-a", "up 1h2m", "links           1 up of 2", "2, 2 nodes reachable",
			"4096 delivered, 0 lost, 3 pending; 128 KiB relayed", "1 bad tags", "1.5 KiB on MACs", "7 SPF runs, 1 reroutes, last change 1m0s ago"}},
		{"links", []string{"PEER", "KEY RATE", "10.0.0.2:7000", "up 2m0s", "master", "1.25", "1.0 MiB/4.0 MiB", "3.2 Mbit/s", "800 kbit/s",
			"2.0 MiB/4.0 MiB", "sim up", "2.1%", "out_of_service", "etsi014 down",
			"excluded: out of service; error: connection refused; qkd: KME unreachable"}},
		{"routes", []string{"DST", "NEXT HOP", "node-a -> node-b -> node-d", "static", "spf", "2.5"}},
		{"adverts", []string{"ORIGIN", "node-b  42   1.5s", "3.0 MiB", "200 B", "2.0%"}},
		{"pools", []string{"REMOTE", "node-d", "300", "4096", "7%", "below the low watermark"}},
		{"flows", []string{"no flows"}},
		{"tunnels", []string{"INTERFACE", "LAST HANDSHAKE", "xTIBA5rb…", "3s ago", "FAILED CLOSED"}},
	}
	for _, c := range cases {
		out := mustRun(t, append([]string{c.cmd}, n.flags()...)...)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("qrelayctl %s printed\n%s\nwant it to contain %q", c.cmd, out, w)
			}
		}
		checkAligned(t, c.cmd, out)
	}
}

// checkAligned checks that a table's header names start where the
// cells under them start, counting characters ("…" is one).
func checkAligned(t *testing.T, cmd, out string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 || strings.ToUpper(lines[0]) != lines[0] {
		return // not a table
	}
	for _, line := range lines[1:] {
		l := []rune(line)
		for i := 1; i < len(lines[0]); i++ {
			// A header name starting after two spaces starts a column; the
			// cell above and below it starts there too (or is empty).
			if lines[0][i] != ' ' && strings.HasSuffix(lines[0][:i], "  ") && i < len(l) && l[i-1] != ' ' {
				t.Errorf("qrelayctl %s: column at %d not aligned:\n%s\n%s", cmd, i, lines[0], line)
				return
			}
		}
	}
}

// TestShowTunnels pins the tunnels table line by line.
func TestShowTunnels(t *testing.T) {
	clearEnv(t)
	setNow(t, t0.Add(2*time.Minute))
	n := newTestNode(t)
	out := mustRun(t, append([]string{"tunnels"}, n.flags()...)...)
	want := []string{
		"INTERFACE  TUNNEL   PEER       REMOTE  DRIVES  EPOCH       INTERVAL  LAST ROTATION  LAST HANDSHAKE  ROTATIONS  FAILURES  STATE",
		"wg0        dc1-dc2  xTIBA5rb…  node-b  yes     14580001    2m0s      3s ago         2.5s ago        12         0         ok",
		"wg0        dc1-dc3  HIgo9xNz…  node-c  no      14580001    2m0s      never          never           0          1         FAILED CLOSED: epoch 14580001: no key for the epoch: stream dc1-dc3: key 14…",
		"wg1        lab      short      node-d  no      1748779319  1s        1s ago         in 2s           300        2         last error: epoch 1748779200: writing the PSKs: device busy",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("qrelayctl tunnels printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
	checkAligned(t, "tunnels", out)

	var b strings.Builder
	if err := showTunnels(&b, nil); err != nil || b.String() != "no tunnels\n" {
		t.Errorf("showTunnels(no tunnels) printed %q, %v; want \"no tunnels\"", b.String(), err)
	}
}

func TestShowJSON(t *testing.T) {
	clearEnv(t)
	n := newTestNode(t)
	cases := []struct {
		cmd       string
		got, want any
	}{
		{"status", new(adminapi.Status), &fakeStatus},
		{"links", new([]adminapi.Link), &fakeLinks},
		{"routes", new([]adminapi.Route), &fakeRoutes},
		{"adverts", new([]adminapi.Advert), &fakeAdverts},
		{"pools", new([]adminapi.Pool), &fakePools},
		{"flows", new([]adminapi.Flow), &[]adminapi.Flow{}},
		{"tunnels", new([]adminapi.Tunnel), &fakeTunnels},
	}
	for _, c := range cases {
		out := mustRun(t, append([]string{c.cmd, "--json"}, n.flags()...)...)
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c.got); err != nil || !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("qrelayctl %s --json printed\n%s\n(%v); want %+v", c.cmd, out, err, c.want)
		}
	}
	out := mustRun(t, append([]string{"status", "--json"}, n.flags()...)...)
	if !strings.Contains(out, `"uptime_s": 3723.5`) || !strings.Contains(out, `"keys_delivered": 4096`) {
		t.Errorf("status --json is not the API's JSON:\n%s", out)
	}
}

func TestLinkState(t *testing.T) {
	clearEnv(t)
	n := newTestNode(t)
	f := n.flags()
	cases := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{append([]string{"drain", "node-b"}, f...), 0, n.url + ": link to node-b is now out_of_service", ""},
		{append(append([]string{"enable"}, f...), "node-b"), 0, "link to node-b is now in_service", ""}, // flags first
		{append([]string{"state", "node-c", "standby"}, f...), 0, "link to node-c is now standby", ""},
		{append([]string{"state", "node-c", "reserved", "--json"}, f...), 0, `"state": "reserved"`, ""},
		{append([]string{"drain", "node-x"}, f...), 1, "", "node " + n.url + `: POST /v1/links/node-x/state: 404 Not Found: no link to peer "node-x"`},
	}
	for _, c := range cases {
		code, out, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(out, c.inStdout) || !strings.Contains(errOut, c.inStderr) {
			t.Errorf("qrelayctl %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				c.args[:2], code, out, errOut, c.code, c.inStdout, c.inStderr)
		}
	}
	want := []string{"node-b out_of_service", "node-b in_service", "node-c standby", "node-c reserved"}
	if !reflect.DeepEqual(n.back.set, want) {
		t.Errorf("the node saw %q; want %q", n.back.set, want)
	}
}

func TestConnectionErrors(t *testing.T) {
	clearEnv(t)
	n := newTestNode(t)
	other := filepath.Join(t.TempDir(), "other")
	mustRun(t, "pki", "--dir", other)
	dead := httptest.NewUnstartedServer(nil)
	deadURL := "https://" + dead.Listener.Addr().String()
	dead.Listener.Close()
	conn := func(node, cert, key, ca string) []string {
		return []string{"links", "--node", node, "--cert", cert, "--key", key, "--ca", ca}
	}
	op, opKey, ca := filepath.Join(n.dir, "operator.pem"), filepath.Join(n.dir, "operator.key"), filepath.Join(n.dir, "ca.pem")
	elsewhere := newTestNode(t, "--hosts", "node-a.example")
	cases := []struct {
		name     string
		args     []string
		inStderr []string
	}{
		{"nobody listening", conn(deadURL, op, opKey, ca), []string{"node " + deadURL + ": GET /v1/links: ", "connection refused", "is qrelayd running there with api.admin.listen set?"}},
		{"SAE certificate", conn(n.url, filepath.Join(n.dir, "sae-sae-1.pem"), filepath.Join(n.dir, "sae-sae-1.key"), ca),
			[]string{"403 Forbidden: an operator certificate is required", `"sae:sae-1"`, "qrelayctl pki --dir DIR --operator NAME"}},
		{"node certificate", conn(n.url, filepath.Join(n.dir, "node-node-a.pem"), filepath.Join(n.dir, "node-node-a.key"), ca),
			[]string{"403 Forbidden: an operator certificate is required", `"node:node-a"`}},
		{"another CA's operator", conn(n.url, filepath.Join(other, "operator.pem"), filepath.Join(other, "operator.key"), ca),
			[]string{"node " + n.url, "the node refused the operator certificate"}},
		{"another CA's roots", conn(n.url, op, opKey, filepath.Join(other, "ca.pem")),
			[]string{"node " + n.url, "not from the CA given by --ca"}},
		{"certificate for another host", conn(elsewhere.url, filepath.Join(elsewhere.dir, "operator.pem"), filepath.Join(elsewhere.dir, "operator.key"), filepath.Join(elsewhere.dir, "ca.pem")),
			[]string{"node " + elsewhere.url, "for 127.0.0.1", "the node's certificate does not name this host"}},
		{"key of another certificate", conn(n.url, op, filepath.Join(n.dir, "sae-sae-1.key"), ca),
			[]string{"loading the operator certificate", "private key does not match public key"}},
		{"missing CA file", conn(n.url, op, opKey, filepath.Join(n.dir, "nope.pem")), []string{"loading the CA certificate", "nope.pem"}},
		{"CA file holding a key", conn(n.url, op, opKey, opKey), []string{"holds no PEM certificate"}},
	}
	for _, c := range cases {
		code, _, errOut := run(t, c.args...)
		if code != 1 {
			t.Errorf("%s: exit %d; want 1 (stderr %s)", c.name, code, errOut)
		}
		for _, w := range c.inStderr {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q; want it to contain %q", c.name, errOut, w)
			}
		}
	}
}

// TestDefaults: the environment and ./pki give the connection settings.
func TestDefaults(t *testing.T) {
	clearEnv(t)
	n := newTestNode(t)
	t.Setenv(envNode, n.url)
	t.Chdir(filepath.Dir(n.dir)) // ./pki/operator.pem, ./pki/ca.pem
	if out := mustRun(t, "status"); !strings.Contains(out, "node-a") {
		t.Errorf("status from ./pki printed %q", out)
	}
	// The environment beats ./pki, and a flag beats the environment.
	t.Setenv(envCert, filepath.Join(n.dir, "sae-sae-1.pem"))
	t.Setenv(envKey, filepath.Join(n.dir, "sae-sae-1.key"))
	if code, _, errOut := run(t, "status"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("status with the SAE certificate in the environment: exit %d, %s", code, errOut)
	}
	if out := mustRun(t, "status", "--cert", "pki/operator.pem", "--key", "pki/operator.key"); !strings.Contains(out, "node-a") {
		t.Errorf("status with flags printed %q", out)
	}
	// A bare host:port is taken as HTTPS.
	t.Setenv(envNode, strings.TrimPrefix(n.url, "https://"))
	if out := mustRun(t, "flows", "--cert", "pki/operator.pem", "--key", "pki/operator.key"); !strings.Contains(out, "no flows") {
		t.Errorf("flows printed %q", out)
	}
}

func TestHelp(t *testing.T) {
	for _, cmd := range []string{"status", "links", "routes", "adverts", "pools", "flows", "tunnels", "audit", "drain", "enable", "state", "relay", "pki"} {
		code, out, errOut := run(t, cmd, "-h")
		if code != 0 || !strings.HasPrefix(out, "usage: qrelayctl "+cmd) || errOut != "" {
			t.Errorf("qrelayctl %s -h: exit %d, stdout %q, stderr %q", cmd, code, out, errOut)
		}
	}
	// Every command is listed in the top-level help with a lower-case
	// one-line summary.
	_, _, errOut := run(t, "help")
	for _, c := range commands {
		if !strings.Contains(errOut, "  "+c.name+" ") || c.shortHelp == "" || strings.ToLower(c.shortHelp[:1]) != c.shortHelp[:1] {
			t.Errorf("command %q: help line missing or not a lower-case summary:\n%s", c.name, errOut)
		}
	}
}
