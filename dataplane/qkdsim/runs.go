package qkdsim

import "sort"

// runs is a set of indices kept as sorted, disjoint, non-adjacent runs of
// consecutive indices.
type runs []run

type run struct{ lo, hi uint64 } // inclusive

func (r runs) search(i uint64) int { // first run with hi >= i
	return sort.Search(len(r), func(k int) bool { return r[k].hi >= i })
}

func (r runs) contains(i uint64) bool {
	k := r.search(i)
	return k < len(r) && r[k].lo <= i
}

// add inserts i (not yet in the set), merging neighbouring runs, and keeps
// at most maxRuns runs by merging the oldest two.
func (r *runs) add(i uint64) {
	s := *r
	k := s.search(i)
	joinLeft := k > 0 && s[k-1].hi+1 == i
	joinRight := k < len(s) && i+1 == s[k].lo
	switch {
	case joinLeft && joinRight:
		s[k-1].hi = s[k].hi
		s = append(s[:k], s[k+1:]...)
	case joinLeft:
		s[k-1].hi = i
	case joinRight:
		s[k].lo = i
	default:
		s = append(s, run{})
		copy(s[k+1:], s[k:])
		s[k] = run{i, i}
	}
	if len(s) > maxRuns {
		s[1].lo = s[0].lo
		s = append(s[:0], s[1:]...)
	}
	*r = s
}
