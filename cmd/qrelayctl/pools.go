package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/qrelay/qrelay/node/adminapi"
)

var poolsCmd = nodeCommand[[]adminapi.Pool]{
	name: "pools",
	what: "Show the node's end-to-end key pools, one per remote node: stock against capacity and watermarks, and keys added, taken and expired.",
	get:  (*adminapi.Client).Pools,
	show: showPools,
}

func showPools(w io.Writer, pools []adminapi.Pool) error {
	if len(pools) == 0 {
		_, err := fmt.Fprintln(w, "no pools")
		return err
	}
	tw := table(w)
	row(tw, "REMOTE", "KEYS", "CAPACITY", "FULL", "LOW", "HIGH", "ADDED", "TAKEN", "EXPIRED", "NOTES")
	for _, p := range pools {
		note := ""
		if p.Stock < p.Low {
			note = "below the low watermark"
		}
		row(tw, p.Remote, strconv.Itoa(p.Stock), strconv.Itoa(p.Capacity), percent(float64(p.Stock), float64(p.Capacity)),
			strconv.Itoa(p.Low), strconv.Itoa(p.High),
			strconv.FormatUint(p.Added, 10), strconv.FormatUint(p.Taken, 10), strconv.FormatUint(p.Expired, 10), note)
	}
	return tw.Flush()
}
