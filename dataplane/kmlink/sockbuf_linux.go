package kmlink

import (
	"net"
	"syscall"
)

// raiseBuffers asks for socketBufferSize in both directions, forcing it
// past net.core.{r,w}mem_max with SO_{RCV,SND}BUFFORCE where allowed
// (CAP_NET_ADMIN). quic-go raises the buffers too, but it compares the
// size the kernel reports, which Linux doubles, so on a host whose limit is
// 4 MiB it settles for 4 MiB.
func raiseBuffers(c *net.UDPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{syscall.SO_RCVBUF, syscall.SO_RCVBUFFORCE}, {syscall.SO_SNDBUF, syscall.SO_SNDBUFFORCE}} {
			if n, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, o[0]); err == nil && n >= 2*socketBufferSize {
				continue
			}
			// The forced size is not capped; the plain one is.
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[1], socketBufferSize) != nil {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o[0], socketBufferSize)
			}
		}
	})
}

// socketBuffers reads SO_RCVBUF and SO_SNDBUF of c (0 on error). Linux
// reports twice the size set, the other half being its bookkeeping.
func socketBuffers(c *net.UDPConn) (rcv, snd int) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, 0
	}
	_ = raw.Control(func(fd uintptr) {
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	return rcv, snd
}
