//go:build !linux

package wgkey

import (
	"testing"

	"golang.zx2c4.com/wireguard/device"
)

func serveUAPI(tb testing.TB, name string, dev *device.Device) {
	tb.Skip("UAPI sockets are served on Linux only here")
}
