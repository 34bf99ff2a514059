package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/qrelay/qrelay/node/adminapi"
)

var routesCmd = nodeCommand[[]adminapi.Route]{
	name: "routes",
	what: "Show the node's routing table: next hop, cost and path to every node it can reach.",
	get:  (*adminapi.Client).Routes,
	show: showRoutes,
}

func showRoutes(w io.Writer, routes []adminapi.Route) error {
	if len(routes) == 0 {
		_, err := fmt.Fprintln(w, "no routes")
		return err
	}
	tw := table(w)
	row(tw, "DST", "NEXT HOP", "COST", "FROM", "PATH")
	for _, r := range routes {
		from := "spf"
		if r.Static {
			from = "static"
		}
		row(tw, r.Dst, r.NextHop, cost(r.Cost), from, strings.Join(r.Path, " -> "))
	}
	return tw.Flush()
}
