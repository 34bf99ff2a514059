package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/qrelay/qrelay/node/adminapi"
)

var tunnelsCmd = nodeCommand[[]adminapi.Tunnel]{
	name: "tunnels",
	what: "Show the WireGuard tunnels whose preshared keys the node rotates: interface, tunnel, peer public key (shortened), " +
		"remote node, whether this side drives the handshake, epoch and interval, ages of the last rotation and handshake, " +
		"rotations and failures since start, and state: ok, FAILED CLOSED (a random key until a stream key comes) or the " +
		"last error (kept after later rotations: compare its epoch with the tunnel's). --json gives keys and errors whole.",
	get:  (*adminapi.Client).Tunnels,
	show: showTunnels,
}

// maxStateLen bounds the error a tunnels table shows; --json has it whole.
const maxStateLen = 60

func showTunnels(w io.Writer, tunnels []adminapi.Tunnel) error {
	if len(tunnels) == 0 {
		_, err := fmt.Fprintln(w, "no tunnels")
		return err
	}
	tw := table(w)
	row(tw, "INTERFACE", "TUNNEL", "PEER", "REMOTE", "DRIVES", "EPOCH", "INTERVAL", "LAST ROTATION", "LAST HANDSHAKE", "ROTATIONS", "FAILURES", "STATE")
	for _, t := range tunnels {
		row(tw, t.Interface, t.Name, shorten(t.Peer, 8), t.Remote, yesNo(t.Drives),
			strconv.FormatUint(t.Epoch, 10), seconds(t.IntervalS), ago(t.LastRotation), ago(t.LastHandshake),
			strconv.FormatUint(t.Rotations, 10), strconv.FormatUint(t.Failures, 10), tunnelState(t))
	}
	return tw.Flush()
}

// tunnelState is "ok" (no failure since the node started), "FAILED CLOSED"
// with the reason, or the last error. The rotator keeps its last error
// after later rotations succeed, so it is shown as the last error, with
// the epoch it names, to compare with the tunnel's epoch.
func tunnelState(t adminapi.Tunnel) string {
	// The rotator's errors start with the tunnel and peer; the table
	// shows them already.
	msg := strings.TrimPrefix(t.LastError, "tunnel "+t.Name+" peer "+t.Peer+" ")
	msg = shorten(strings.Join(strings.Fields(msg), " "), maxStateLen)
	switch {
	case t.FailedClosed && msg != "":
		return "FAILED CLOSED: " + msg
	case t.FailedClosed:
		return "FAILED CLOSED"
	case msg != "":
		return "last error: " + msg
	}
	return "ok"
}
