// Command qrelayctl is the operator's tool for qrelay key managers.
//
// version says what this build will run on this machine (notably the
// one-time-pad XOR kernel). pki makes a lab PKI: a CA and certificates for
// nodes, SAEs and operators. status, links, routes, adverts, pools, flows,
// tunnels and audit show a node through its admin API (HTTPS with an
// operator certificate); drain, enable and state change the component state of its
// links; relay relays keys on request. demo starts a three-node network on
// this machine with an SAE pair over ETSI 014, its nodes running as
// `qrelayctl daemon` (the same code as qrelayd). Run
// `qrelayctl <command> -h` for a command's flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// command is one subcommand: its name, a one-line help, and what it runs.
type command struct {
	name, shortHelp string
	run             func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = []command{
	{"version", "print the build and the kernels it selected on this machine", runVersion},
	{"pki", "make a lab CA and certificates for nodes, SAEs and operators", runPKI},
	{"status", "show a node at a glance", statusCmd.run},
	{"links", "show a node's KM links, their pads and QKD links", linksCmd.run},
	{"routes", "show a node's routing table", routesCmd.run},
	{"adverts", "show a node's link-state database", advertsCmd.run},
	{"pools", "show a node's end-to-end key pools", poolsCmd.run},
	{"flows", "show the relay flows a node sources", flowsCmd.run},
	{"tunnels", "show a node's WireGuard tunnels and the rotation of their preshared keys", tunnelsCmd.run},
	{"audit", "show a node's audit record: pad used and burnt per link, key IDs handed to SAEs", runAudit},
	{"drain", "take a link out of service (drain <peer>)", drainCmd.run},
	{"enable", "put a link back in service (enable <peer>)", enableCmd.run},
	{"state", "set a link's component state (state <peer> <state>)", stateCmd.run},
	{"relay", "relay keys to a node now and report what arrived (relay <dst>)", runRelay},
	{"demo", "run a three-node network with simulated QKD links and an SAE pair on this machine", runDemo},
	{"daemon", "run a node, as qrelayd does (daemon -config node.yaml)", runDaemon},
}

func main() {
	os.Exit(dispatch(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the subcommand named by args[0] and returns the exit code:
// 0 on success, 1 when the command failed, 2 on a usage error.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		if err := c.run(ctx, args[1:], stdout); err != nil {
			fmt.Fprintf(stderr, "qrelayctl %s: %v\n", c.name, err)
			if errors.As(err, new(usageError)) {
				return 2
			}
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "qrelayctl: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: qrelayctl <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.shortHelp)
	}
}

// usageError marks an error in how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
