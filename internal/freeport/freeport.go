// Package freeport hands out loopback ports to configure before anything
// listens on them (a node's address must be in its peers' configs before
// the node starts): Loopback for tests, Pick for the demo and other
// programs.
//
// A port the kernel picked for a socket bound to port 0 and then closed is
// the obvious choice, and a poor one: it lies in the ephemeral range, from
// which the kernel hands the next port-0 socket of any process (the test
// packages run in parallel) the same port, before the test binds it. The
// ports here come from below that range instead, where only explicit binds
// land, and none is handed out twice in one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the bottom of the range ports are picked from.
const lowest = 10000

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Loopback returns "127.0.0.1:port" with a port below the kernel's
// ephemeral range that nobody held for network ("udp" or "tcp") a moment
// ago and that this process has not handed out before. It fails tb if
// there is none.
func Loopback(tb testing.TB, network string) string {
	tb.Helper()
	addr, err := Pick(network)
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

// Pick is Loopback for code that is not a test: it returns an error if
// there is no such port.
func Pick(network string) (string, error) {
	top := ephemeralStart()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := lowest + rand.IntN(top-lowest)
		if handed[port] || !free(network, port) {
			continue
		}
		handed[port] = true
		return "127.0.0.1:" + strconv.Itoa(port), nil
	}
	return "", fmt.Errorf("freeport: no free %s port on 127.0.0.1 in [%d, %d) after 1000 tries", network, lowest, top)
}

// free reports whether port can be bound on loopback now.
func free(network string, port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		c.Close()
	default:
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// ephemeralStart is the first port of the kernel's ephemeral range: Linux's
// ip_local_port_range, else IANA's 49152.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lowest+1000 {
				return n
			}
		}
	}
	return 49152
}
