// Package controlplane is qrelay's thin control plane: a link-state routing
// protocol, after OSPF and IS-IS, that computes next hops for the relay
// dataplane. It never touches key bytes.
//
// Each node originates an advert listing its KM links (up, QKD module up,
// pad stock each way, fill and consumption rates, QBER, secret key rate,
// component state, and the derived usable flag and key-aware cost) and
// floods it over the KM links. Every node keeps the newest advert of each
// origin (its LSDB) and runs Dijkstra over the links that both ends
// advertise as usable. The cost of a link rises as its pad stock falls (see
// BaseCost); links below their stock threshold, above their QBER
// threshold, with a QKD module fault, down, out of service or reserved are
// excluded, so a route moves on each of the four triggers. Static routes
// from config override computed ones (see Config.Static).
//
// # Protocol
//
//   - Sequence numbers are per origin and only grow. A router seeds its own
//     from the wall clock in nanoseconds, so a restarted node starts above
//     its previous incarnation; if its clock went back and it hears an
//     advert of its own with a higher number, it jumps above that and
//     re-originates (as OSPF does).
//   - A received advert is installed only if its sequence number is higher
//     than the one held for its origin; it is then flooded to every up
//     neighbour except the sender. Equal or lower numbers are counted and
//     dropped, so flooding ends: each advert crosses each link at most
//     once in each direction.
//   - When a KM link comes up, each end sends the other its whole LSDB
//     (database sync), packed into as few messages as fit MaxMessageLen.
//     If a send to an up link fails, the next UpdateLink for it syncs
//     again.
//   - A node re-originates when what it advertises about a link changes:
//     up, QKD up, usable, state or cost. Stats alone do not, and costs
//     change only at stock doublings, with hysteresis (see cost.go), so a
//     stock hovering around a boundary does not flap. A loss (link down,
//     unusable or removed) is originated at once; other changes at most
//     once per Config.MinOriginInterval. Every Config.Refresh the node
//     re-originates anyway.
//   - Adverts carry their remaining lifetime (Config.MaxAge at
//     origination). Nodes drop adverts that expire; Close floods a flush
//     (no links, lifetime 0) that removes the node at once.
//   - SPF runs Config.SPFDelay after the first change, covering all the
//     changes since; the resulting table is swapped in atomically.
//
// # Wire format
//
// Control-plane messages travel in CONTROL frames of kind Kind (16) on the
// KM link's control stream, which is reliable and ordered; the message type
// is the first byte of the frame's body. Integers are big-endian; floats
// are IEEE 754 binary64 bits, finite and not negative (not -0 either). A
// message:
//
//	offset  size  field
//	0       1     type           1 = ADVERTS (MsgAdverts)
//	1       1     version        1 (Version)
//	2       2     advert count   1..65535
//	4       ...   adverts        back to back; nothing may follow the last
//
// An advert:
//
//	offset  size  field
//	0       1     origin length  n, 1..64 (MaxNodeIDLen)
//	1       n     origin         node ID, [A-Za-z0-9._-]
//	1+n     8     seq            sequence number
//	9+n     4     lifetime       remaining lifetime in ms, at most 24h;
//	                             0 = flush (then link count must be 0)
//	13+n    2     link count     0..256 (MaxLinks)
//	15+n    ...   links          sorted by peer, strictly ascending
//
// A link (55+p bytes):
//
//	offset  size  field
//	0       1     peer length    p, 1..64; the peer is not the origin
//	1       p     peer           node ID
//	1+p     1     flags          bit 0 up, bit 1 qkd_up, bit 2 usable;
//	                             other bits 0; usable needs up, qkd_up and
//	                             state in_service or standby
//	2+p     1     state          0 in_service, 1 out_of_service,
//	                             2 standby, 3 reserved
//	3+p     4     cost           1..65535 if usable, else 0
//	7+p     8     tx stock       pad bytes, this node to the peer
//	15+p    8     rx stock       pad bytes, the peer to this node
//	23+p    8     fill rate      bytes/s
//	31+p    8     consume rate   bytes/s
//	39+p    8     qber           0..1
//	47+p    8     secret rate    bit/s
//
// The encoding is canonical: parsing a message and encoding the result
// gives the same bytes (FuzzParseAdvert checks this). A parse error is a
// *ParseError naming the field, such as "advert[0].link[2].qber", and its
// offset in the message.
package controlplane
