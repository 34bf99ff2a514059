package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/node/adminapi"
)

// linkStateCommand sets the component state of a link: to a fixed state
// (drain, enable) or to the one named on the command line (state).
type linkStateCommand struct {
	name, what string
	state      string // "" to take it from the arguments
}

var (
	drainCmd  = linkStateCommand{"drain", "Take the link to a peer out of service (state out_of_service), so that paths avoid it until it is enabled again.", adminapi.StateOutOfService}
	enableCmd = linkStateCommand{"enable", "Put the link to a peer back in service.", adminapi.StateInService}
	stateCmd  = linkStateCommand{"state", "Set the component state of the link to a peer: in_service, out_of_service, standby or reserved.", ""}
)

func (c linkStateCommand) run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	var nf nodeFlags
	nf.register(fs)
	usage, names := "qrelayctl "+c.name+" <peer> [--node URL] [--cert FILE --key FILE] [--ca FILE]", []string{"<peer>"}
	if c.state == "" {
		usage, names = "qrelayctl state <peer> <in_service|out_of_service|standby|reserved> [--node URL] [--cert FILE --key FILE] [--ca FILE]", []string{"<peer>", "<state>"}
	}
	pos, err := parseArgs(fs, args, usage, names...)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help(stdout, fs, usage, c.what)
			return nil
		}
		return err
	}
	peer, state := pos[0], c.state
	if err := pki.ValidID(peer); err != nil {
		return usageError{fmt.Sprintf("peer %q is not a node ID: %v", peer, err)}
	}
	if state == "" {
		state = pos[1]
		if err := adminapi.ValidState(state); err != nil {
			return usageError{err.Error()}
		}
	}
	client, err := nf.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, nf.timeout)
	defer cancel()
	if err := client.SetLinkState(ctx, peer, state); err != nil {
		return explain(err)
	}
	if nf.json {
		return writeJSON(stdout, struct {
			Node  string `json:"node"`
			Peer  string `json:"peer"`
			State string `json:"state"`
		}{client.URL(), peer, state})
	}
	_, err = fmt.Fprintf(stdout, "%s: link to %s is now %s\n", client.URL(), peer, state)
	return err
}
