package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/qrelay/qrelay/node/adminapi"
)

var advertsCmd = nodeCommand[[]adminapi.Advert]{
	name: "adverts",
	what: "Show the node's link-state database: the latest advert of every node, one line per advertised link.",
	get:  (*adminapi.Client).Adverts,
	show: showAdverts,
}

func showAdverts(w io.Writer, adverts []adminapi.Advert) error {
	if len(adverts) == 0 {
		_, err := fmt.Fprintln(w, "no adverts")
		return err
	}
	tw := table(w)
	row(tw, "ORIGIN", "SEQ", "AGE", "PEER", "STATE", "UP", "USABLE", "COST", "TX STOCK", "RX STOCK", "QBER")
	for _, a := range adverts {
		seq, age := strconv.FormatUint(a.Seq, 10), seconds(a.AgeS)
		if len(a.Links) == 0 {
			row(tw, a.Origin, seq, age, "-", "", "", "", "", "", "", "")
		}
		for _, l := range a.Links {
			row(tw, a.Origin, seq, age, l.Peer, l.State, yesNo(l.Up), yesNo(l.Usable), cost(l.Cost),
				bytesIEC(l.TxStock), bytesIEC(l.RxStock), fmt.Sprintf("%.1f%%", 100*l.QBER))
		}
	}
	return tw.Flush()
}
