package main

import (
	"fmt"
	"io"
	"time"

	"github.com/qrelay/qrelay/node/adminapi"
)

var statusCmd = nodeCommand[adminapi.Status]{
	name: "status",
	what: "Show a node at a glance: links, routes, relay and control-plane counters.",
	get:  (*adminapi.Client).Status,
	show: showStatus,
}

func showStatus(w io.Writer, s adminapi.Status) error {
	tw := table(w)
	r, c := s.Relay, s.Control
	row(tw, "node", s.Node)
	row(tw, "version", s.Version)
	row(tw, "started", fmt.Sprintf("%s (up %s)", s.Started.Local().Format(time.RFC3339), seconds(s.UptimeS)))
	row(tw, "links", fmt.Sprintf("%d up of %d", s.LinksUp, s.Links))
	row(tw, "routes", fmt.Sprintf("%d, %d nodes reachable", s.Routes, s.Reachable))
	row(tw, "keys", fmt.Sprintf("%d delivered, %d lost, %d pending; %s relayed", r.KeysDelivered, r.KeysLost, r.Pending, bytesIEC(r.KeyBytesRelayed)))
	row(tw, "frames", fmt.Sprintf("%d sent, %d received, %d forwarded", r.FramesSent, r.FramesReceived, r.FramesForwarded))
	row(tw, "refused frames", fmt.Sprintf("%d bad tags, %d replays, %d malformed", r.BadTags, r.Replays, r.Malformed))
	row(tw, "pad", fmt.Sprintf("%s on MACs, %s burnt, %d waits", bytesIEC(r.PadMACBytes), bytesIEC(r.PadBurnt), r.PadWaits))
	row(tw, "adverts", fmt.Sprintf("%d originated, %d sent, %d received", c.AdvertsOriginated, c.AdvertsSent, c.AdvertsReceived))
	last := "never"
	if !c.LastChange.IsZero() {
		last = since(c.LastChange) + " ago"
	}
	row(tw, "routing", fmt.Sprintf("%d SPF runs, %d reroutes, last change %s", c.SPFRuns, c.Reroutes, last))
	return tw.Flush()
}
