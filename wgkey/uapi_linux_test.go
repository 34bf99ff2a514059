//go:build linux

package wgkey

import (
	"errors"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
)

// serveUAPI serves dev's UAPI socket, /var/run/wireguard/<name>.sock, as
// wireguard-go's main.go does, so wgctrl can reach it, until the test ends.
// It needs root; without, the test is skipped.
func serveUAPI(tb testing.TB, name string, dev *device.Device) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("serving a UAPI socket in /var/run/wireguard needs root")
	}
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		tb.Fatalf("UAPI socket for %s: %v", name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	if err != nil {
		f.Close()
		tb.Fatalf("UAPI socket for %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	tb.Cleanup(func() {
		l.Close() // unlinks the socket
		f.Close()
		<-done
		if err := os.Remove("/var/run/wireguard/" + name + ".sock"); err != nil && !errors.Is(err, os.ErrNotExist) {
			tb.Errorf("removing the UAPI socket: %v", err)
		}
	})
}
