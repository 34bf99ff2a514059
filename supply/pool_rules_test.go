package supply

import (
	"fmt"
	"slices"
	"testing"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/ringstore"
)

// keyAt is a key's state in one pool, for the rules' tests.
type keyAt uint8

const (
	absent keyAt = iota
	free
	assigned
)

func (k keyAt) String() string { return [...]string{"absent", "free", "assigned"}[k] }

// ruleOutcome is what the rules do with one key of a pool pair: the
// reason at O and at I (0: kept).
type ruleOutcome struct{ atO, atI frame.PoolDropReason }

// ruleTable is the table of pool_rules.go, row by row.
var ruleTable = []struct {
	o, i       keyAt
	oRestarted bool
	want       ruleOutcome
}{
	{free, absent, false, ruleOutcome{frame.PoolDropMissing, 0}},
	{free, absent, true, ruleOutcome{frame.PoolDropMissing, 0}},
	{assigned, absent, false, ruleOutcome{frame.PoolDropMissing, 0}},
	{assigned, absent, true, ruleOutcome{frame.PoolDropMissing, 0}},
	{absent, free, false, ruleOutcome{0, frame.PoolDropUnconfirmed}},
	{absent, free, true, ruleOutcome{0, frame.PoolDropUnconfirmed}},
	{absent, assigned, false, ruleOutcome{0, 0}},
	{absent, assigned, true, ruleOutcome{0, frame.PoolDropOrphan}},
	{free, free, false, ruleOutcome{0, 0}},
	{free, free, true, ruleOutcome{0, 0}},
	{free, assigned, false, ruleOutcome{frame.PoolDropStale, frame.PoolDropStale}},
	{free, assigned, true, ruleOutcome{frame.PoolDropStale, frame.PoolDropStale}},
	{assigned, free, false, ruleOutcome{0, 0}},
	{assigned, free, true, ruleOutcome{frame.PoolDropReserved, frame.PoolDropReserved}},
	{assigned, assigned, false, ruleOutcome{0, 0}},
	{assigned, assigned, true, ruleOutcome{frame.PoolDropReserved, frame.PoolDropReserved}},
}

func ruleFor(o, i keyAt, oRestarted bool) (ruleOutcome, bool) {
	for _, r := range ruleTable {
		if r.o == o && r.i == i && r.oRestarted == oRestarted {
			return r.want, true
		}
	}
	return ruleOutcome{}, false
}

// TestPoolRulesTable checks each row of the table on a pool pair
// holding that one key, in both directions of reconcilePools, and that
// the table covers every state (both absent aside).
func TestPoolRulesTable(t *testing.T) {
	id := ringstore.DeriveKeyID("x", "y", 1, 1)
	inv := func(k keyAt) []ringstore.KeyState {
		if k == absent {
			return nil
		}
		return []ringstore.KeyState{{ID: id, Owned: k == assigned}}
	}
	for _, o := range []keyAt{absent, free, assigned} {
		for _, i := range []keyAt{absent, free, assigned} {
			for _, restarted := range []bool{false, true} {
				if o == absent && i == absent {
					continue
				}
				want, ok := ruleFor(o, i, restarted)
				if !ok {
					t.Fatalf("the table has no row for O %v, I %v, O restarted %v", o, i, restarted)
				}
				name := fmt.Sprintf("O %v, I %v, O restarted %v", o, i, restarted)
				// x's out pool with y's in pool; the other pair empty. The
				// other node's restart must not matter.
				for _, otherRestarted := range []bool{false, true} {
					atX, atY := reconcilePools(poolInventory{out: inv(o)}, poolInventory{in: inv(i)}, restarted, otherRestarted)
					checkOutcome(t, name+" (x→y)", atX, atY, o, i, want)
					// y's out pool with x's in pool.
					atI, atO := reconcilePools(poolInventory{in: inv(i)}, poolInventory{out: inv(o)}, otherRestarted, restarted)
					checkOutcome(t, name+" (y→x)", atO, atI, o, i, want)
				}
			}
		}
	}
}

func checkOutcome(t *testing.T, name string, atO, atI []frame.PoolDropKey, o, i keyAt, want ruleOutcome) {
	t.Helper()
	check := func(side string, got []frame.PoolDropKey, in bool, state keyAt, r frame.PoolDropReason) {
		t.Helper()
		if r == 0 {
			if len(got) != 0 {
				t.Errorf("%s: at %s %+v, want the key kept", name, side, got)
			}
			return
		}
		if len(got) != 1 || got[0].Reason != r || got[0].In != in || got[0].Assigned != (state == assigned) {
			t.Errorf("%s: at %s %+v, want one drop of reason %v (in pool %v, assigned %v)", name, side, got, r, in, state == assigned)
		}
	}
	check("O", atO, false, o, want.atO)
	check("I", atI, true, i, want.atI)
}

