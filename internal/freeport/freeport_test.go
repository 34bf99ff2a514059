package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestLoopback checks that the ports handed out lie below the ephemeral
// range, can be bound, and are never handed out twice.
func TestLoopback(t *testing.T) {
	top := ephemeralStart()
	seen := map[string]bool{}
	for _, network := range []string{"udp", "tcp", "udp", "tcp"} {
		for range 50 {
			addr := Loopback(t, network)
			if seen[addr] {
				t.Fatalf("%s handed out twice", addr)
			}
			seen[addr] = true
			_, p, err := net.SplitHostPort(addr)
			if err != nil {
				t.Fatal(err)
			}
			port, _ := strconv.Atoi(p)
			if port < lowest || port >= top {
				t.Fatalf("%s: port outside [%d, %d)", addr, lowest, top)
			}
		}
	}
	// A port bound now is not handed out.
	l, err := net.Listen("tcp", Loopback(t, "tcp"))
	if err != nil {
		t.Fatalf("binding a port handed out: %v", err)
	}
	defer l.Close()
	if port := l.Addr().(*net.TCPAddr).Port; free("tcp", port) {
		t.Errorf("free says port %d, bound, is free", port)
	}
}
