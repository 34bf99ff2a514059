package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/waitfor"
	"github.com/qrelay/qrelay/wgkey"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// metricsTestWriter is a WireGuard interface that takes every PSK; if
// answers is set, a peer asked to handshake does so at once.
type metricsTestWriter struct {
	answers bool

	mu    sync.Mutex
	peers map[wgtypes.Key]time.Time // last handshake, zero if none
}

func newMetricsTestWriter(answers bool, peers ...wgtypes.Key) *metricsTestWriter {
	w := &metricsTestWriter{answers: answers, peers: map[wgtypes.Key]time.Time{}}
	for _, p := range peers {
		w.peers[p] = time.Time{}
	}
	return w
}

func (w *metricsTestWriter) SetPSKs(us []wgkey.Update) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, u := range us {
		if _, ok := w.peers[u.Peer]; !ok {
			return fmt.Errorf("test interface: no peer %s", u.Peer)
		}
	}
	return nil
}

func (w *metricsTestWriter) Handshake(peers []wgtypes.Key) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.answers {
		for _, p := range peers {
			w.peers[p] = time.Now()
		}
	}
	return nil
}

func (w *metricsTestWriter) Peers() ([]wgkey.PeerState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wgkey.PeerState
	for p, hs := range w.peers {
		out = append(out, wgkey.PeerState{Peer: p, LastHandshake: hs})
	}
	return out, nil
}

func metricsTestKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

// scrapeSeries reads a node's /metrics as series ("name{labels}") and
// values.
func scrapeSeries(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, m := range regexp.MustCompile(`(?m)^(qrelay_\S+) (\S+)$`).FindAllSubmatch(body, -1) {
		v, err := strconv.ParseFloat(string(m[2]), 64)
		if err != nil {
			t.Fatalf("/metrics: %s: value %q: %v", m[1], m[2], err)
		}
		out[string(m[1])] = v
	}
	return out
}

