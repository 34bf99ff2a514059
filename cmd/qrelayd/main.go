// Command qrelayd is the qrelay key-manager daemon, one per trusted node.
//
//	qrelayd -config node.yaml          run the node
//	qrelayd -config node.yaml -check   validate the config and exit
//
// It loads one YAML config (validated strictly: an unknown field or a bad
// value stops start-up with the field's path and the reason), takes keys
// from the node's QKD links, relays end-to-end keys over QUIC KM links,
// routes with the link-state control plane, and serves the admin API and
// metrics. SIGTERM or SIGINT stops it cleanly (relays in flight finish or
// are aborted with their keys discarded at both ends, marks are
// persisted, exit status 0); SIGHUP reloads the SAEs and static routes.
//
// The daemon's body is package internal/daemon, which `qrelayctl daemon`
// runs too. Set the version at build time with
// -ldflags "-X github.com/qrelay/qrelay/internal/daemon.Version=...".
package main

import (
	"io"
	"os"

	"github.com/qrelay/qrelay/internal/daemon"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is the daemon with args, for the tests as for main.
func run(args []string, stderr io.Writer) int { return daemon.Main(args, stderr) }
