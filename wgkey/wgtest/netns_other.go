//go:build !linux

package wgtest

import (
	"testing"

	"golang.zx2c4.com/wireguard/device"
)

// ServeUAPI is served on Linux only here.
func ServeUAPI(tb testing.TB, name string, dev *device.Device) {
	tb.Skip("UAPI sockets are served on Linux only here")
}
