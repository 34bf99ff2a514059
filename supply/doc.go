// Package supply is the node's key-supply service: it hands end-to-end keys
// to applications (SAEs) and keeps both ends of every hand-out in step.
//
// It owns the authorisation of SAEs (which node serves which SAE, and
// that only the slave named when keys were handed out may fetch them),
// the assignment of keys to SAEs at both ends (SAE_ASSIGN, SAE_ASSIGN_ACK
// and SAE_ASSIGN_CANCEL, routed between nodes), reservations made ahead of
// demand, the refill policy that keeps each out pool between its
// watermarks by relaying, key streams (KEY_STREAM, KEY_STREAM_ACK: key n
// of a stream is the same at both nodes; WireGuard epochs use them), and
// the reconciliation of the pools with another node after either restarts
// (POOL_*), with the gate that pauses supply meanwhile and the orphans it
// leaves. The messages are dataplane/frame's (docs/kmlink.md, section 10).
//
// The front ends are subpackages that call a KeyService: etsi014 (the
// ETSI GS QKD 014 REST API). The service reaches the rest of the node only
// through the small interfaces of Config: the relay (Relay, SendRouted),
// the routes, the pad stock of the first hop, the pools.
package supply
