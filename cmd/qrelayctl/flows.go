package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/qrelay/qrelay/node/adminapi"
)

var flowsCmd = nodeCommand[[]adminapi.Flow]{
	name: "flows",
	what: "Show the relay flows this node sources: destination, flow ID, next key sequence and frames awaiting the destination's completion; flow IDs in hex, as logs and errors show them.",
	get:  (*adminapi.Client).Flows,
	show: showFlows,
}

func showFlows(w io.Writer, flows []adminapi.Flow) error {
	if len(flows) == 0 {
		_, err := fmt.Fprintln(w, "no flows")
		return err
	}
	tw := table(w)
	row(tw, "DST", "FLOW", "NEXT SEQ", "PENDING")
	for _, f := range flows {
		row(tw, f.Dst, fmt.Sprintf("%016x", f.ID), strconv.FormatUint(f.NextSeq, 10), strconv.Itoa(f.Pending))
	}
	return tw.Flush()
}
