package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/ringstore"
	"github.com/qrelay/qrelay/supply"
)

// poolIDs is the inventory of node's pool shared with remote in role,
// by ID: true if assigned.
func (c *testCluster) poolIDs(node, remote, role string) map[ringstore.KeyID]bool {
	c.tb.Helper()
	n := c.nodes[node]
	p, err := n.supply.ExistingPool(remote, role)
	if err != nil {
		c.tb.Fatal(err)
	}
	out := map[ringstore.KeyID]bool{}
	if p == nil {
		return out
	}
	ks, err := p.Inventory(nil)
	if err != nil {
		c.tb.Fatal(err)
	}
	for _, k := range ks {
		out[k.ID] = k.Owned
	}
	return out
}

func (c *testCluster) waitReconciled(a, b string) {
	c.tb.Helper()
	waitfor.Bool(c.tb, "pools of "+a+" and "+b+" reconciled", 30*time.Second, func() bool {
		na, nb := c.nodes[a], c.nodes[b]
		return na.supply.ReconciledWith(b, nb.supply.BootID()) && nb.supply.ReconciledWith(a, na.supply.BootID())
	})
}

// TestPoolsAcrossRestart restarts the slave's node or the master's, in
// memory and in durable mode, with keys free in the pools, reserved for
// an SAE pair, and handed to the master SAE but not yet fetched by the
// slave; after the restart the two nodes reconcile their pools (the
// rules of pool_rules.go), and the test checks each kind of key ends as
// those rules say, and the pools are identical at both ends.
func TestPoolsAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		durable bool
		restart string
	}{
		{"memory/slave", false, "b"},
		{"memory/master", false, "a"},
		{"durable/slave", true, "b"},
		{"durable/master", true, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const orphanTTL = 5 * time.Second
			c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}},
				clusterOpts{etsi014: true, durable: tc.durable, poolSlots: 16384, orphanTTL: orphanTTL})
			c.waitPath("a", "b", "a", "b")
			c.waitReconciled("a", "b")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			master := c.sae("a", "sae-a", "sae-b", true)
			blocks, err := fetch(ctx, master, 128*32) // handed to sae-a, not yet fetched by sae-b
			if err != nil {
				t.Fatal(err)
			}
			freeBefore := map[ringstore.KeyID]bool{}
			for id, assigned := range c.poolIDs("a", "b", supply.RoleOut) {
				if !assigned {
					freeBefore[id] = true
				}
			}
			if len(freeBefore) == 0 {
				t.Fatal("no free keys in a's pool for b before the restart")
			}

			c.restart(tc.restart)
			c.waitPath("a", "b", "a", "b")
			c.waitReconciled("a", "b")
			out, in := c.poolIDs("a", "b", supply.RoleOut), c.poolIDs("b", "a", supply.RoleIn)
			if tc.restart == "a" {
				// The reservations a made before: its list of them went
				// with the restart, so nobody would ever hand them out.
				for id, assigned := range out {
					if assigned {
						t.Fatalf("key %s still reserved at a after its restart", id)
					}
				}
			}
			kept := 0
			for id := range freeBefore {
				if out[id] != in[id] {
					t.Fatalf("key %s free before the restart: at a %v, at b %v after the round", id, out[id], in[id])
				}
				if _, ok := out[id]; ok {
					kept++
				}
			}
			t.Logf("%d of %d keys free before the restart kept at both ends", kept, len(freeBefore))
			if tc.durable && kept == 0 {
				t.Fatal("durable mode: the free keys did not survive the restart")
			}
			if !tc.durable && kept != 0 {
				t.Fatalf("memory mode: %d keys of the restarted node's lost pools kept at the other end", kept)
			}

			slave := c.sae("b", "sae-b", "sae-a", false)
			ids := make([]string, len(blocks))
			for i, b := range blocks {
				ids[i] = b.ID
			}
			half := len(blocks) / 2
			if tc.durable || tc.restart == "a" {
				// The slave's node still holds them: durable storage, or
				// kept as orphans of a master that restarted.
				slaveGetsSame(ctx, t, slave, blocks[:half])
			} else {
				_, err := slave.Get(ctx, ids[:1])
				var se *etsi014client.StatusError
				if !errors.As(err, &se) || se.Code != 400 {
					t.Fatalf("memory mode, slave's node restarted: dec_keys of a key it lost: %v, want 400", err)
				}
			}
			if tc.restart == "a" {
				// The rest were orphaned when a restarted: gone after
				// pools.orphan_ttl.
				rest := map[ringstore.KeyID]bool{}
				for _, b := range blocks[half:] {
					id, _ := ringstore.ParseKeyID(b.ID)
					rest[id] = true
				}
				t0 := time.Now()
				waitfor.Bool(t, "orphans expired", orphanTTL+10*time.Second, func() bool {
					for id := range c.poolIDs("b", "a", supply.RoleIn) {
						if rest[id] {
							return false
						}
					}
					return true
				})
				// Expiry runs every statsInterval.
				if d := time.Since(t0); d > orphanTTL+4*statsInterval {
					t.Errorf("orphans expired %v after the round, want within pools.orphan_ttl (%v) and a second", d, orphanTTL)
				}
				_, err := slave.Get(ctx, ids[half:half+1])
				var se *etsi014client.StatusError
				if !errors.As(err, &se) || se.Code != 400 {
					t.Fatalf("dec_keys of an expired orphan: %v, want 400", err)
				}
			} else if tc.durable {
				slaveGetsSame(ctx, t, slave, blocks[half:])
			}
			c.checkPools("a", "b")
			// And supply works again (a restarted node listens on
			// another port).
			master = c.sae("a", "sae-a", "sae-b", true)
			more, err := fetch(ctx, master, 64*32)
			if err != nil {
				t.Fatal(err)
			}
			slaveGetsSame(ctx, t, slave, more)
		})
	}
}

