package node

import (
	"context"
	"strings"
	"testing"
)

// TestDurableQKDSourceRecords checks that in durable mode each end's QKD
// source keeps its delivery record in the node's metadata store, under
// the link's name, for both kinds of source, and that relay works across
// restarts of both nodes with those records in place. The ETSI 014 KME
// pair hands out keys of 128 bytes, so its rings hold many small blocks,
// more block records than one metadata transaction takes: a restart must
// still close and reopen them.
func TestDurableQKDSourceRecords(t *testing.T) {
	for _, tc := range []struct {
		name          string
		kme           bool
		master, slave string // metadata key prefixes at a and b
		restarts      []string
	}{
		{"simulator", false, "qkd/sim/a~b/master", "qkd/sim/a~b/slave", []string{"", "b", "a"}},
		{"etsi014", true, "qkd/etsi014/a~b/master/recent/", "qkd/etsi014/a~b/slave/recent/", []string{"", "b", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := clusterOpts{durable: true}
			if tc.kme {
				_, opts.source = kmeSources(t)
			}
			c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, opts)
			for _, id := range tc.restarts {
				if id != "" {
					c.restart(id)
				}
				c.waitPath("a", "b", "a", "b")
				if _, err := c.nodes["a"].Relay(context.Background(), "b", 1000, 32); err != nil {
					t.Fatalf("after restarting %q: relay a→b: %v", id, err)
				}
				for node, prefix := range map[string]string{"a": tc.master, "b": tc.slave} {
					var keys []string
					err := c.nodes[node].meta.Scan("qkd/", func(k string, _ []byte) error {
						keys = append(keys, k)
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					found := false
					for _, k := range keys {
						if !strings.HasPrefix(k, prefix) {
							t.Fatalf("node %s holds QKD record %q, not under %q", node, k, prefix)
						}
						found = true
					}
					if !found {
						t.Fatalf("after restarting %q: node %s holds no QKD source record under %q", id, node, prefix)
					}
				}
			}
		})
	}
}
