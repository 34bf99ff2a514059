//go:build !linux

package kmlink

import "net"

// raiseBuffers leaves the buffers to quic-go on this platform.
func raiseBuffers(*net.UDPConn) {}

// socketBuffers is not implemented on this platform.
func socketBuffers(*net.UDPConn) (rcv, snd int) { return 0, 0 }
