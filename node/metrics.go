package node

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/qrelay/qrelay/dataplane/relay"
	"github.com/qrelay/qrelay/ringstore"
)

// metrics is the node's Prometheus registry. Gauges and counters that the
// stores, the engine and the router keep anyway are read at scrape time
// (a Collector), so the data path pays nothing for them; only events the
// node sees itself (relay calls, link flaps) are counted here. The key
// supply registers its own (supply.Service.Collector).
type metrics struct {
	n   *Node
	reg *prometheus.Registry

	relayDuration *prometheus.HistogramVec
	relayKeys     *prometheus.CounterVec
	relayFailures *prometheus.CounterVec
	linkFlaps     *prometheus.CounterVec
	routeChanges  prometheus.Counter
	apiDuration   *prometheus.HistogramVec
}

func newMetrics(n *Node) *metrics {
	m := &metrics{n: n, reg: prometheus.NewRegistry()}
	m.relayDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "qrelay_relay_request_duration_seconds",
		Help:    "Key distribution latency: time from a relay request to the destination's completion, by destination node.",
		Buckets: prometheus.ExponentialBuckets(250e-6, 2, 16),
	}, []string{"dst"})
	m.relayKeys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "qrelay_relay_request_keys_total",
		Help: "End-to-end keys asked of relay requests and how they ended (outcome delivered or failed), by destination.",
	}, []string{"dst", "outcome"})
	m.relayFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "qrelay_relay_request_failures_total",
		Help: "Relay requests that did not deliver every key, by destination and reason (lost, refused, no_route, other).",
	}, []string{"dst", "reason"})
	m.linkFlaps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "qrelay_link_transitions_total",
		Help: "KM link state changes, by peer and new state (up, down).",
	}, []string{"peer", "to"})
	m.routeChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "qrelay_route_table_changes_total",
		Help: "Times the control plane installed a changed next-hop table.",
	})
	m.apiDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "qrelay_api_request_duration_seconds",
		Help:    "API requests: count and latency, by API, method and status code.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	}, []string{"api", "method", "code"})
	m.reg.MustRegister(m.apiDuration, m.relayDuration, m.relayKeys, m.relayFailures, m.linkFlaps, m.routeChanges, (*collector)(m), n.supply.Collector(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeRelay(dst string, d time.Duration, res relay.Result, err error) {
	if m == nil {
		return
	}
	m.relayDuration.WithLabelValues(dst).Observe(d.Seconds())
	m.relayKeys.WithLabelValues(dst, "delivered").Add(float64(res.Delivered))
	if err == nil {
		return
	}
	failed := 0
	reason := "other"
	for _, e := range res.Errors {
		var lost *relay.LostError
		var ref *relay.RefusedError
		switch {
		case errors.As(e, &lost):
			reason, failed = "lost", failed+lost.Count
		case errors.As(e, &ref):
			reason, failed = "refused", failed+ref.Count
		default:
			reason = "no_route"
		}
	}
	m.relayKeys.WithLabelValues(dst, "failed").Add(float64(failed))
	m.relayFailures.WithLabelValues(dst, reason).Inc()
}

func (m *metrics) linkFlap(peer string, up bool) {
	if m == nil {
		return
	}
	to := "down"
	if up {
		to = "up"
	}
	m.linkFlaps.WithLabelValues(peer, to).Inc()
}

func (m *metrics) routesChanged() {
	if m != nil {
		m.routeChanges.Inc()
	}
}

// collector reads the node's own counters at scrape time.
type collector metrics

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dLinkUp        = desc("qrelay_link_up", "1 if the KM link (QUIC) to the peer is up.", "peer")
	dLinkUsable    = desc("qrelay_link_usable", "1 if path computation may use the link.", "peer")
	dLinkCost      = desc("qrelay_link_cost", "The link's routing cost (rises as pad stock falls).", "peer")
	dLinkState     = desc("qrelay_link_component_state", "1 for the link's component state set by operators.", "peer", "state")
	dPadStock      = desc("qrelay_pad_stock_bytes", "Key buffer fill level: pad available in one direction of a KM link.", "peer", "dir")
	dPadCapacity   = desc("qrelay_pad_capacity_bytes", "Capacity of a pad ring.", "peer", "dir")
	dPadLow        = desc("qrelay_pad_low_stock_threshold_bytes", "Alarm threshold: below this pad stock the link is excluded from routing.", "peer")
	dPadFill       = desc("qrelay_pad_fill_bytes_per_second", "Key buffer fill rate, smoothed over about a second.", "peer", "dir")
	dPadConsume    = desc("qrelay_pad_consumption_bytes_per_second", "Key consumption rate, smoothed over about a second.", "peer", "dir")
	dPadAppended   = desc("qrelay_pad_appended_bytes_total", "Pad added to a ring since start.", "peer", "dir")
	dPadReserved   = desc("qrelay_pad_consumed_bytes_total", "Pad used from a ring since start.", "peer", "dir")
	dPadZeroised   = desc("qrelay_pad_zeroised_bytes_total", "Used pad zeroised since start.", "peer", "dir")
	dQKDUp         = desc("qrelay_qkd_up", "1 if the QKD link delivers key.", "peer", "kind", "simulated")
	dQBER          = desc("qrelay_qkd_qber", "Quantum bit error rate of the QKD link, 0..1.", "peer")
	dSKR           = desc("qrelay_qkd_secret_key_rate_bits_per_second", "Secret key rate of the QKD link.", "peer")
	dRelayCounters = desc("qrelay_relay_events_total", "Relay engine counters since start, by event.", "event")
	dPadMAC        = desc("qrelay_pad_mac_bytes_total", "Pad spent on one-time MAC keys (authentication) since start.")
	dRelayPending  = desc("qrelay_relay_pending_frames", "Frames sent and awaiting the destination's completion.")
	dCtlCounters   = desc("qrelay_controlplane_events_total", "Control plane counters since start, by event.", "event")
	dRoutes        = desc("qrelay_routes", "Destinations this node has a route to.")

	dWGRotations     = desc("qrelay_wireguard_rotations_total", "Stream keys installed as a WireGuard tunnel's preshared key since start, the first one at start included.", "interface", "tunnel")
	dWGFailures      = desc("qrelay_wireguard_rotation_failures_total", "Epochs of a WireGuard tunnel without their key, and failed writes of its preshared key, since start.", "interface", "tunnel")
	dWGEpoch         = desc("qrelay_wireguard_epoch", "Epoch of the preshared key installed last, stream key or random (epoch n starts n intervals after the Unix epoch).", "interface", "tunnel")
	dWGLastRotation  = desc("qrelay_wireguard_last_rotation_timestamp_seconds", "Unix time a stream key was last installed as the tunnel's preshared key; absent until one is.", "interface", "tunnel")
	dWGLastHandshake = desc("qrelay_wireguard_last_handshake_timestamp_seconds", "Unix time of the peer's last handshake, as last read from the interface; absent until one is seen.", "interface", "tunnel")
	dWGFailedClosed  = desc("qrelay_wireguard_failed_closed", "1 while the tunnel's preshared key is a random one because its epoch's key did not come: no new session until one does.", "interface", "tunnel")
	dAuditCounters   = desc("qrelay_audit_records_total", "Audit records since start, by what became of them: written (to the metadata store or the memory window), coalesced (pad ranges merged into the record before), dropped (pushed out of the memory window), lost (never kept: the buffer was full or the store failing), pruned (deleted after audit.retention).", "event")
	dAuditErrors     = desc("qrelay_audit_errors_total", "Failed writes and deletions of audit records since start.")
	dAuditPending    = desc("qrelay_audit_pending_records", "Audit records waiting to be flushed.")
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dLinkUp, dLinkUsable, dLinkCost, dLinkState, dPadStock, dPadCapacity, dPadLow, dPadFill, dPadConsume,
		dPadAppended, dPadReserved, dPadZeroised, dQKDUp, dQBER, dSKR,
		dRelayCounters, dPadMAC, dRelayPending, dCtlCounters, dRoutes,
		dWGRotations, dWGFailures, dWGEpoch, dWGLastRotation, dWGLastHandshake, dWGFailedClosed,
		dAuditCounters, dAuditErrors, dAuditPending} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	route := map[string]routeLink{}
	for _, li := range n.router.Links() {
		route[li.Peer] = routeLink{li.Usable, li.Cost}
	}
	for _, l := range n.links {
		p := l.cfg.Peer
		l.mu.Lock()
		up, st, q, rates := l.up, l.state, l.qkd, l.rates
		l.mu.Unlock()
		gauge(dLinkUp, b2f(up), p)
		gauge(dLinkUsable, b2f(route[p].usable), p)
		gauge(dLinkCost, route[p].cost, p)
		gauge(dLinkState, 1, p, st.String())
		gauge(dPadLow, float64(l.cfg.MinStock), p)
		for i, ring := range [2]*ringstore.PadRing{l.tx, l.rx} {
			dir := [2]string{"tx", "rx"}[i]
			rs := ring.Stats()
			gauge(dPadStock, float64(rs.Stock), p, dir)
			gauge(dPadCapacity, float64(rs.Capacity), p, dir)
			gauge(dPadFill, rates[i].fill.PerSecond(), p, dir)
			gauge(dPadConsume, rates[i].consume.PerSecond(), p, dir)
			counter(dPadAppended, float64(rs.Appended), p, dir)
			counter(dPadReserved, float64(rs.ReservedBytes), p, dir)
			counter(dPadZeroised, float64(rs.ZeroisedBytes), p, dir)
		}
		if l.src != nil {
			sim := "false"
			if q.Simulated {
				sim = "true"
			}
			gauge(dQKDUp, b2f(q.Up), p, q.Kind, sim)
			gauge(dQBER, q.QBER, p)
			gauge(dSKR, q.SecretRate, p)
		}
	}
	s := n.eng.Stats()
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"frames_sent", s.FramesSent.Load()}, {"frames_received", s.FramesReceived.Load()},
		{"frames_forwarded", s.FramesForwarded.Load()}, {"keys_delivered", s.KeysDelivered.Load()},
		{"key_bytes_relayed", s.KeyBytesRelayed.Load()}, {"keys_lost", s.KeysLost.Load()},
		{"bad_tags", s.BadTags.Load()}, {"replays", s.Replays.Load()}, {"pad_wait_timeouts", s.PadWaitTimeouts.Load()}, {"malformed", s.Malformed.Load()},
		{"undeliverable", s.Undeliverable.Load()}, {"pad_burnt_bytes", s.PadBurnt.Load()},
		{"pad_waits", s.PadWaits.Load()}, {"assigns_sent", s.AssignsSent.Load()}, {"assigns_applied", s.AssignsApplied.Load()},
	} {
		counter(dRelayCounters, float64(e.v), e.name)
	}
	counter(dPadMAC, float64(s.PadMACBytes.Load()))
	gauge(dRelayPending, float64(n.eng.Pending()))
	cs := n.router.Stats()
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"adverts_originated", cs.AdvertsOriginated}, {"adverts_sent", cs.AdvertsSent}, {"adverts_received", cs.AdvertsReceived},
		{"duplicates", cs.Duplicates}, {"stale", cs.Stale}, {"malformed", cs.Malformed},
		{"spf_runs", cs.SPFRuns}, {"reroutes", cs.Reroutes},
	} {
		counter(dCtlCounters, float64(e.v), e.name)
	}
	gauge(dRoutes, float64(len(n.router.Routes())))
	for _, t := range n.Tunnels() {
		counter(dWGRotations, float64(t.Rotations), t.Interface, t.Name)
		counter(dWGFailures, float64(t.Failures), t.Interface, t.Name)
		gauge(dWGEpoch, float64(t.Epoch), t.Interface, t.Name)
		if !t.LastRotation.IsZero() {
			gauge(dWGLastRotation, unixSeconds(t.LastRotation), t.Interface, t.Name)
		}
		if !t.LastHandshake.IsZero() {
			gauge(dWGLastHandshake, unixSeconds(t.LastHandshake), t.Interface, t.Name)
		}
		gauge(dWGFailedClosed, b2f(t.FailedClosed), t.Interface, t.Name)
	}
	as := n.audit.Stats()
	for _, e := range []struct {
		name string
		v    uint64
	}{
		{"written", as.Records}, {"coalesced", as.Coalesced}, {"dropped", as.Dropped}, {"lost", as.Lost}, {"pruned", as.Pruned},
	} {
		counter(dAuditCounters, float64(e.v), e.name)
	}
	counter(dAuditErrors, float64(as.Errors))
	gauge(dAuditPending, float64(as.Pending))
}

// unixSeconds is t as Unix time in seconds, to the microsecond.
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixMicro()) / 1e6
}

type routeLink struct {
	usable bool
	cost   float64
}
