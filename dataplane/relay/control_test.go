package relay

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestControlMessages checks that control-plane messages reach the other
// end's Control hook in order, and that the engine's own kinds are refused.
func TestControlMessages(t *testing.T) {
	got := make(chan []byte, 16)
	edges := [][2]string{{"a", "b"}}
	n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{cfg: func(c *Config) {
		if c.NodeID != "b" {
			return
		}
		c.Control = func(peer string, kind uint16, body []byte) {
			if peer != "a" || kind != ControlKindMin+1 {
				t.Errorf("control message from %s kind %d, want a kind %d", peer, kind, ControlKindMin+1)
			}
			got <- bytes.Clone(body)
		}
	}})
	n.waitUp(t, edges)
	a := n.nodes["a"].eng
	for i := range 5 {
		if err := a.SendControl("b", ControlKindMin+1, []byte{byte(i), 'x'}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		select {
		case b := <-got:
			if !bytes.Equal(b, []byte{byte(i), 'x'}) {
				t.Fatalf("message %d arrived as %x", i, b)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d never arrived", i)
		}
	}
	if err := a.SendControl("b", 1, nil); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("sending an engine control kind: err = %v, want a refusal naming the reserved kinds", err)
	}
	if err := a.SendControl("z", ControlKindMin, nil); err == nil || !strings.Contains(err.Error(), "no KM link to z") {
		t.Errorf("sending to a node with no link: err = %v", err)
	}
}

// TestRoutesOverrideDirectLink checks that a next hop from the routes wins
// over the direct link to a neighbour, as the control plane needs when
// that link is unusable.
func TestRoutesOverrideDirectLink(t *testing.T) {
	edges := [][2]string{{"a", "b"}, {"b", "c"}, {"a", "c"}}
	routes := map[string]StaticRoutes{"a": {"c": "b"}}
	n := newTestNet(t, []string{"a", "b", "c"}, edges, routes, netOpts{})
	n.waitUp(t, edges)
	relayOK(t, n.nodes["a"].eng, "c", 4096, 32)
	if got := n.nodes["b"].eng.Stats().FramesForwarded.Load(); got == 0 {
		t.Errorf("a reached its neighbour c directly although its routes say via b")
	}
	fl := n.nodes["a"].eng.Flows()
	if len(fl) != 1 || fl[0].Dst != "c" || fl[0].NextSeq != 4096 || fl[0].Pending != 0 {
		t.Errorf("a's flows = %+v, want one to c at sequence 4096 with nothing pending", fl)
	}
	if pairs, keys := n.checkPools(t); pairs != 1 || keys != 4096 {
		t.Errorf("checked %d pairs with %d keys, want 1 with 4096", pairs, keys)
	}
}

// TestRoutedMessages sends routed messages across a line of three nodes:
// they reach the far end through the middle one, in order, with the
// sender named, and bad ones are refused.
func TestRoutedMessages(t *testing.T) {
	type msg struct {
		src     string
		kind    uint16
		payload string
	}
	got := make(chan msg, 16)
	edges := [][2]string{{"a", "b"}, {"b", "c"}}
	routes := map[string]StaticRoutes{"a": {"c": "b"}, "c": {"a": "b"}}
	n := newTestNet(t, []string{"a", "b", "c"}, edges, routes, netOpts{cfg: func(c *Config) {
		id := c.NodeID
		c.Routed = func(src string, kind uint16, payload []byte) {
			if id == "b" {
				t.Errorf("b received a routed message meant for another node")
			}
			got <- msg{src, kind, string(payload)}
		}
	}})
	n.waitUp(t, edges)
	for i := range 3 {
		if err := n.nodes["a"].eng.SendRouted("c", ControlKindMin+5, []byte{'m', byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.nodes["c"].eng.SendRouted("a", ControlKindMin, []byte("back")); err != nil {
		t.Fatal(err)
	}
	want := []msg{{"a", ControlKindMin + 5, "m0"}, {"a", ControlKindMin + 5, "m1"}, {"a", ControlKindMin + 5, "m2"}, {"c", ControlKindMin, "back"}}
	var at []msg
	for range want {
		select {
		case m := <-got:
			at = append(at, m)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, want %v", at, want)
		}
	}
	// In order from each source; the two sources' messages interleave
	// as they will.
	bySrc := func(ms []msg) map[string]string {
		m := map[string]string{}
		for _, x := range ms {
			m[x.src] += fmt.Sprint(x)
		}
		return m
	}
	if fmt.Sprint(bySrc(at)) != fmt.Sprint(bySrc(want)) {
		t.Errorf("got %v, want %v", at, want)
	}
	e := n.nodes["a"].eng
	for _, tc := range []struct {
		dst  string
		kind uint16
		want string
	}{
		{"c", 1, "reserved"},
		{"a", ControlKindMin, "this node"},
		{"z", ControlKindMin, "no route to node z"},
		{"y z", ControlKindMin, "character ' ' at 1"},
		{"", ControlKindMin, "length 0"},
	} {
		if err := e.SendRouted(tc.dst, tc.kind, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SendRouted(%s, %d): %v, want an error with %q", tc.dst, tc.kind, err, tc.want)
		}
	}
}
