package audit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// linkRecords is a link a–b whose records pass CheckLink: blocks in both
// directions, pad used at both ends, burnt after an agreement, and pad
// one end dropped (beyond an agreement's to) whose positions a later
// block filled and both ends used.
func linkRecords() (a, b []Record) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	both := []Record{
		appended("x", m2s, 0, 4096, "blk-1", at(0)),
		appended("x", s2m, 0, 4096, "blk-2", at(0)),
		appended("x", m2s, 4096, 8192, "blk-3", at(1)),
	}
	for _, r := range both {
		r.Peer = "b"
		a = append(a, r)
		r.Peer = "a"
		b = append(b, r)
	}
	a = append(a,
		used("b", m2s, SideTx, 0, 1000, at(2)),
		used("b", m2s, SideTx, 1000, 3000, at(3)),
		used("b", s2m, SideRx, 0, 500, at(3)), // the same positions in the other direction
		burnt("b", m2s, SideTx, 3000, 4096, ReasonSync, at(4)),
		burnt("b", m2s, SideTx, 3000, 4096, ReasonSync, at(4)), // burnt twice: no reuse
		appended("b", m2s, 8192, 12288, "blk-4", at(6)),
		used("b", m2s, SideTx, 8192, 9000, at(7)),
		// Another link's records, at the same positions, and keys.
		used("c", m2s, SideTx, 0, 3000, at(2)),
		appended("c", m2s, 0, 4096, "blk-1", at(0)),
		Record{Time: at(5), Kind: KindKeys, Remote: "b", SAE: "sae-1", Role: RoleMaster, KeyIDs: idStrings(keyIDs(0, 2))},
	)
	b = append(b,
		used("a", m2s, SideRx, 0, 3000, at(3)),
		used("a", s2m, SideTx, 0, 500, at(2)),
		burnt("a", m2s, SideRx, 3000, 4096, ReasonSync, at(4)),
		appended("a", m2s, 8192, 12288, "blk-9", at(4)), // the master never appended it
		burnt("a", m2s, SideRx, 8192, 12288, ReasonDrop, at(5)),
		appended("a", m2s, 8192, 12288, "blk-4", at(6)),
		used("a", m2s, SideRx, 8192, 9000, at(7)),
	)
	return a, b
}

