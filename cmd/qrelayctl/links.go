package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/qrelay/qrelay/node/adminapi"
)

var linksCmd = nodeCommand[[]adminapi.Link]{
	name: "links",
	what: "Show the node's KM links: component state, connection, cost, pad stock and rates each way, and the QKD link under each.",
	get:  (*adminapi.Client).Links,
	show: showLinks,
}

func showLinks(w io.Writer, links []adminapi.Link) error {
	if len(links) == 0 {
		_, err := fmt.Fprintln(w, "no links")
		return err
	}
	tw := table(w)
	row(tw, "PEER", "ADDRESS", "STATE", "LINK", "ROLE", "COST", "TX PAD", "TX FILL", "TX USE", "RX PAD", "RX FILL", "RX USE", "QKD", "QBER", "KEY RATE", "NOTES")
	for _, l := range links {
		conn := "down"
		if l.Up {
			conn = "up"
		}
		if s := since(l.Since); s != "" {
			conn += " " + s
		}
		role := "slave"
		if l.Master {
			role = "master"
		}
		c := "-"
		if l.Usable {
			c = cost(l.Cost)
		}
		qkd := l.QKD.Kind
		if l.QKD.Simulated && qkd != "sim" {
			qkd += " (simulated)"
		}
		if l.QKD.Up {
			qkd += " up"
		} else {
			qkd += " down"
		}
		var notes []string
		if l.Excluded != "" {
			notes = append(notes, "excluded: "+l.Excluded)
		}
		if l.LastError != "" {
			notes = append(notes, "error: "+l.LastError)
		}
		if l.QKD.Reason != "" {
			notes = append(notes, "qkd: "+l.QKD.Reason)
		}
		row(tw, l.Peer, l.Address, l.State, conn, role, c,
			pad(l.Tx), byteRate(l.Tx.FillBps), byteRate(l.Tx.ConsumeBps),
			pad(l.Rx), byteRate(l.Rx.FillBps), byteRate(l.Rx.ConsumeBps),
			qkd, fmt.Sprintf("%.1f%%", 100*l.QKD.QBER), bitRate(l.QKD.SecretRateBitS), strings.Join(notes, "; "))
	}
	return tw.Flush()
}

// pad is a pad ring's stock of its capacity: "1.0 MiB/4.0 MiB".
func pad(p adminapi.Pad) string {
	return bytesIEC(p.Stock) + "/" + bytesIEC(p.Capacity)
}
