// Package dataplane will own the KM link between neighbouring key managers
// (QUIC with mutual TLS, ALPN "qrelay/1"), its frame format (documented in
// docs/kmlink.md), the relay engine that moves batches of end-to-end keys
// hop by hop under each link's one-time pad with a one-time MAC (package
// otp), and the QKD key sources: a link simulator and an ETSI GS QKD 014
// southbound client.
package dataplane