// TestKeyStreamAcrossRestart restarts each end of a key stream (a
// WireGuard tunnel's) after both served some indices: every index then
// has the same key at both ends or fails closed at one of them, never
// two different keys, and later indices agree again.
func TestKeyStreamAcrossRestart(t *testing.T) {
	for _, restart := range []string{"a", "b"} { // the owner, the other node
		t.Run("restart "+restart, func(t *testing.T) {
			c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{refills: true, configure: tunnel("t1", "a", "b", time.Hour)})
			c.waitPath("a", "b", "a", "b")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const first = 1 << 62
			key := func(node string, i uint64, d time.Duration) ([supply.StreamKeySize]byte, error) {
				kctx, kcancel := context.WithTimeout(ctx, d)
				defer kcancel()
				return c.nodes[node].Supply().Stream("t1").Key(kctx, i)
			}
			served := map[uint64][supply.StreamKeySize]byte{}
			for i := uint64(first); i < first+3; i++ {
				ka, err := key("a", i, 20*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				kb, err := key("b", i, 20*time.Second)
				if err != nil || kb != ka {
					t.Fatalf("index %d before the restart: %v, same key %v", i, err, kb == ka)
				}
				served[i] = ka
			}
			c.restart(restart)
			c.waitPath("a", "b", "a", "b")
			c.waitReconciled("a", "b") // each has heard the other's boot ID
			// Index first+2 was served at both: after the restart it
			// has its old key at both ends or fails closed; the indices
			// after it (held ahead, never served) agree again.
			agreed := 0
			for i := uint64(first + 2); i < first+8; i++ {
				ka, errA := key("a", i, 3*time.Second)
				kb, errB := key("b", i, 3*time.Second)
				switch {
				case errA == nil && errB == nil && ka != kb:
					t.Fatalf("index %d after restarting %s: different keys at the two ends", i, restart)
				case errA == nil && errB == nil:
					if old, ok := served[i]; ok && old != ka {
						t.Fatalf("index %d after restarting %s: both ends changed its key", i, restart)
					}
					agreed++
				default:
					t.Logf("index %d after restarting %s: failed closed (a: %v; b: %v)", i, restart, errA, errB)
					if i > first+2 {
						t.Fatalf("index %d, never served before the restart, failed", i)
					}
				}
			}
			if agreed < 4 {
				t.Fatalf("%d indices agreed after the restart, want at least the 4 never served before it", agreed)
			}
		})
	}
}
