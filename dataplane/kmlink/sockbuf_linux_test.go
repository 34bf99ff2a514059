package kmlink

import (
	"net"
	"syscall"
	"testing"

	"github.com/qrelay/qrelay/internal/leakcheck"
)

// canForceBuffers reports whether this process may set socket buffers
// past net.core.rmem_max (CAP_NET_ADMIN).
func canForceBuffers(t *testing.T) bool {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 1<<20)
	})
	return serr == nil
}

func TestSocketBuffers(t *testing.T) {
	leakcheck.Check(t)
	n := startNode(t, testConfig(t, newCA(t, "lab"), "node-a"))
	rcv, snd := n.SocketBuffers()
	t.Logf("UDP socket buffers as the kernel reports them (twice the size set): rcvbuf %d (%.1f MiB), sndbuf %d (%.1f MiB)",
		rcv, float64(rcv)/(1<<20), snd, float64(snd)/(1<<20))
	n.logs.wait(t, 1, "UDP socket ready", "rcvbuf=", "sndbuf=")
	if !canForceBuffers(t) {
		t.Skip("no CAP_NET_ADMIN: the buffers are capped by net.core.rmem_max and wmem_max")
	}
	if rcv < 2*socketBufferSize || snd < 2*socketBufferSize {
		t.Errorf("buffers rcv %d, snd %d: want at least 7 MiB set (%d reported)", rcv, snd, 2*socketBufferSize)
	}
	if n.logs.count("below 7 MiB") != 0 {
		t.Error("warned about small buffers")
	}
}