// TestPoolRulesExhaustive runs reconcilePools on every combination of
// states of three keys in one pool pair and two in the other (each key
// absent, free or assigned in each pool) and both restart flags, and
// checks each key's outcome against the table: the merge of the sorted
// inventories must treat every key on its own whatever its neighbours.
func TestPoolRulesExhaustive(t *testing.T) {
	const keys, keysYX = 3, 2 // keys in pair xy, the first keysYX of them in pair yx
	ids := make([]ringstore.KeyID, keys)
	for k := range ids {
		ids[k] = ringstore.DeriveKeyID("x", "y", 9, uint64(k))
	}
	slices.SortFunc(ids, ringstore.CompareKeyIDs)
	// A key's states in one pool pair: 9 combinations (O, I), both
	// absent included (the key is not in that pair).
	type pairState struct{ o, i keyAt }
	var states []pairState
	for _, o := range []keyAt{absent, free, assigned} {
		for _, i := range []keyAt{absent, free, assigned} {
			states = append(states, pairState{o, i})
		}
	}
	total := 1
	for range keys + keysYX {
		total *= len(states)
	}
	cases := 0
	for n := range total {
		// Digits of n in base 9: the state of each key in pair xy (x's
		// out, y's in) and in pair yx (y's out, x's in). A key ID in
		// both pairs cannot happen (IDs derive from the source node),
		// but the rules must not mix the pairs even then.
		var xy, yx [keys]pairState
		m := n
		for k := range keys {
			xy[k] = states[m%len(states)]
			m /= len(states)
			if k < keysYX {
				yx[k] = states[m%len(states)]
				m /= len(states)
			}
		}
		build := func(ps [keys]pairState, out bool) []ringstore.KeyState {
			var s []ringstore.KeyState
			for k, p := range ps {
				st := p.i
				if out {
					st = p.o
				}
				if st != absent {
					s = append(s, ringstore.KeyState{ID: ids[k], Owned: st == assigned})
				}
			}
			return s
		}
		x := poolInventory{out: build(xy, true), in: build(yx, false)}
		y := poolInventory{out: build(yx, true), in: build(xy, false)}
		for _, xr := range []bool{false, true} {
			for _, yr := range []bool{false, true} {
				cases++
				atX, atY := reconcilePools(x, y, xr, yr)
				for k := range keys {
					checkKey(t, n, ids[k], xy[k].o, xy[k].i, xr, atX, atY)
					checkKey(t, n, ids[k], yx[k].o, yx[k].i, yr, atY, atX)
				}
				if t.Failed() {
					t.Fatalf("case %d: x %+v, y %+v, restarted x %v y %v", n, x, y, xr, yr)
				}
			}
		}
	}
	t.Logf("%d combinations of %d and %d keys in the two pool pairs and two restart flags", cases, keys, keysYX)
}

// checkKey checks that key id, in state o in the out pool of node O and
// i in the in pool of node I, got the table's outcome: atO holds O's
// drops, atI I's.
func checkKey(t *testing.T, n int, id ringstore.KeyID, o, i keyAt, oRestarted bool, atO, atI []frame.PoolDropKey) {
	t.Helper()
	find := func(ds []frame.PoolDropKey, in bool) (frame.PoolDropKey, int) {
		var found frame.PoolDropKey
		count := 0
		for _, d := range ds {
			if d.ID == id && d.In == in {
				found = d
				count++
			}
		}
		return found, count
	}
	var want ruleOutcome
	if o != absent || i != absent {
		var ok bool
		if want, ok = ruleFor(o, i, oRestarted); !ok {
			t.Fatalf("no rule for %v %v %v", o, i, oRestarted)
		}
	}
	for _, side := range []struct {
		name  string
		ds    []frame.PoolDropKey
		in    bool
		state keyAt
		r     frame.PoolDropReason
	}{{"O", atO, false, o, want.atO}, {"I", atI, true, i, want.atI}} {
		d, count := find(side.ds, side.in)
		switch {
		case side.r == 0 && count != 0:
			t.Errorf("case %d: key %s (O %v, I %v, O restarted %v) dropped at %s as %v; want kept", n, id, o, i, oRestarted, side.name, d.Reason)
		case side.r != 0 && (count != 1 || d.Reason != side.r || d.Assigned != (side.state == assigned)):
			t.Errorf("case %d: key %s (O %v, I %v, O restarted %v) at %s: %d drops (%+v); want one, %v", n, id, o, i, oRestarted, side.name, count, d, side.r)
		}
	}
}
