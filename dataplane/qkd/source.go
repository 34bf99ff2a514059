// Package qkd defines what the key manager needs from a QKD link's southbound
// side: a Source of key blocks that both ends of the link hold identically.
// Implementations: package qkdsim (a simulator) and package etsi014client
// (a QKD device's KME spoken to over ETSI GS QKD 014).
//
// The two ends of a link play different roles. The master (the end with the
// lower node ID) calls Fetch to learn which new blocks exist, assigns each
// to a direction of the KM link and tells the slave their IDs in an
// authenticated ASSIGN frame; the slave calls Get with those IDs. Both then
// append the same blocks in the same order to the same direction's pad ring,
// so pad positions agree without any key bytes crossing the KM link.
package qkd

import (
	"context"
	"errors"
	"time"

	"github.com/qrelay/qrelay/ringstore"
)

// Source is the QKD key supply of one link, seen from one end.
type Source interface {
	// Fetch waits for new blocks (master end) and returns them, oldest first,
	// at most max bytes in total (at least one block if any is available,
	// even if larger). It returns ctx.Err() if ctx ends first and ErrDown
	// (wrapped with the reason) while the QKD link is down.
	Fetch(ctx context.Context, max int) ([]ringstore.Block, error)
	// Get returns the blocks ids (slave end), in the order asked. It waits
	// (until ctx ends) for blocks its device has not produced yet, and fails
	// naming the ID if a block is unknown or gone.
	Get(ctx context.Context, ids []string) ([]ringstore.Block, error)
	// Status reports the link as the QKD device sees it.
	Status() Status
	// Close stops the source and zeroises what it holds.
	Close() error
}

// Status is a QKD link's state for link-state adverts, metrics and logs.
type Status struct {
	Kind       string        // "simulator" or "etsi014"
	Simulated  bool          // true for a simulator: every log and status says so
	Up         bool          // false during an outage or when the device is unreachable
	Reason     string        // why it is down, if it is
	QBER       float64       // quantum bit error rate, 0..1
	SecretRate float64       // secret key rate, bit/s
	Delivered  uint64        // bytes handed out by Fetch or Get
	LastBlock  time.Time     // when the last block was produced
	Latency    time.Duration // time of the last device request (etsi014)
}

// ErrDown means the QKD link delivers no key at the moment.
var ErrDown = errors.New("QKD link down")