// TestTunnelMetricsAndAPI runs tunnel t1 between nodes a and b, whose
// keys come, and tunnel t-lonely that only a lists, whose keys never do,
// and checks what /metrics and the admin API show of them. On a the
// handshakes complete; b's interface never handshakes.
func TestTunnelMetricsAndAPI(t *testing.T) {
	start := time.Now()
	peerOfA, lonelyPeer, peerOfB := metricsTestKey(t), metricsTestKey(t), metricsTestKey(t)
	wa := newMetricsTestWriter(true, peerOfA, lonelyPeer)
	wb := newMetricsTestWriter(false, peerOfB)
	c := newTestCluster(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, clusterOpts{
		refills:   true,
		wireguard: map[string]map[string]wgkey.Writer{"a": {"wg-a": wa}, "b": {"wg-b": wb}},
		configure: func(id string, cfg *lab.Config) {
			cfg.API.Metrics.Listen = "127.0.0.1:0"
			if id == "a" {
				cfg.WireGuard = []lab.WireGuardTunnel{
					{Name: "t1", RemoteNode: "b", Interface: "wg-a", PeerPublicKey: peerOfA.String(), Interval: time.Second},
					{Name: "t-lonely", RemoteNode: "b", Interface: "wg-a", PeerPublicKey: lonelyPeer.String(), Interval: time.Second},
				}
				return
			}
			cfg.WireGuard = []lab.WireGuardTunnel{{Name: "t1", RemoteNode: "a", Interface: "wg-b", PeerPublicKey: peerOfB.String(), Interval: time.Second, OnMissingKey: "keep_current"}}
		},
	})
	c.waitPath("a", "b", "a", "b")
	a, b := c.nodes["a"], c.nodes["b"]
	byName := func(n *Node) map[string]TunnelInfo {
		m := map[string]TunnelInfo{}
		for _, ti := range n.Tunnels() {
			m[ti.Name] = ti
		}
		return m
	}
	// a's handshake of t1 is read from the interface after its drive,
	// which follows its rotation: wait for it too.
	waitfor.Bool(t, "rotations of t1 at both ends, a handshake seen by a, and t-lonely failed closed", 30*time.Second, func() bool {
		ta, tb := byName(a), byName(b)
		return ta["t1"].Rotations >= 2 && !ta["t1"].FailedClosed && !ta["t1"].LastHandshake.IsZero() &&
			tb["t1"].Rotations >= 1 && ta["t-lonely"].FailedClosed
	})

	before := byName(a)
	scraped := map[string]map[string]float64{"a": scrapeSeries(t, a), "b": scrapeSeries(t, b)}
	after := byName(a)
	now := time.Now()
	ma := scraped["a"]

	series := func(node, s string) (float64, bool) {
		t.Helper()
		v, ok := scraped[node][s]
		if !ok {
			t.Errorf("node %s: no series %s in /metrics", node, s)
		}
		return v, ok
	}
	// Counters and the epoch between the snapshots around the scrape.
	for _, name := range []string{"t1", "t-lonely"} {
		l := `{interface="wg-a",tunnel="` + name + `"}`
		for _, c := range []struct {
			metric        string
			before, after uint64
		}{
			{"qrelay_wireguard_rotations_total", before[name].Rotations, after[name].Rotations},
			{"qrelay_wireguard_rotation_failures_total", before[name].Failures, after[name].Failures},
			{"qrelay_wireguard_epoch", before[name].Epoch, after[name].Epoch},
		} {
			if v, ok := series("a", c.metric+l); ok && (v < float64(c.before) || v > float64(c.after)) {
				t.Errorf("node a: %s%s = %v; want %d to %d as Tunnels shows", c.metric, l, v, c.before, c.after)
			}
		}
	}
	// With a 1 s interval, epoch n is Unix second n.
	if v := ma[`qrelay_wireguard_epoch{interface="wg-a",tunnel="t1"}`]; v < float64(start.Unix()) || v > float64(now.Unix()) {
		t.Errorf("node a: qrelay_wireguard_epoch of t1 = %v; want the Unix second of a rotation, %d to %d", v, start.Unix(), now.Unix())
	}
	if v := ma[`qrelay_wireguard_rotation_failures_total{interface="wg-a",tunnel="t-lonely"}`]; v < 1 {
		t.Errorf("node a: t-lonely, whose keys never come, counts %v failures; want at least 1", v)
	}
	if v := ma[`qrelay_wireguard_rotations_total{interface="wg-a",tunnel="t-lonely"}`]; v != 0 {
		t.Errorf("node a: t-lonely, whose keys never come, counts %v rotations; want 0", v)
	}
	for s, want := range map[string]float64{
		`qrelay_wireguard_failed_closed{interface="wg-a",tunnel="t1"}`:       0,
		`qrelay_wireguard_failed_closed{interface="wg-a",tunnel="t-lonely"}`: 1,
	} {
		if v, ok := series("a", s); ok && v != want {
			t.Errorf("node a: %s = %v; want %v", s, v, want)
		}
	}
	// Timestamps: when they happened, and absent until they do.
	inRun := func(node, s string, v float64) {
		if v < float64(start.UnixMicro())/1e6 || v > float64(now.UnixMicro())/1e6 {
			t.Errorf("node %s: %s = %v; want a Unix time during the test, %v to %v", node, s, v, start, now)
		}
	}
	for _, s := range []string{
		`qrelay_wireguard_last_rotation_timestamp_seconds{interface="wg-a",tunnel="t1"}`,
		`qrelay_wireguard_last_handshake_timestamp_seconds{interface="wg-a",tunnel="t1"}`,
	} {
		if v, ok := series("a", s); ok {
			inRun("a", s, v)
		}
	}
	bRotation := `qrelay_wireguard_last_rotation_timestamp_seconds{interface="wg-b",tunnel="t1"}`
	if v, ok := series("b", bRotation); ok {
		inRun("b", bRotation, v)
	}
	for node, s := range map[string]string{
		"a": `qrelay_wireguard_last_rotation_timestamp_seconds{interface="wg-a",tunnel="t-lonely"}`, // never rotated
		"b": `qrelay_wireguard_last_handshake_timestamp_seconds{interface="wg-b",tunnel="t1"}`,      // never handshook
	} {
		if v, ok := scraped[node][s]; ok {
			t.Errorf("node %s: %s = %v; want no series for a time that has not happened", node, s, v)
		}
	}
	// Stream stock: the owner keeps keys ahead for both streams, the
	// other node holds what it acknowledged.
	for node, s := range map[string]string{
		"a": `qrelay_stream_keys_held{remote="b",stream="t1"}`,
		"b": `qrelay_stream_keys_held{remote="a",stream="t1"}`,
	} {
		if v, ok := series(node, s); ok && v < 1 {
			t.Errorf("node %s: %s = %v; want the keys held ahead", node, s, v)
		}
	}
	series("a", `qrelay_stream_keys_held{remote="b",stream="t-lonely"}`)

	// The admin API shows the same tunnels, by name at a.
	ts, err := backend{a}.Tunnels(context.Background())
	if err != nil || len(ts) != 2 {
		t.Fatalf("a's admin API: Tunnels = %+v, %v; want t-lonely and t1", ts, err)
	}
	lonely, t1 := ts[0], ts[1]
	if lonely.Name != "t-lonely" || lonely.Interface != "wg-a" || lonely.Peer != lonelyPeer.String() || lonely.Remote != "b" ||
		lonely.IntervalS != 1 || lonely.OnMissingKey != "fail_closed" || !lonely.FailedClosed || lonely.Failures == 0 ||
		lonely.LastError == "" || !lonely.LastRotation.IsZero() || lonely.Rotations != 0 {
		t.Errorf("a's admin API: first tunnel %+v; want t-lonely on wg-a, failed closed, never rotated", lonely)
	}
	if t1.Name != "t1" || t1.Peer != peerOfA.String() || !t1.Drives || t1.FailedClosed || t1.Rotations < 2 ||
		t1.LastRotation.Before(start) || t1.LastHandshake.Before(start) || t1.Stream.Held < 1 || t1.Stream.Served < t1.Rotations {
		t.Errorf("a's admin API: second tunnel %+v; want t1 driven by a, rotated, handshaken, its stream serving each rotation", t1)
	}
	tb, err := backend{b}.Tunnels(context.Background())
	if err != nil || len(tb) != 1 || tb[0].Drives || tb[0].Remote != "a" || tb[0].OnMissingKey != "keep_current" || !tb[0].LastHandshake.IsZero() {
		t.Errorf("b's admin API: Tunnels = %+v, %v; want t1, not driven by b, keep_current, no handshake", tb, err)
	}
}
