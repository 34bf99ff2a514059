// Package ipsec will own key supply to IPsec: a Cisco SKIP server for
// routers, and postquantum preshared keys (RFC 8784) handed to strongSwan
// over vici (github.com/strongswan/govici).
package ipsec
