package relay

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/internal/faults"
	"github.com/qrelay/qrelay/internal/waitfor"
)

func TestAgreement(t *testing.T) {
	const m2s, s2m = frame.DirMasterToSlave, frame.DirSlaveToMaster
	st := func(um, hm, us, hs uint64) frame.Sync {
		var y frame.Sync
		y.Used[m2s], y.Head[m2s], y.Used[s2m], y.Head[s2m] = um, hm, us, hs
		return y
	}
	ag := func(fm, tm, fs, ts uint64) frame.SyncAgree {
		var a frame.SyncAgree
		a.From[m2s], a.To[m2s], a.From[s2m], a.To[s2m] = fm, tm, fs, ts
		return a
	}
	fresh := func(y frame.Sync) frame.Sync { y.Fresh = true; return y }
	for _, c := range []struct {
		name          string
		master, slave frame.Sync
		announced     [2]uint64 // zero: the master's heads
		want          frame.SyncAgree
	}{
		{"in step: all stock kept", st(100, 500, 40, 90), st(100, 500, 40, 90), [2]uint64{}, ag(100, 500, 40, 90)},
		{"frames in flight: the receiver's cursor lags", st(120, 500, 40, 90), st(100, 500, 60, 90), [2]uint64{}, ag(120, 500, 60, 90)},
		{"slave appended beyond the master", st(100, 500, 40, 90), st(100, 700, 40, 190), [2]uint64{}, ag(100, 500, 40, 90)},
		{"durable restart: mark beyond the peer's head", st(100, 500, 40, 90), st(100, 500, 1000, 1000), [2]uint64{}, ag(100, 500, 1000, 1000)},
		// A fresh end cannot say what it used: start beyond everything
		// assigned, so that no position is used again.
		{"slave restarted in memory mode", st(5000, 6000, 300, 400), fresh(st(0, 0, 0, 0)), [2]uint64{6000, 400}, ag(6000, 6000, 400, 400)},
		{"slave restarted with assignments in flight", st(5000, 6000, 300, 400), fresh(st(0, 0, 0, 0)), [2]uint64{7000, 900}, ag(7000, 7000, 900, 900)},
		{"master restarted in memory mode", fresh(st(0, 0, 0, 0)), st(5000, 6500, 300, 450), [2]uint64{}, ag(6500, 6500, 450, 450)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ann := c.announced
			if ann == ([2]uint64{}) {
				ann = c.master.Head
			}
			got := agreement(&c.master, &c.slave, ann)
			if got != c.want {
				t.Fatalf("agreement = %+v, want %+v", got, c.want)
			}
			for _, y := range []*frame.Sync{&c.master, &c.slave} {
				if err := checkAgreement(y, &got); err != nil {
					t.Errorf("an end with %+v refuses the agreement: %v", *y, err)
				}
			}
		})
	}
	// A lying or broken master: the slave refuses what would reuse pad or
	// claim pad it lacks.
	slave := st(100, 500, 40, 90)
	for _, c := range []struct {
		a    frame.SyncAgree
		want string
	}{
		{ag(99, 500, 40, 90), "MASTER_TO_SLAVE from 99 is below this end's used 100"},
		{ag(100, 500, 39, 90), "SLAVE_TO_MASTER from 39 is below this end's used 40"},
		{ag(100, 501, 40, 90), "keeps pad up to 501, but this end's pad ends at 500"},
	} {
		err := checkAgreement(&slave, &c.a)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("checkAgreement(%+v) = %v, want an error containing %q", c.a, err, c.want)
		}
	}
	if err := checkAgreement(&slave, &frame.SyncAgree{From: [2]uint64{900, 900}, To: [2]uint64{900, 900}}); err != nil {
		t.Errorf("a skip beyond this end's pad (from = to) is refused: %v", err)
	}
}

// linked waits until the link a-b is up at both ends and holds pad each way.
func (n *testNet) linked(t *testing.T, a, b string) {
	t.Helper()
	waitfor.Bool(t, "link "+a+"-"+b+" up with pad", 15*time.Second, func() bool {
		for _, p := range [][2]string{{a, b}, {b, a}} {
			l := n.nodes[p[0]].eng.link(p[1])
			if l.current() == nil || l.tx.Stats().Stock < 1<<20 {
				return false
			}
		}
		return true
	})
}

// noBadTags fails if any node's engine saw a tag that did not verify: two
// ends that disagree about a pad position show up as bad tags.
func (n *testNet) noBadTags(t *testing.T) {
	t.Helper()
	for id, nd := range n.nodes {
		if bt := nd.eng.Stats().BadTags.Load(); bt != 0 {
			t.Errorf("node %s saw %d bad tags: the ends of a link disagree about their pads", id, bt)
		}
	}
}

