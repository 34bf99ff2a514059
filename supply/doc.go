// Package supply will own northbound key delivery: the ETSI GS QKD 014 REST
// server (mutual TLS, SAE identity from the client certificate), ETSI GS QKD
// 004 key streams carved from the end-to-end pools, SAE authorisation and
// per-SAE quotas.
package supply
