// Package dataplane groups the packages that move key material between
// nodes (DESIGN.md, "The KM link"):
//
//   - frame: the KM-link wire format, version 1 (docs/kmlink.md);
//   - kmlink: KM links over QUIC with mutual TLS and node identities;
//   - relay: the relay engine, hop-by-hop one-time-pad relay of end-to-end
//     keys with one-time Poly1305 tags, and the ASSIGN protocol that feeds
//     each link's pads from its QKD source;
//   - qkd: the southbound Source interface, implemented by qkdsim (a QKD
//     link simulator) and etsi014client (a QKD device's KME over ETSI GS
//     QKD 014).
package dataplane
