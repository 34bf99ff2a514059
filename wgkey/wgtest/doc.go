// Package wgtest provides WireGuard test doubles in the manner of
// wireguard-go's tun/tuntest: a Pair of embedded wireguard-go devices, each
// on a gVisor netstack TUN with its outer UDP on loopback, configured
// through IpcSet and able to reach each other; and an echo that measures
// what the tunnel carries while something (a key rotation) goes on. It
// needs no root and depends on nothing of qrelay's, so any test can use it.
package wgtest