// TestRestart restarts one end of a link, the slave or the master, in
// memory and in durable mode, and checks that the link heals by itself,
// that what the restarted end had used or lost is burnt, and that
// durable stock survives.
func TestRestart(t *testing.T) {
	for _, durable := range []bool{false, true} {
		for _, who := range []string{"b", "a"} { // b is the slave, a the master
			mode := map[bool]string{false: "memory", true: "durable"}[durable]
			role := map[string]string{"a": "master", "b": "slave"}[who]
			t.Run(mode+"/"+role, func(t *testing.T) {
				edges := [][2]string{{"a", "b"}}
				n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{durable: durable})
				n.linked(t, "a", "b")
				relayOK(t, n.nodes["a"].eng, "b", 4096, 32)
				relayOK(t, n.nodes["b"].eng, "a", 4096, 32)
				n.checkPools(t) // the pools are memory-only here: empty them first
				survivor := map[string]string{"a": "b", "b": "a"}[who]
				sl := n.nodes[survivor].eng.link(who)
				before := sl.tx.Stats()

				n.restart(who)
				n.linked(t, "a", "b")
				after := sl.tx.Stats()
				rl := n.nodes[who].eng.link(survivor)
				if durable {
					// Nothing was in flight: the survivor's used cursor
					// stays where it was, its stock is kept.
					if after.Reserved != before.Reserved {
						t.Errorf("durable restart of the %s: the survivor's tx cursor moved from %d to %d; its stock should be kept", role, before.Reserved, after.Reserved)
					}
				} else {
					// The restarted end lost its pad: the survivor burnt all
					// its stock, and both resumed where the survivor had
					// used up to.
					if after.Burnt < before.Stock {
						t.Errorf("memory restart of the %s: the survivor burnt %d bytes, want at least its stock of %d, which the peer lost", role, after.Burnt, before.Stock)
					}
					if after.Reserved < before.Reserved {
						t.Errorf("memory restart of the %s: the survivor's tx cursor went back from %d to %d", role, before.Reserved, after.Reserved)
					}
				}
				if rs := rl.rx.Stats(); rs.Reserved < before.Reserved {
					t.Errorf("the restarted %s's rx ring resumed at %d, below %d, where the survivor had sent up to", role, rs.Reserved, before.Reserved)
				}
				relayOK(t, n.nodes["a"].eng, "b", 4096, 32)
				relayOK(t, n.nodes["b"].eng, "a", 4096, 32)
				if _, keys := n.checkPools(t); keys != 2*4096 {
					t.Errorf("%d keys at both ends after the restart, want %d", keys, 2*4096)
				}
				n.noBadTags(t)
				n.checkAudit(t)
				if s := n.nodes[survivor].eng.Stats().Syncs.Load(); s < 2 {
					t.Errorf("the survivor agreed on the pads %d times, want at least 2 (before and after the restart)", s)
				}
			})
		}
	}
}

// TestCrashInAssign kills a node at the two points where an assignment is
// half done: the slave appended but did not acknowledge, and the master
// has the acknowledgement but did not append. After the restart the link
// agrees on its pads with nothing appended at one end only: the master
// settles by position what the slave recorded, and the slave drops what
// the master lost.
func TestCrashInAssign(t *testing.T) {
	for _, c := range []struct {
		point, node string
	}{
		{faults.SlaveAppended, "b"},
		{faults.MasterAcked, "a"},
	} {
		for _, durable := range []bool{false, true} {
			mode := map[bool]string{false: "memory", true: "durable"}[durable]
			t.Run(c.point+"/"+mode, func(t *testing.T) {
				edges := [][2]string{{"a", "b"}}
				n := newTestNet(t, []string{"a", "b"}, edges, nil, netOpts{durable: durable, ringSize: 4 << 20})
				n.linked(t, "a", "b")
				var fired atomic.Bool
				died := make(chan struct{})
				defer faults.Set(func(name, node string) bool {
					if name == c.point && node == c.node && fired.CompareAndSwap(false, true) {
						close(died)
						return true
					}
					return false
				})()
				// Use pad so that the master assigns more.
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				go func() {
					for ctx.Err() == nil {
						n.nodes["a"].eng.Relay(ctx, "b", 2048, 32)
					}
				}()
				select {
				case <-died:
				case <-ctx.Done():
					t.Fatalf("node %s never reached %s", c.node, c.point)
				}
				cancel()
				n.restart(c.node)
				n.linked(t, "a", "b")
				ms := n.nodes["a"].eng.Stats()
				bs := n.nodes["b"].eng.link("a")
				switch {
				case c.point == faults.SlaveAppended && durable:
					// The slave's ring recorded the blocks: the master
					// appends them too.
					if ms.AssignsSettled.Load() == 0 {
						t.Errorf("the master settled no assignment by the slave's head")
					}
				case c.point == faults.SlaveAppended:
					// The slave lost them: the master drops its copy.
					if ms.AssignsDropped.Load() == 0 {
						t.Errorf("the master dropped no assignment the restarted slave lacks")
					}
				default:
					// The master never appended: the slave drops what it
					// holds beyond, in one direction or the other.
					if burnt := bs.tx.Stats().Burnt + bs.rx.Stats().Burnt; burnt == 0 {
						t.Errorf("the slave burnt no pad after the master lost an acknowledged assignment")
					}
				}
				relayOK(t, n.nodes["a"].eng, "b", 4096, 32)
				relayOK(t, n.nodes["b"].eng, "a", 4096, 32)
				n.noBadTags(t)
				n.checkAudit(t)
			})
		}
	}
}

