package supply

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the key supply's Prometheus metrics: counters of the events
// it sees, and gauges and counters of its pools, orphans, cancels and
// streams, read at scrape time. Service.Collector exports them; the node
// registers it beside its own.
type metrics struct {
	svc *Service

	assignFailures *prometheus.CounterVec
	poolRounds     *prometheus.CounterVec
	poolDrops      *prometheus.CounterVec
	orphanExpiries *prometheus.CounterVec
}

func newMetrics(svc *Service) *metrics {
	return &metrics{
		svc: svc,
		assignFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrelay_etsi014_assignment_failures_total",
			Help: "enc_keys requests answered 503 because the slave's node did not confirm the assignment (the keys were discarded), by node.",
		}, []string{"node"}),
		poolRounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrelay_pool_reconciliations_total",
			Help: "Rounds of end-to-end pool reconciliation after a restart, by the other node and result (ok, failed).",
		}, []string{"peer", "result"}),
		poolDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrelay_pool_reconciliation_drops_total",
			Help: "Keys a pool reconciliation told this node to drop, by the other node and reason (missing_at_other_end, unconfirmed, reservation_lost, stale_assignment).",
		}, []string{"peer", "reason"}),
		orphanExpiries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qrelay_pool_orphans_expired_total",
			Help: "Keys assigned by a node that then restarted, discarded unfetched after pools.orphan_ttl, by that node.",
		}, []string{"peer"}),
	}
}

// AssignFailed counts an assignment to remote that was not confirmed.
func (m *metrics) AssignFailed(remote string) { m.assignFailures.WithLabelValues(remote).Inc() }

// ReconcileRound counts a round of pool reconciliation with remote.
func (m *metrics) ReconcileRound(remote string, ok bool) {
	m.poolRounds.WithLabelValues(remote, map[bool]string{true: "ok", false: "failed"}[ok]).Inc()
}

// ReconcileDropped counts keys a round dropped, by reason.
func (m *metrics) ReconcileDropped(remote, reason string, keys int) {
	m.poolDrops.WithLabelValues(remote, reason).Add(float64(keys))
}

// OrphansExpired counts orphans discarded unfetched.
func (m *metrics) OrphansExpired(remote string, keys int) {
	m.orphanExpiries.WithLabelValues(remote).Add(float64(keys))
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dPoolKeys      = desc("qrelay_pool_keys", "End-to-end keys in the pool shared with a remote node.", "remote", "role")
	dPoolCap       = desc("qrelay_pool_capacity_keys", "Capacity of the pool, in keys.", "remote", "role")
	dPoolAdded     = desc("qrelay_pool_keys_added_total", "Keys put into the pool since start.", "remote", "role")
	dPoolTaken     = desc("qrelay_pool_keys_taken_total", "Keys handed out of the pool since start.", "remote", "role")
	dPoolExpired   = desc("qrelay_pool_keys_expired_total", "Keys removed from the pool by their TTL since start.", "remote", "role")
	dPoolOrphans   = desc("qrelay_pool_orphan_keys", "Keys assigned by a node that then restarted, kept in this node's in pool for their slave SAE until pools.orphan_ttl, by that node.", "remote")
	dCancelPending = desc("qrelay_assign_cancel_pending_keys", "Keys of assignments this node gave up on whose cancel the keys' other node has not answered yet; sent again every 500 ms until it does, or until pools.ttl.", "remote")
	dStreamHeld    = desc("qrelay_stream_keys_held", "Keys a key stream holds for indices not yet released, by stream and the node it is shared with.", "stream", "remote")
)

func (m *metrics) vecs() []*prometheus.CounterVec {
	return []*prometheus.CounterVec{m.assignFailures, m.poolRounds, m.poolDrops, m.orphanExpiries}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range m.vecs() {
		v.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{dPoolKeys, dPoolCap, dPoolAdded, dPoolTaken, dPoolExpired, dPoolOrphans, dCancelPending, dStreamHeld} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, v := range m.vecs() {
		v.Collect(ch)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	svc := m.svc
	for remote, k := range svc.OrphansPending() {
		gauge(dPoolOrphans, float64(k), remote)
	}
	for remote, k := range svc.CancelsPending() {
		gauge(dCancelPending, float64(k), remote)
	}
	for _, pe := range svc.Pools() {
		s := pe.Pool.Stats()
		gauge(dPoolKeys, float64(s.Stock), pe.Remote, pe.Role)
		gauge(dPoolCap, float64(s.Capacity), pe.Remote, pe.Role)
		counter(dPoolAdded, float64(s.Added), pe.Remote, pe.Role)
		counter(dPoolTaken, float64(s.Taken), pe.Remote, pe.Role)
		counter(dPoolExpired, float64(s.Expired), pe.Remote, pe.Role)
	}
	for _, s := range svc.Streams() {
		gauge(dStreamHeld, float64(s.Stats().Held), s.Name(), s.Remote())
	}
}
