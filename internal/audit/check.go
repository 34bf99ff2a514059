package audit

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"
)

// maxProblems bounds what CheckLink reports.
const maxProblems = 20

// CheckLink checks the audit records of the two ends of a KM link, a of
// node aNode and b of node bNode (each node's Query results; records of
// other links are ignored), and returns every problem found (up to 20),
// joined, or nil. It fails when
//
//   - a pad position of a direction was used twice at one end, or used
//     and burnt there (burning twice is no reuse, and a burnt range whose
//     positions later blocks filled again, as after pad beyond an
//     agreement's to was dropped, counts as burnt only where no later
//     block lies);
//   - one end appended the same QKD block at two positions;
//   - the two ends appended a QKD block at different positions;
//   - a position used at one end lies in a block that the other end
//     appended at a different position (reported as such rather than as
//     the previous case).
//
// A block that only one end appended (an assignment that failed or was
// dropped) is no problem, and positions neither end recorded are not
// checked: the records of a node that restarted in memory mode, or of
// the last flush interval before a node died, are gone.
func CheckLink(a, b []Record, aNode, bNode string) error {
	ea, eb := newEnd(aNode, a, bNode), newEnd(bNode, b, aNode)
	var c checker
	for _, e := range []*end{ea, eb} {
		for d := range e.dirs {
			c.overlaps(e, d)
		}
		c.duplicateBlocks(e)
	}
	reported := map[string]bool{}
	for _, pair := range [][2]*end{{ea, eb}, {eb, ea}} {
		c.usedInMovedBlocks(pair[0], pair[1], reported)
	}
	c.movedBlocks(ea, eb, reported)
	if len(c.problems) > maxProblems {
		n := len(c.problems) - maxProblems
		c.problems = append(c.problems[:maxProblems], fmt.Errorf("and %d more problems", n))
	}
	return errors.Join(c.problems...)
}

// place is where an end appended a block, or a range it used or burnt.
type place struct {
	dir      string
	from, to uint64
	time     time.Time
	block    string // appended
	reason   string // burnt
	used     bool   // used, not burnt
}

func (p place) String() string {
	return fmt.Sprintf("%s [%d, %d)", p.dir, p.from, p.to)
}

// end is one end's records of the link.
type end struct {
	node   string
	peer   string
	blocks map[string][]place // by block ID, oldest first
	dirs   map[string]*dirRecs
}

type dirRecs struct {
	appended []place // sorted by from
	longest  uint64  // of the appended blocks
	ranges   []place // used and burnt
}

func newEnd(node string, rs []Record, peer string) *end {
	e := &end{node: node, peer: peer, blocks: map[string][]place{}, dirs: map[string]*dirRecs{}}
	for _, r := range rs {
		if r.Peer != peer || r.Kind == KindKeys || r.To <= r.From {
			continue
		}
		d := e.dirs[r.Dir]
		if d == nil {
			d = &dirRecs{}
			e.dirs[r.Dir] = d
		}
		p := place{dir: r.Dir, from: r.From, to: r.To, time: r.Time, block: r.Block, reason: r.Reason, used: r.Kind == KindPadUsed}
		switch r.Kind {
		case KindPadAppended:
			d.appended = append(d.appended, p)
			d.longest = max(d.longest, p.to-p.from)
			e.blocks[r.Block] = append(e.blocks[r.Block], p)
		case KindPadUsed, KindPadBurnt:
			d.ranges = append(d.ranges, p)
		}
	}
	for _, d := range e.dirs {
		slices.SortStableFunc(d.appended, func(x, y place) int { return cmp.Compare(x.from, y.from) })
	}
	for _, ps := range e.blocks { // the first append first, whatever the records' order
		slices.SortStableFunc(ps, func(x, y place) int {
			return cmp.Or(x.time.Compare(y.time), cmp.Compare(x.dir, y.dir), cmp.Compare(x.from, y.from))
		})
	}
	return e
}

// covering calls fn for each block appended in direction dir that
// overlaps [from, to), in order of position.
func (e *end) covering(dir string, from, to uint64, fn func(place)) {
	d := e.dirs[dir]
	if d == nil {
		return
	}
	// Blocks overlap only where positions were filled again, so none
	// that starts a longest block's length before from reaches it.
	lo := uint64(0)
	if from > d.longest {
		lo = from - d.longest
	}
	i, _ := slices.BinarySearchFunc(d.appended, lo, func(p place, pos uint64) int { return cmp.Compare(p.from, pos) })
	for _, p := range d.appended[i:] {
		if p.from >= to {
			break
		}
		if p.to > from {
			fn(p)
		}
	}
}

type checker struct{ problems []error }

func (c *checker) add(format string, a ...any) {
	c.problems = append(c.problems, fmt.Errorf(format, a...))
}

