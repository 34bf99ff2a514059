package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/qrelay/qrelay/internal/daemon"
)

// runDaemon is `qrelayctl daemon -config node.yaml`: the node daemon
// exactly as qrelayd runs it (same flags, signals and exit statuses), so
// that one binary can run a network's nodes; the demo starts its nodes
// this way. The node logs to stderr.
func runDaemon(_ context.Context, args []string, _ io.Writer) error {
	switch daemon.Main(args, os.Stderr) {
	case 0:
		return nil
	case 2:
		return usageError{"usage: qrelayctl daemon -config FILE [-check]"}
	default:
		return errDaemonFailed
	}
}

// errDaemonFailed is what dispatch reports after the daemon has logged why.
var errDaemonFailed = errors.New("the node stopped with an error (its log above says why)")
