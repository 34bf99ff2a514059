package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/ringstore"
)

// keyIDsHanded is every key ID node n's audit record shows handed to sae
// in role, with the remote node named.
func keyIDsHanded(t *testing.T, n *Node, remote, sae, role string) []string {
	t.Helper()
	rs, err := n.Audit().Query(audit.Query{Kind: audit.KindKeys, Peer: remote, Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs {
		if r.SAE == sae && r.Role == role {
			ids = append(ids, r.KeyIDs...)
		}
	}
	return ids
}

// TestAuditETSI014KeysHanded: enc_keys records the keys handed to the
// master SAE at its node, dec_keys those handed to the slave at its
// node, one record per request; in durable mode the records survive a
// restart.
func TestAuditETSI014KeysHanded(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{etsi014: true, durable: true, poolSlots: 16384})
	c.waitPath("a", "b", "a", "b")
	master := c.sae("a", "sae-a", "sae-b", true)
	slave := c.sae("b", "sae-b", "sae-a", false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var want []string
	for range 3 {
		blocks, err := fetch(ctx, master, 64*32)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, slaveGetsSame(ctx, t, slave, blocks)...)
	}
	if got := keyIDsHanded(t, c.nodes["a"], "b", "sae-a", audit.RoleMaster); !slices.Equal(got, want) {
		t.Errorf("node a's record of keys handed to sae-a: %d IDs; want the %d enc_keys gave, in order", len(got), len(want))
	}
	if got := keyIDsHanded(t, c.nodes["b"], "a", "sae-b", audit.RoleSlave); !slices.Equal(got, want) {
		t.Errorf("node b's record of keys handed to sae-b: %d IDs; want the %d dec_keys gave", len(got), len(want))
	}
	rs, err := c.nodes["a"].Audit().Query(audit.Query{Kind: audit.KindKeys})
	if err != nil || len(rs) != 3 {
		t.Errorf("node a: %d keys records, %v; want one per enc_keys request (3)", len(rs), err)
	}
	if !c.nodes["a"].Audit().Durable() {
		t.Fatal("a durable node's audit record is in memory")
	}
	c.restart("a")
	if got := keyIDsHanded(t, c.nodes["a"], "b", "sae-a", audit.RoleMaster); !slices.Equal(got, want) {
		t.Errorf("after a restart, node a's record shows %d key IDs; want %d", len(got), len(want))
	}
}

// TestAuditKeyStream: keys a key stream takes from the pools are
// recorded at both nodes under the stream's name, the same IDs.
func TestAuditKeyStream(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{refills: true, configure: tunnel("t1", "a", "b", time.Hour)})
	c.waitPath("a", "b", "a", "b")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const first = 1 << 62
	for i := uint64(first); i < first+8; i++ {
		for _, id := range []string{"a", "b"} { // the owner, a, announces what it is asked for
			if _, err := c.nodes[id].Supply().Stream("t1").Key(ctx, i); err != nil {
				t.Fatalf("node %s: %v", id, err)
			}
		}
	}
	owner := keyIDsHanded(t, c.nodes["a"], "b", "t1", audit.RoleStream)
	other := keyIDsHanded(t, c.nodes["b"], "a", "t1", audit.RoleStream)
	if len(other) < 8 {
		t.Fatalf("node b recorded %d stream keys; want at least the 8 it served", len(other))
	}
	for _, id := range other {
		if !slices.Contains(owner, id) {
			t.Fatalf("key %s recorded at b for stream t1, not at a, the owner", id)
		}
	}
}

// TestAuditMemoryMode: a node in memory mode keeps its audit record in
// memory, and /metrics counts its records.
func TestAuditMemoryMode(t *testing.T) {
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{
		configure: func(_ string, cfg *lab.Config) {
			cfg.API.Metrics.Listen = "127.0.0.1:0"
			cfg.Audit.Window = 1000
		}})
	n := c.nodes["a"]
	l := n.Audit()
	if l == nil || l.Durable() {
		t.Fatal("a memory-mode node has no audit record in memory")
	}
	l.KeysHanded("b", "sae-a", audit.RoleMaster, []ringstore.KeyID{ringstore.DeriveKeyID("a", "b", 1, 1)})
	if rs, err := l.Query(audit.Query{Kind: audit.KindKeys}); err != nil || len(rs) != 1 {
		t.Fatalf("query: %v, %v", rs, err)
	}
	m := scrapeSeries(t, n)
	for series, want := range map[string]float64{
		`qrelay_audit_records_total{event="written"}`: 1, `qrelay_audit_records_total{event="lost"}`: 0,
		`qrelay_audit_records_total{event="dropped"}`: 0, `qrelay_audit_errors_total`: 0, `qrelay_audit_pending_records`: 0,
	} {
		if v, ok := m[series]; !ok || v != want {
			t.Errorf("%s = %v (%v); want %v", series, v, ok, want)
		}
	}
}
