package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/node/adminapi"
)

// TestDemoLab checks the lab the demo writes: every config passes
// qrelayd's own validation (file checks included), the links form the
// line a–b–c with the same seed at both ends and the lower ID dialling,
// the SAEs and ETSI 014 listeners are where the SAE pair needs them, and
// the certificates name who they should.
func TestDemoLab(t *testing.T) {
	dir := t.TempDir()
	rate, _ := config.ParseRate("10Mbit/s")
	lab, err := makeLab(dir, rate, 64)
	if err != nil {
		t.Fatal(err)
	}
	cfgs := map[string]*config.Config{}
	listens := map[string]string{}
	for _, n := range lab.nodes {
		data, err := os.ReadFile(n.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		c, err := config.ParseOptions{BaseDir: dir, Filename: n.cfgPath}.Parse(data)
		if err != nil {
			t.Fatalf("node %s: %v\n%s", n.id, err, data)
		}
		cfgs[n.id] = c
		if c.Node.ID != n.id || c.Pools.Slots != 65536 || c.API.Admin.Listen != n.admin || c.KM.Listen != n.km {
			t.Errorf("node %s: id %q, slots %d, admin %q, km %q", n.id, c.Node.ID, c.Pools.Slots, c.API.Admin.Listen, c.KM.Listen)
		}
		for what, addr := range map[string]string{"km": c.KM.Listen, "admin": c.API.Admin.Listen, "etsi014": c.API.ETSI014.Listen} {
			if addr == "" {
				continue
			}
			if other, dup := listens[addr]; dup {
				t.Errorf("%s listens on %s, as %s does", n.id+" "+what, addr, other)
			}
			listens[addr] = n.id + " " + what
			if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
				t.Errorf("node %s %s listens on %q; want loopback", n.id, what, addr)
			}
		}
		if bytes.Contains(data, []byte("seed")) && !bytes.Contains(data, []byte("SIMULATED")) {
			t.Errorf("node %s's config does not say its links are simulated", n.id)
		}
	}
	peers := func(c *config.Config) (ps []string) {
		for _, l := range c.Links {
			ps = append(ps, l.Peer)
		}
		return ps
	}
	if a, b, c := peers(cfgs["a"]), peers(cfgs["b"]), peers(cfgs["c"]); !slices.Equal(a, []string{"b"}) || !slices.Equal(b, []string{"a", "c"}) || !slices.Equal(c, []string{"b"}) {
		t.Errorf("links: a %v, b %v, c %v; want the line a–b–c", a, b, c)
	}
	link := func(id, peer string) config.Link {
		for _, l := range cfgs[id].Links {
			if l.Peer == peer {
				return l
			}
		}
		t.Fatalf("node %s has no link to %s", id, peer)
		return config.Link{}
	}
	seeds := map[config.Seed]bool{}
	for _, e := range demoEdges {
		lo, hi := link(e[0], e[1]), link(e[1], e[0])
		if lo.Source.Simulator == nil || hi.Source.Simulator == nil {
			t.Fatalf("link %s–%s: not simulated", e[0], e[1])
		}
		if lo.Source.Simulator.Seed != hi.Source.Simulator.Seed || lo.Source.Simulator.Seed.IsZero() {
			t.Errorf("link %s–%s: the ends' seeds differ, or are zero", e[0], e[1])
		}
		seeds[lo.Source.Simulator.Seed] = true
		if lo.Source.Simulator.Rate != rate || hi.Source.Simulator.Rate != rate {
			t.Errorf("link %s–%s: rates %v, %v; want %v", e[0], e[1], lo.Source.Simulator.Rate, hi.Source.Simulator.Rate, rate)
		}
		if lo.Address != cfgs[e[1]].KM.Listen || hi.Address != "" {
			t.Errorf("link %s–%s: addresses %q and %q; want the lower ID to dial %q", e[0], e[1], lo.Address, hi.Address, cfgs[e[1]].KM.Listen)
		}
	}
	if len(seeds) != len(demoEdges) {
		t.Errorf("%d distinct seeds for %d links", len(seeds), len(demoEdges))
	}
	saes := func(c *config.Config) (s []string) {
		for _, x := range c.SAEs {
			s = append(s, x.ID+"@"+x.Node)
		}
		return s
	}
	for id, want := range map[string][]string{"a": {"sae-a@a", "sae-c@c"}, "b": nil, "c": {"sae-c@c", "sae-a@a"}} {
		if got := saes(cfgs[id]); !slices.Equal(got, want) {
			t.Errorf("node %s: saes %v; want %v", id, got, want)
		}
		if hasETSI := cfgs[id].API.ETSI014.Listen != ""; hasETSI != (want != nil) {
			t.Errorf("node %s: api.etsi014.listen %q", id, cfgs[id].API.ETSI014.Listen)
		}
		if want != nil && (cfgs[id].API.ETSI014.KeySize != demoKeyBits || cfgs[id].API.ETSI014.MaxKeysPerRequest < 64) {
			t.Errorf("node %s: api.etsi014 %+v", id, cfgs[id].API.ETSI014)
		}
	}
	// Certificates: each names its holder, and the nodes' are valid for
	// 127.0.0.1, where the SAEs and the operator reach them.
	for id, kind := range map[string]pki.Kind{"sae-a": pki.SAE, "sae-c": pki.SAE} {
		leaf, err := x509.ParseCertificate(lab.saes[id].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if got, err := pki.PeerID(leaf, kind); err != nil || got != id {
			t.Errorf("SAE certificate names %q (%v); want %q", got, err, id)
		}
	}
	for _, n := range lab.nodes {
		leaf := cfgs[n.id].TLS.Cert
		pemData, err := os.ReadFile(leaf)
		if err != nil {
			t.Fatal(err)
		}
		cert := parsePEMCert(t, pemData)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: lab.roots, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("node %s's certificate: %v", n.id, err)
		}
	}
	op, err := x509.ParseCertificate(lab.operator.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pki.PeerID(op, pki.Operator); err != nil || got != demoOperator {
		t.Errorf("operator certificate names %q (%v)", got, err)
	}
}

func parsePEMCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDemoUsage checks the demo's flags.
func TestDemoUsage(t *testing.T) {
	notDemo := t.TempDir()
	if err := os.WriteFile(filepath.Join(notDemo, "ca.pem"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{[]string{"demo", "extra"}, 2, "", `unexpected argument "extra"; usage: qrelayctl demo`},
		{[]string{"demo", "--rate", "fast"}, 2, "", `--rate "fast" is not a rate`},
		{[]string{"demo", "--keys", "0"}, 2, "", "--keys 0: want 1 to 4096"},
		{[]string{"demo", "--duration", "-1s"}, 2, "", "--duration -1s: want a positive duration"},
		{[]string{"demo", "--dir", notDemo, "--duration", "1s"}, 2, "", "is not empty and not a demo directory"},
		{[]string{"demo", "-h"}, 0, "SIMULATED QKD links", ""},
		{[]string{"daemon"}, 2, "", "usage: qrelayctl daemon -config FILE"},
	} {
		var out, errOut bytes.Buffer
		code := dispatch(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.inErr) {
			t.Errorf("qrelayctl %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				tc.args, code, out.String(), errOut.String(), tc.code, tc.out, tc.inErr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(notDemo, "ca.pem")); err != nil || string(b) != "mine" {
		t.Errorf("the demo touched a directory it refused: %q, %v", b, err)
	}
}

// TestDemoSummary checks the summary printed every second and at the end.
func TestDemoSummary(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	link := func(peer string, up bool, tx, rx uint64) adminapi.Link {
		return adminapi.Link{Peer: peer, Up: up, Tx: adminapi.Pad{Stock: tx}, Rx: adminapi.Pad{Stock: rx}}
	}
	view := func(id string, relayed uint64, links []adminapi.Link, pools ...adminapi.Pool) nodeView {
		return nodeView{id: id, status: adminapi.Status{Node: id, Relay: adminapi.RelayStats{KeyBytesRelayed: relayed}}, links: links, pools: pools}
	}
	prev := demoSnapshot{at: t0, elapsed: 5 * time.Second, sae: saeCounts{delivered: 1000, waits: 2}, nodes: []nodeView{
		view("a", 1e9, nil), view("b", 2e9, nil), view("c", 0, nil),
	}}
	cur := demoSnapshot{at: t0.Add(2 * time.Second), elapsed: 7 * time.Second,
		sae: saeCounts{delivered: 5000, mismatches: 0, waits: 3, errors: 1, lastErr: "etsi014client: POST https://127.0.0.1:1/api/v1/keys/sae-c/enc_keys: HTTP 500\nboom"},
		nodes: []nodeView{
			view("a", 1.5e9, []adminapi.Link{link("b", true, 16<<20, 8<<20)}, adminapi.Pool{Remote: "c", Stock: 60000, Capacity: 65536}),
			{id: "b", err: errors.New("connection refused")},
			view("c", 0.25e9, []adminapi.Link{link("b", false, 0, 1024)}),
		}}
	var out bytes.Buffer
	writeSummary(&out, prev, cur)
	got := out.String()
	for _, want := range []string{
		"── 7s ── QKD links SIMULATED",
		"link a–b   up     a: pad tx 16 MiB rx 8.0 MiB   b: ?\n",
		"link b–c   down   b: ?   c: pad tx 0 B rx 1.0 KiB\n",
		// (0.5e9 bytes at a + 0.25e9 at c) × 8 / 2 s; b did not answer.
		"relay      3.000 Gbit/s",
		"pool a↔c   a holds 60000 of 65536 keys for c, c: no pool for a yet\n",
		"SAE pair   sae-a@a ⇄ sae-c@c: 5000 keys delivered (2000 keys/s), 0 mismatched, 3 waits, 1 errors\n",
		"  last error: etsi014client: POST https://127.0.0.1:1/api/v1/keys/sae-c/enc_keys: HTTP 500 boom\n",
		"  node b's admin API: connection refused\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	out.Reset()
	writeFinal(&out, prev, cur, 10*time.Second, []string{"a: exit status 0", "b: exit status 1"})
	got = out.String()
	for _, want := range []string{
		"SAE pair: 5000 keys delivered in 10s (500 keys/s), 0 mismatched, 3 waits, 1 errors\n",
		"relay: 715 MiB of key sent or forwarded by the nodes, 3.000 Gbit/s on average\n",
		"nodes: a: exit status 0, b: exit status 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("final summary lacks %q:\n%s", want, got)
		}
	}
}

func TestGbit(t *testing.T) {
	for bitS, want := range map[float64]string{
		2.5e9: "2.500 Gbit/s",
		1e8:   "0.100 Gbit/s",
		3.7e6: "0.004 Gbit/s (3.7 Mbit/s)",
		0:     "0.000 Gbit/s (0 bit/s)",
	} {
		if got := gbit(bitS); got != want {
			t.Errorf("gbit(%g) = %q; want %q", bitS, got, want)
		}
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("one\ntwo\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := indent(tail(p, 2)); got != "  two\n  three\n" {
		t.Errorf("indent(tail(2)) = %q", got)
	}
	if got := tail(filepath.Join(t.TempDir(), "none"), 2); !strings.Contains(got, "no such file") {
		t.Errorf("tail of a missing file = %q", got)
	}
}

// startDemoNodes writes a lab and starts its nodes, as the demo does,
// running this test binary as qrelayctl (see envRunMain).
func startDemoNodes(t *testing.T, before func(*demoLab)) (*demoNet, *bytes.Buffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs three node processes; skipped with -short")
	}
	t.Setenv(envRunMain, "1")
	dir := t.TempDir()
	rate, _ := config.ParseRate("100Mbit/s")
	lab, err := makeLab(dir, rate, 128)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(lab)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	nodes := &demoNet{lab: lab}
	var out bytes.Buffer
	t.Cleanup(func() { nodes.stopAll(&out) })
	for _, n := range lab.nodes {
		if err := nodes.start(exe, n); err != nil {
			t.Fatal(err)
		}
	}
	return nodes, &out
}

// TestDemoNodes runs the demo's nodes without the SAE pair: they come up,
// route a↔c through b, report through the admin API, and exit 0 on
// SIGTERM.
func TestDemoNodes(t *testing.T) {
	nodes, out := startDemoNodes(t, nil)
	if err := nodes.waitRoutes(context.Background(), out); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "routes up after") || !strings.Contains(out.String(), "a→b→c") {
		t.Errorf("waitRoutes said:\n%s", out)
	}
	var stats saeStats
	start := time.Now()
	first := nodes.snapshot(context.Background(), &stats, start)
	time.Sleep(time.Second)
	second := nodes.snapshot(context.Background(), &stats, start)
	var sum bytes.Buffer
	writeSummary(&sum, first, second)
	for _, v := range second.nodes {
		if v.err != nil {
			t.Errorf("node %s: %v", v.id, v.err)
		}
	}
	if !strings.Contains(sum.String(), "link a–b   up ") || !strings.Contains(sum.String(), "link b–c   up ") {
		t.Errorf("summary:\n%s", sum.String())
	}
	t.Logf("summary:\n%s", sum.String())
	out.Reset()
	exits, err := nodes.stopAll(out)
	if err != nil || len(exits) != 3 {
		t.Fatalf("stopAll: %v %q\n%s", err, exits, out)
	}
	for _, id := range demoNodes {
		if !strings.Contains(out.String(), "node "+id+": exit status 0\n") {
			t.Errorf("stopAll said:\n%s", out)
		}
	}
}

// TestDemoNodeFails starts node b on an admin port that is taken: the
// demo notices that it exited and shows the end of its log.
func TestDemoNodeFails(t *testing.T) {
	var taken net.Listener
	nodes, out := startDemoNodes(t, func(lab *demoLab) {
		var err error
		if taken, err = net.Listen("tcp", lab.node("b").admin); err != nil {
			t.Skipf("could not hold b's admin port: %v", err)
		}
	})
	defer taken.Close()
	err := nodes.waitRoutes(context.Background(), out)
	if err == nil || !strings.Contains(err.Error(), "node b exited before the network was up (exit status 1)") ||
		!strings.Contains(err.Error(), "node-b.log") || !strings.Contains(err.Error(), "api.admin.listen") {
		t.Fatalf("waitRoutes: %v\n%s", err, out)
	}
	t.Logf("%v", err)
	_, err = nodes.stopAll(out)
	if err == nil || !strings.Contains(err.Error(), "node b failed") {
		t.Errorf("stopAll: %v\n%s", err, out)
	}
}

// TestDemo runs the whole demo as a user does, for 8 seconds of key
// delivery: the SAE pair must get keys, all identical at both ends, and
// every node must exit 0.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three node processes and an SAE pair; skipped with -short")
	}
	t.Setenv(envRunMain, "1")
	var out, errOut bytes.Buffer
	code := dispatch(context.Background(), []string{"demo", "--duration", "8s"}, &out, &errOut)
	t.Logf("output:\n%s%s", out.String(), errOut.String())
	if code != 0 {
		t.Errorf("exit %d; stderr %q", code, errOut.String())
	}
	m := regexp.MustCompile(`SAE pair: (\d+) keys delivered in .*, (\d+) mismatched, (\d+) waits, (\d+) errors`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatal("no final SAE pair summary")
	}
	delivered, _ := strconv.Atoi(m[1])
	mismatched, _ := strconv.Atoi(m[2])
	if delivered == 0 || mismatched != 0 {
		t.Errorf("%d keys delivered, %d mismatched; want some, and none mismatched", delivered, mismatched)
	}
	if !strings.Contains(out.String(), "nodes: a: exit status 0, b: exit status 0, c: exit status 0\n") {
		t.Error("not every node exited with status 0")
	}
	if !strings.Contains(out.String(), "result: OK") {
		t.Error("the demo did not report OK")
	}
}
