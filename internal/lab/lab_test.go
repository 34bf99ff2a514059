package lab

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/internal/waitfor"
)

// yamlNames lists the YAML paths of the struct tree of t.
func yamlNames(t reflect.Type, prefix string, into map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() == "time" {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		into[prefix+name] = true
		yamlNames(f.Type, prefix+name+".", into)
	}
}

// TestConfigCoversConfig checks that Config has every field of
// config.Config, under the same YAML names, and no other.
func TestConfigCoversConfig(t *testing.T) {
	want, got := map[string]bool{}, map[string]bool{}
	yamlNames(reflect.TypeFor[config.Config](), "", want)
	yamlNames(reflect.TypeFor[Config](), "", got)
	for n := range want {
		if !got[n] {
			t.Errorf("lab.Config has no %s", n)
		}
	}
	for n := range got {
		if !want[n] {
			t.Errorf("lab.Config has %s, which config.Config has not", n)
		}
	}
}

// TestLabConfigs builds a two-node lab and checks that config's strict
// decoder reads each config back with what was set, its defaults for the
// rest, and the certificate files in place.
func TestLabConfigs(t *testing.T) {
	dir := t.TempDir()
	l, err := New(dir, "lab test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Node("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Node("b")
	if err != nil {
		t.Fatal(err)
	}
	Connect(b, a, "", func(me, peer string) Link {
		return Link{PadCapacity: 16 * config.MiB, Source: Source{Simulator: &Simulator{Seed: Seed(1), Rate: 200e6, BlockSize: 64 * config.KiB}}}
	})
	a.KM.CompletionTimeout = 3 * time.Second
	a.Pools = Pools{Slots: 4096, OrphanTTL: 5 * time.Second}
	a.SAEs = []SAE{{ID: "sae-a"}, {ID: "sae-b", Node: "b"}}
	a.SAE("sae-a").KeysPerSecond = 1.5
	a.API.ETSI014.Listen = "127.0.0.1:0"
	a.WireGuard = []WireGuardTunnel{{Name: "t1", RemoteNode: "b", Interface: "wg-a", PeerPublicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", Interval: time.Hour}}
	if _, err := l.Issue(pki.Operator, "op", ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Config{a, b} {
		p, data, err := l.WriteConfig(c, "a lab node\nSIMULATED links")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "# a lab node\n# SIMULATED links\n") {
			t.Errorf("config of %s does not start with its comment:\n%s", c.Node.ID, data)
		}
		got, err := config.Load(p)
		if err != nil {
			t.Fatalf("config of %s: %v\n%s", c.Node.ID, err, data)
		}
		if got.Node.ID != c.Node.ID || got.KM.Listen != c.KM.Listen || len(got.Links) != 1 || got.Links[0].Source.Simulator.BlockSize != 64*config.KiB {
			t.Errorf("node %s read back as %+v", c.Node.ID, got)
		}
	}
	ca, err := config.Load(filepath.Join(dir, ConfigFile("a")))
	if err != nil {
		t.Fatal(err)
	}
	if l := ca.Links[0]; l.Peer != "b" || l.Address != b.KM.Listen {
		t.Errorf("a's link: peer %q, address %q; want b dialled at %s", l.Peer, l.Address, b.KM.Listen)
	}
	if ca.KM.CompletionTimeout != 3*time.Second || ca.KM.Keepalive != config.DefaultKeepalive || ca.Pools.Slots != 4096 || ca.Pools.OrphanTTL != 5*time.Second ||
		ca.SAEs[0].KeysPerSecond != 1.5 || ca.WireGuard[0].Interval != time.Hour || ca.API.ETSI014.Listen != "127.0.0.1:0" {
		t.Errorf("a read back as %+v", ca)
	}
	cb, err := config.Load(filepath.Join(dir, ConfigFile("b")))
	if err != nil {
		t.Fatal(err)
	}
	if l := cb.Links[0]; l.Peer != "a" || l.Address != "" {
		t.Errorf("b's link: peer %q, address %q; want a, not dialled", l.Peer, l.Address)
	}
}

// TestProc runs a process, restarts it, and stops it with a signal it
// ignores: Stop kills it after the grace.
func TestProc(t *testing.T) {
	p := &Proc{Name: "echo", Path: "/bin/sh", Args: []string{"-c", "echo hello $LAB_WORD"}, Env: []string{"LAB_WORD=world"}}
	if !p.Exited() {
		t.Error("a Proc never started says it runs")
	}
	for range 2 {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if err := p.Err(); err != nil {
			t.Fatal(err)
		}
		if got := p.Output(); got != "hello world\n" {
			t.Errorf("output %q", got)
		}
	}
	log := filepath.Join(t.TempDir(), "log")
	q := &Proc{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", `trap "" TERM; echo ready; while :; do sleep 0.05; done`}, LogPath: log}
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	if err := q.Start(); err == nil {
		t.Error("a second Start of a running Proc did not fail")
	}
	waitfor.Bool(t, "the trap set", 10*time.Second, func() bool {
		data, _ := os.ReadFile(log)
		return strings.Contains(string(data), "ready")
	})
	err := q.Stop(syscall.SIGTERM, 200*time.Millisecond)
	if !q.Exited() || err == nil || !strings.Contains(err.Error(), ErrKilled.Error()) {
		t.Errorf("Stop of a process ignoring SIGTERM: %v; want it killed", err)
	}
}