// overlaps finds positions of direction dir used twice, or used and
// burnt, at end e.
func (c *checker) overlaps(e *end, dir string) {
	var rs []place
	for _, r := range e.dirs[dir].ranges {
		if r.used {
			rs = append(rs, r)
			continue
		}
		rs = append(rs, e.trulyBurnt(r)...)
	}
	slices.SortStableFunc(rs, func(x, y place) int { return cmp.Compare(x.from, y.from) })
	var lastUsed, lastBurnt *place // the used and burnt ranges reaching furthest so far
	for i := range rs {
		r := &rs[i]
		what := "burnt (" + r.reason + ")"
		switch {
		case lastUsed != nil && r.from < lastUsed.to && r.used:
			c.add("node %s, link to %s: pad %s used at %s overlaps %s used at %s: a pad position used twice",
				e.node, e.peer, r, stamp(r.time), lastUsed, stamp(lastUsed.time))
		case lastUsed != nil && r.from < lastUsed.to:
			c.add("node %s, link to %s: pad %s %s at %s overlaps %s used at %s: a pad position both used and burnt",
				e.node, e.peer, r, what, stamp(r.time), lastUsed, stamp(lastUsed.time))
		case r.used && lastBurnt != nil && r.from < lastBurnt.to:
			c.add("node %s, link to %s: pad %s used at %s overlaps %s burnt (%s) at %s: a pad position both used and burnt",
				e.node, e.peer, r, stamp(r.time), lastBurnt, lastBurnt.reason, stamp(lastBurnt.time))
		}
		if r.used && (lastUsed == nil || r.to > lastUsed.to) {
			lastUsed = r
		}
		if !r.used && (lastBurnt == nil || r.to > lastBurnt.to) {
			lastBurnt = r
		}
	}
}

// trulyBurnt is what of burnt range r no block appended at e after it
// fills again: pad beyond an agreement's to is dropped at one end and its
// positions take the next blocks.
func (e *end) trulyBurnt(r place) []place {
	var refilled []place
	e.covering(r.dir, r.from, r.to, func(p place) {
		if !p.time.Before(r.time) {
			refilled = append(refilled, p)
		}
	})
	out := []place{}
	pos := r.from
	for _, p := range refilled { // sorted by from
		if p.from > pos {
			piece := r
			piece.from, piece.to = pos, min(p.from, r.to)
			out = append(out, piece)
		}
		pos = max(pos, p.to)
		if pos >= r.to {
			break
		}
	}
	if pos < r.to {
		piece := r
		piece.from = pos
		out = append(out, piece)
	}
	return out
}

// duplicateBlocks finds blocks end e appended at two positions.
func (c *checker) duplicateBlocks(e *end) {
	for _, id := range sortedKeys(e.blocks) {
		ps := e.blocks[id]
		for _, p := range ps[1:] {
			if p.dir != ps[0].dir || p.from != ps[0].from {
				c.add("node %s, link to %s: QKD block %q appended at %s at %s and at %s at %s: a block appended twice",
					e.node, e.peer, id, ps[0], stamp(ps[0].time), p, stamp(p.time))
				break
			}
		}
	}
}

// usedInMovedBlocks finds positions used at x that lie in a block which
// y appended at another position than x did, from either end's view of
// which blocks lie there.
func (c *checker) usedInMovedBlocks(x, y *end, reported map[string]bool) {
	for _, dir := range sortedKeys(x.dirs) {
		for _, r := range x.dirs[dir].ranges {
			if !r.used {
				continue
			}
			check := func(p place) {
				xp, xok := first(x.blocks[p.block])
				yp, yok := first(y.blocks[p.block])
				if !xok || !yok || reported[p.block] || (xp.dir == yp.dir && xp.from == yp.from) {
					return
				}
				reported[p.block] = true
				c.add("node %s, link to %s: pad %s used at %s lies in QKD block %q, which %s appended at %s and %s at %s: the ends drew different pad",
					x.node, x.peer, r, stamp(r.time), p.block, x.node, xp, y.node, yp)
			}
			x.covering(dir, r.from, r.to, check)
			y.covering(dir, r.from, r.to, check)
		}
	}
}

// movedBlocks finds blocks the two ends appended at different positions.
func (c *checker) movedBlocks(a, b *end, reported map[string]bool) {
	for _, id := range sortedKeys(a.blocks) {
		ap, _ := first(a.blocks[id])
		bp, ok := first(b.blocks[id])
		if !ok || reported[id] || (ap.dir == bp.dir && ap.from == bp.from && ap.to == bp.to) {
			continue
		}
		c.add("link %s–%s: QKD block %q appended at %s by %s and at %s by %s: the ends' pads differ",
			a.node, b.node, id, ap, a.node, bp, b.node)
	}
}

func first(ps []place) (place, bool) {
	if len(ps) == 0 {
		return place{}, false
	}
	return ps[0], true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