// TestCompletionFromAnotherNode checks that a COMPLETION OK counts only if
// it names the keys' destination and count: any node can send one, and
// only the destination stores keys.
func TestCompletionFromAnotherNode(t *testing.T) {
	n := newTestNet(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, nil, netOpts{})
	n.linked(t, "a", "b")
	a := n.nodes["a"].eng
	sent := make(chan frame.Relay, 1)
	tamper(n, "a", func(b []byte) [][]byte {
		r, err := frame.ParseRelay(b)
		if err != nil {
			t.Error(err)
		}
		sent <- r
		return nil // b never gets it
	})
	done := make(chan Result, 1)
	go func() {
		res, _ := a.Relay(context.Background(), "b", 16, 32)
		done <- res
	}()
	r := <-sent
	forged := []frame.Completion{
		{Status: frame.StatusOK, Count: r.Count, Flow: r.Flow, FirstSeq: r.FirstSeq, Src: "a", Dst: "mallory"},
		{Status: frame.StatusOK, Count: r.Count + 1, Flow: r.Flow, FirstSeq: r.FirstSeq, Src: "a", Dst: "b"},
	}
	for i := range forged {
		a.completion(&forged[i])
	}
	if got := a.Stats().BadCompletions.Load(); got != 2 {
		t.Fatalf("BadCompletions = %d, want 2", got)
	}
	if a.Pending() != 1 {
		t.Fatalf("%d frames pending after forged completions, want 1: a forged COMPLETION settled the keys", a.Pending())
	}
	a.completion(&frame.Completion{Status: frame.StatusOK, Count: r.Count, Flow: r.Flow, FirstSeq: r.FirstSeq, Src: "a", Dst: "b"})
	if res := <-done; res.Delivered != 16 {
		t.Fatalf("the destination's own COMPLETION OK delivered %d keys, want 16", res.Delivered)
	}
}

// TestSyncWhileSlaveWaitsForRoom: the slave may be waiting to append an
// assignment to a ring that only frames of the current connection can
// free (the master counts room by its own ring, whose pad it released
// when it sent). If that connection dies the frames never come; the next
// connection must still agree on its pads.
func TestSyncWhileSlaveWaitsForRoom(t *testing.T) {
	n := newTestNet(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, nil, netOpts{ringSize: 4 << 20})
	n.linked(t, "a", "b")
	tamper(n, "a", func([]byte) [][]byte { return nil }) // a's frames are lost on the way
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 4 {
		go func() {
			for ctx.Err() == nil {
				n.nodes["a"].eng.Relay(ctx, "b", 64*2048, 32)
			}
		}()
	}
	brx := n.nodes["b"].eng.link("a").rx
	waitfor.Bool(t, "b's rx ring full, an assignment waiting for room", 20*time.Second, func() bool {
		return brx.Stats().AppendRejected > 0
	})
	cancel()
	n.nodes["a"].eng.testHookSend.Store(nil)
	n.conn("a", "b").Close("test: the connection dies with a's frames lost")
	n.linked(t, "a", "b")
	relayOK(t, n.nodes["a"].eng, "b", 2048, 32)
	relayOK(t, n.nodes["b"].eng, "a", 2048, 32)
	n.noBadTags(t)
	n.checkAudit(t)
}
