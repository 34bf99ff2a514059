// Package wgkey will own hitless WireGuard preshared-key rotation: both
// peers derive epoch n's PSK from index n of a key stream shared by their
// two nodes, fetch ahead, and install it at the epoch boundary through
// wgctrl (kernel netlink or the wireguard-go UAPI socket) or an embedded
// wireguard-go device.
package wgkey
