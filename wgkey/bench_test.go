package wgkey

import (
	"fmt"
	"os"
	"testing"

	"github.com/qrelay/qrelay/wgkey/wgtest"
	"golang.zx2c4.com/wireguard/wgctrl"
)

// BenchmarkRotate1000 installs new PSKs on all 1,000 peers of one embedded
// device, as a Rotator does at a boundary: in one SetPSKs call through the
// device (one IpcSet) or through wgctrl over the UAPI socket (root only),
// and, as the baseline, in 1,000 calls of one peer each. "ms" is per
// rotation of all 1,000.
func BenchmarkRotate1000(b *testing.B) {
	const peers = 1000
	dev, keys := newDevice(b, peers)
	sets := [2][]Update{randomUpdates(b, keys), randomUpdates(b, keys)}

	// rotate runs one rotation per iteration, alternating two key sets,
	// and checks that the last one is what the device holds.
	rotate := func(b *testing.B, install func(u []Update) error) {
		i := 0
		for b.Loop() {
			if err := install(sets[i%2]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms")
		get, err := dev.IpcGet()
		if err != nil {
			b.Fatal(err)
		}
		last := sets[(i-1)%2]
		for _, u := range []Update{last[0], last[peers/2], last[peers-1]} {
			if info, err := wgtest.ParseIpcGet(get, u.Peer); err != nil || Key(info.PSK) != u.PSK {
				b.Fatalf("peer %s does not hold its new PSK (%v)", u.Peer, err)
			}
		}
	}

	b.Run("device", func(b *testing.B) {
		rotate(b, NewDeviceWriter(dev).SetPSKs)
	})
	b.Run("wgctrl-uapi", func(b *testing.B) {
		name := fmt.Sprintf("wgkb%d", os.Getpid()%100000)
		wgtest.ServeUAPI(b, name, dev)
		c, err := wgctrl.New()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		rotate(b, NewWgctrlWriter(c, name).SetPSKs)
	})
	b.Run("one-call-per-peer", func(b *testing.B) {
		w := NewDeviceWriter(dev)
		rotate(b, func(u []Update) error {
			for i := range u {
				if err := w.SetPSKs(u[i : i+1]); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