func TestCheckLink(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	a0, b0 := linkRecords()
	if err := CheckLink(a0, b0, "a", "b"); err != nil {
		t.Fatalf("a clean link: %v", err)
	}
	if err := CheckLink(b0, a0, "b", "a"); err != nil {
		t.Fatalf("a clean link, the other way round: %v", err)
	}
	if err := CheckLink(nil, nil, "a", "b"); err != nil {
		t.Fatalf("no records: %v", err)
	}
	cases := []struct {
		name  string
		toA   []Record
		toB   []Record
		want  []string // each in the error
		notIn string   // nor this
	}{
		{name: "used twice", toA: []Record{used("b", m2s, SideTx, 2000, 2500, at(9))},
			want: []string{"node a, link to b: pad MASTER_TO_SLAVE [2000, 2500) used", "overlaps MASTER_TO_SLAVE [1000, 3000) used", "a pad position used twice"}},
		{name: "used twice at the other end", toB: []Record{used("a", s2m, SideTx, 499, 600, at(9))},
			want: []string{"node b, link to a: pad SLAVE_TO_MASTER [499, 600) used", "a pad position used twice"}},
		{name: "used after burnt", toA: []Record{used("b", m2s, SideTx, 3500, 3600, at(9))},
			want: []string{"pad MASTER_TO_SLAVE [3500, 3600) used", "overlaps MASTER_TO_SLAVE [3000, 4096) burnt (sync)", "both used and burnt"}},
		{name: "burnt where used", toA: []Record{burnt("b", m2s, SideTx, 2999, 3000, ReasonGap, at(9))},
			want: []string{"pad MASTER_TO_SLAVE [2999, 3000) burnt (gap)", "overlaps MASTER_TO_SLAVE [1000, 3000) used", "both used and burnt"}},
		{name: "used twice after a refill", toB: []Record{used("a", m2s, SideRx, 8500, 8600, at(8))},
			want: []string{"node b, link to a: pad MASTER_TO_SLAVE [8500, 8600) used", "a pad position used twice"}},
		{name: "dropped pad used with no block after it", toB: []Record{burnt("a", m2s, SideRx, 12288, 16384, ReasonDrop, at(8)), used("a", m2s, SideRx, 12300, 12400, at(9))},
			want: []string{"node b", "MASTER_TO_SLAVE [12300, 12400) used", "overlaps MASTER_TO_SLAVE [12288, 16384) burnt (drop)", "both used and burnt"}},
		{name: "block appended before the burn", toB: []Record{appended("a", m2s, 12288, 16384, "blk-8", at(7)), burnt("a", m2s, SideRx, 12288, 16384, ReasonDrop, at(8)), used("a", m2s, SideRx, 12300, 12400, at(9))},
			want: []string{"overlaps MASTER_TO_SLAVE [12288, 16384) burnt (drop)"}},
		{name: "dropped pad partly filled again",
			toB: []Record{burnt("a", m2s, SideRx, 12288, 16384, ReasonDrop, at(8)), appended("a", m2s, 12288, 14336, "blk-8", at(9)),
				used("a", m2s, SideRx, 12300, 12400, at(10)), used("a", m2s, SideRx, 14400, 14500, at(10))},
			want: []string{"MASTER_TO_SLAVE [14400, 14500) used", "overlaps MASTER_TO_SLAVE [14336, 16384) burnt (drop)"}, notIn: "[12300, 12400)"},
		{name: "block appended twice", toA: []Record{appended("b", m2s, 20000, 24096, "blk-1", at(9))},
			want: []string{`node a, link to b: QKD block "blk-1" appended at MASTER_TO_SLAVE [0, 4096)`, "and at MASTER_TO_SLAVE [20000, 24096)", "a block appended twice"}},
		{name: "block appended in two directions", toB: []Record{appended("a", s2m, 4096, 8192, "blk-3", at(9))},
			want: []string{`node b, link to a: QKD block "blk-3"`, "and at SLAVE_TO_MASTER [4096, 8192)", "a block appended twice"}},
		{name: "block at different positions", toA: []Record{appended("b", s2m, 4096, 8192, "blk-5", at(9))}, toB: []Record{appended("a", m2s, 12288, 16384, "blk-5", at(9))},
			want: []string{`link a–b: QKD block "blk-5" appended at SLAVE_TO_MASTER [4096, 8192) by a and at MASTER_TO_SLAVE [12288, 16384) by b: the ends' pads differ`}},
		{name: "used in a block the other end appended elsewhere",
			toA:   []Record{appended("b", m2s, 16384, 20480, "blk-6", at(9)), used("b", m2s, SideTx, 16384, 17000, at(10))},
			toB:   []Record{appended("a", m2s, 20480, 24576, "blk-6", at(9))},
			want:  []string{`node a, link to b: pad MASTER_TO_SLAVE [16384, 17000) used`, `lies in QKD block "blk-6", which a appended at MASTER_TO_SLAVE [16384, 20480) and b at MASTER_TO_SLAVE [20480, 24576): the ends drew different pad`},
			notIn: "the ends' pads differ"},
		{name: "used where the other end appended a block this end has elsewhere",
			toA:  []Record{appended("b", s2m, 4096, 8192, "blk-7", at(9))},
			toB:  []Record{appended("a", m2s, 16384, 20480, "blk-7", at(9)), used("a", m2s, SideRx, 16384, 16400, at(10))},
			want: []string{`node b, link to a: pad MASTER_TO_SLAVE [16384, 16400) used`, `lies in QKD block "blk-7", which b appended at MASTER_TO_SLAVE [16384, 20480) and a at SLAVE_TO_MASTER [4096, 8192)`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := linkRecords()
			a, b = append(a, c.toA...), append(b, c.toB...)
			err := CheckLink(a, b, "a", "b")
			if err == nil {
				t.Fatal("CheckLink passed")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nwant it to contain\n%s", err, w)
				}
			}
			if c.notIn != "" && strings.Contains(err.Error(), c.notIn) {
				t.Errorf("error\n%v\nreports the problem twice (%q)", err, c.notIn)
			}
			// The records' order does not matter.
			slices.Reverse(a)
			if err2 := CheckLink(a, b, "a", "b"); err2 == nil || len(strings.Split(err2.Error(), "\n")) != len(strings.Split(err.Error(), "\n")) {
				t.Errorf("records in reverse order: %v; want the same problems as\n%v", err2, err)
			}
		})
	}
}

// TestCheckLinkBound: a disaster is reported in 20 lines and a count.
func TestCheckLinkBound(t *testing.T) {
	var a []Record
	for i := range 50 {
		a = append(a, used("b", m2s, SideTx, 0, uint64(10+i), t0))
	}
	err := CheckLink(a, nil, "a", "b")
	lines := strings.Split(fmt.Sprint(err), "\n")
	if len(lines) != maxProblems+1 || lines[maxProblems] != "and 29 more problems" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

// TestCheckLinkFromLogs runs CheckLink on what two logs recorded.
func TestCheckLinkFromLogs(t *testing.T) {
	la, lb := open(t, false, newClock(), Config{}), open(t, true, newClock(), Config{})
	for i := range 10 {
		pos := uint64(i) * 4096
		la.PadAppended("b", 0, pos, 4096, fmt.Sprint("q-", i))
		lb.PadAppended("a", 0, pos, 4096, fmt.Sprint("q-", i))
		for off := uint64(0); off < 4096; off += 1024 {
			la.PadUsed("b", 0, true, pos+off, pos+off+1024)
			lb.PadUsed("a", 0, false, pos+off, pos+off+1024)
		}
	}
	a, b := query(t, la, Query{}), query(t, lb, Query{})
	if err := CheckLink(a, b, "a", "b"); err != nil {
		t.Fatal(err)
	}
	la.PadUsed("b", 0, true, 40960-1024, 40960) // the last frame's pad again
	if err := CheckLink(query(t, la, Query{}), b, "a", "b"); err == nil || !strings.Contains(err.Error(), "used twice") {
		t.Errorf("pad sent twice: %v", err)
	}
}
