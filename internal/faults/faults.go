// Package faults holds the fault-injection points of qrelay: named places
// in the code where a test can make a node act as if its process died
// there, to check that what was persisted up to that point is enough for a
// restart to lose nothing and reuse nothing (DESIGN.md, invariant 8).
//
// A point costs one atomic load when no test has set a handler. Tests in
// one process set a handler with Set; a qrelayd built with the build tag
// "faults" also reads QRELAY_FAULTS at start (see env.go) and kills itself
// with SIGKILL at the points it names, for the crash tests that run real
// processes. Production builds have no tag and no handler.
package faults

import "sync/atomic"

// The points. Each is named after the package and the moment.
const (
	// SlaveAppended: a link slave has appended the blocks of an ASSIGN and
	// not yet sent its ASSIGN_ACK.
	SlaveAppended = "relay.slave-appended"
	// MasterAcked: a link master has an ASSIGN_ACK OK and has not yet
	// appended the ASSIGN's blocks.
	MasterAcked = "relay.master-acked"
)

// Handler decides, at point name reached by node, whether the node dies
// there. It runs on the goroutine at the point and must not block.
type Handler func(name, node string) bool

var handler atomic.Pointer[Handler]

// At reports whether node must act as if its process died at point name:
// the caller then stops at once, doing and persisting nothing more.
func At(name, node string) bool {
	h := handler.Load()
	return h != nil && (*h)(name, node)
}

// Set installs h for the points of every node in the process and returns
// a function that removes it. Tests that set a handler must not run in
// parallel with others that do.
func Set(h Handler) (restore func()) {
	old := handler.Swap(&h)
	return func() { handler.Store(old) }
}
