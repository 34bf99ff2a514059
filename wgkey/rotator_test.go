package wgkey

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/waitfor"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func peerKey(t testing.TB) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestNewRotatorValidates(t *testing.T) {
	p1, p2 := peerKey(t), peerKey(t)
	src := newSource("v")
	ok := Tunnel{Name: "a", Peer: p1, Interval: time.Second, Source: src}
	with := func(f func(*Tunnel)) Tunnel { c := ok; f(&c); return c }
	for _, tc := range []struct {
		name    string
		w       Writer
		tunnels []Tunnel
		o       Options
		want    string // in the error; "" for none
	}{
		{"good", &fakeWriter{}, []Tunnel{ok, {Name: "b", Peer: p2, Source: src}}, Options{}, ""},
		{"no tunnels", &fakeWriter{}, nil, Options{}, ""},
		{"no writer", nil, []Tunnel{ok}, Options{}, "no Writer"},
		{"no name", &fakeWriter{}, []Tunnel{with(func(c *Tunnel) { c.Name = "" })}, Options{}, "has no name"},
		{"name twice", &fakeWriter{}, []Tunnel{ok, with(func(c *Tunnel) { c.Peer = p2 })}, Options{}, `tunnel "a" is listed twice`},
		{"peer twice", &fakeWriter{}, []Tunnel{ok, with(func(c *Tunnel) { c.Name = "b" })}, Options{}, `tunnels "a" and "b" have the same peer ` + p1.String()},
		{"no peer", &fakeWriter{}, []Tunnel{with(func(c *Tunnel) { c.Peer = wgtypes.Key{} })}, Options{}, "no peer public key"},
		{"short interval", &fakeWriter{}, []Tunnel{with(func(c *Tunnel) { c.Interval = 999 * time.Millisecond })}, Options{}, `tunnel "a": interval 999ms is below 1s`},
		{"negative interval", &fakeWriter{}, []Tunnel{with(func(c *Tunnel) { c.Interval = -time.Second })}, Options{}, "below 1s"},
		{"no source", &fakeWriter{}, []Tunnel{with(func(c *Tunnel) { c.Source = nil })}, Options{}, `tunnel "a" has no key source`},
		{"bad policy", &fakeWriter{}, []Tunnel{with(func(c *Tunnel) { c.Policy = 7 })}, Options{}, "unknown policy Policy(7)"},
		{"negative margin", &fakeWriter{}, []Tunnel{ok}, Options{Margin: -1}, "negative"},
		{"margin too long", &fakeWriter{}, []Tunnel{ok}, Options{Margin: time.Second}, "must be below its interval"},
		{"fetch too long", &fakeWriter{}, []Tunnel{ok}, Options{Fetch: 2 * time.Second}, "must be below its interval"},
	} {
		_, err := NewRotator(tc.w, tc.tunnels, tc.o)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestNewRotatorDefaultsAndGroups(t *testing.T) {
	src := newSource("d")
	r, err := NewRotator(&fakeWriter{}, []Tunnel{
		{Name: "a", Peer: peerKey(t), Interval: time.Second, Source: src},
		{Name: "b", Peer: peerKey(t), Source: src},
		{Name: "c", Peer: peerKey(t), Interval: time.Second, Source: src},
		{Name: "d", Peer: peerKey(t), Interval: 5 * time.Second, Source: src},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range r.groups {
		var names []string
		for _, t := range g.tunnels {
			names = append(names, t.Name)
		}
		got = append(got, fmt.Sprintf("%v margin %v retry %v fetch %v: %s", g.interval, g.margin, g.retry, g.fetch, strings.Join(names, ",")))
	}
	want := []string{
		"1s margin 100ms retry 100ms fetch 500ms: a,c",
		"2m0s margin 200ms retry 100ms fetch 10s: b",
		"5s margin 200ms retry 100ms fetch 2.5s: d",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("groups:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := r.Status(); len(st) != 4 || st[1].Name != "b" || st[3].Name != "d" {
		t.Errorf("Status is not in the order given: %+v", st)
	}
}

// fakeWriter records calls; a driven peer handshakes at once.
type fakeWriter struct {
	mu     sync.Mutex
	sets   [][]Update
	drives [][]wgtypes.Key
	hs     map[wgtypes.Key]time.Time
}

func (w *fakeWriter) SetPSKs(u []Update) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sets = append(w.sets, append([]Update(nil), u...))
	return nil
}

func (w *fakeWriter) Handshake(peers []wgtypes.Key) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drives = append(w.drives, append([]wgtypes.Key(nil), peers...))
	if w.hs == nil {
		w.hs = map[wgtypes.Key]time.Time{}
	}
	for _, p := range peers {
		w.hs[p] = time.Now()
	}
	return nil
}

func (w *fakeWriter) Peers() ([]PeerState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []PeerState
	seen := map[wgtypes.Key]bool{}
	for _, s := range w.sets {
		for _, u := range s {
			if !seen[u.Peer] {
				seen[u.Peer] = true
				out = append(out, PeerState{Peer: u.Peer, LastHandshake: w.hs[u.Peer]})
			}
		}
	}
	return out, nil
}

func (w *fakeWriter) calls() (sets [][]Update, drives [][]wgtypes.Key) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]Update(nil), w.sets...), append([][]wgtypes.Key(nil), w.drives...)
}

// TestRotatorOneCallPerBoundary checks, against a fake Writer, what the
// Rotator writes at start and at the next boundary: the tunnels of one
// interval in one SetPSKs call with their epoch's stream keys, a random
// key for a missing one, drives for the driving tunnel and the failed one
// only, and Release of the indices used.
func TestRotatorOneCallPerBoundary(t *testing.T) {
	// A clock 400 ms before an even second, so that the boundaries of both
	// intervals come soon, together.
	now := time.Now()
	b := EpochStart(EpochAt(now, 2*time.Second)+1, 2*time.Second)
	offset := b.Add(-400 * time.Millisecond).Sub(now)
	clock := func() time.Time { return time.Now().Add(offset) }
	n0 := EpochAt(clock(), time.Second)
	n1 := n0 + 1

	pa, pb, pc := peerKey(t), peerKey(t), peerKey(t)
	sa, sb, sc := newSource("a"), newSource("b", n1), newSource("c")
	w := &fakeWriter{}
	r, err := NewRotator(w, []Tunnel{
		{Name: "a", Peer: pa, Interval: time.Second, Drive: true, Source: sa},
		{Name: "b", Peer: pb, Interval: time.Second, Source: sb},
		{Name: "c", Peer: pc, Interval: 2 * time.Second, Source: sc},
	}, Options{Now: clock, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	both := fmt.Sprint([]wgtypes.Key{pa, pb})
	if ok, why := waitfor.Until(time.Now().Add(3*time.Second), pollEvery, func() (bool, string) {
		_, drives := w.calls()
		return len(drives) > 0 && fmt.Sprint(drives[len(drives)-1]) == both, fmt.Sprintf("drives %v", drives)
	}); !ok {
		t.Fatalf("no drive of a and the failed-closed b at the boundary: %s", why)
	}
	stop()

	sets, drives := w.calls()
	var oneSecond [][]Update // the calls for the 1 s group
	for _, s := range sets {
		if len(s) == 2 {
			oneSecond = append(oneSecond, s)
			continue
		}
		if m := EpochAt(clock(), 2*time.Second); len(s) != 1 || s[0].Peer != pc || s[0].PSK != streamKey("c", m) && s[0].PSK != streamKey("c", m-1) {
			t.Errorf("a SetPSKs call that is neither group's: %v", s)
		}
	}
	if len(oneSecond) != 2 {
		t.Fatalf("%d SetPSKs calls for the 1 s group, want 2 (start, boundary)", len(oneSecond))
	}
	start, boundary := oneSecond[0], oneSecond[1]
	if start[0] != (Update{pa, streamKey("a", n0)}) || start[1] != (Update{pb, streamKey("b", n0)}) {
		t.Errorf("the install at start is not the keys of epoch %d", n0)
	}
	if boundary[0] != (Update{pa, streamKey("a", n1)}) {
		t.Errorf("the install at the boundary is not the key of epoch %d", n1)
	}
	if boundary[1].Peer != pb || boundary[1].PSK == streamKey("b", n1) || boundary[1].PSK == streamKey("b", n0) || boundary[1].PSK == (Key{}) {
		t.Errorf("tunnel b, with no key for epoch %d, did not get a random PSK", n1)
	}
	// At start only the driving tunnel is driven at once; b drives only
	// when no handshake came, which with this fake is once, on its own.
	if fmt.Sprint(drives[0]) != fmt.Sprint([]wgtypes.Key{pa}) {
		t.Errorf("drive at start: %v, want only a", drives[0])
	}
	for _, s := range []*streamSource{sa, sb} {
		if s.released != n1+1 {
			t.Errorf("source %s: released below %d, want %d", s.seed, s.released, n1+1)
		}
	}
	st := r.Status()
	if st[0].Rotations != 2 || st[0].Failures != 0 || st[0].Epoch != n1 || st[0].LastHandshake.IsZero() {
		t.Errorf("status of a: %+v", st[0])
	}
	if !st[1].FailedClosed || st[1].Failures != 1 || st[1].Epoch != n1 || !strings.Contains(st[1].LastError, fmt.Sprintf("tunnel b peer %s epoch %d", pb, n1)) {
		t.Errorf("status of b: %+v", st[1])
	}
}

// probeWriter is a fakeWriter that can close sessions, and calls probe
// during each SetPSKs and closeProbe during each CloseSessions, before the
// call returns: the moments a reader sees a device already changing.
type probeWriter struct {
	fakeWriter
	probe      func(u []Update)
	closeProbe func()
}

func (w *probeWriter) SetPSKs(u []Update) error {
	w.probe(u)
	return w.fakeWriter.SetPSKs(u)
}

func (w *probeWriter) CloseSessions(peers []wgtypes.Key) error {
	w.closeProbe()
	return nil
}

// TestStatusFailedClosedInOneStep: a tunnel's failure and its failing
// closed show in Status together, never the failure counted while the
// status still says the tunnel is fine; and Status says failed closed
// only once the session is closed, not while traffic may still pass.
// Operators and tests reading Status while the random PSK goes in must not
// see a half-made state.
func TestStatusFailedClosedInOneStep(t *testing.T) {
	peer := peerKey(t)
	n0 := EpochAt(time.Now(), time.Second)
	// Epochs after the first two fail, so the failing boundary comes
	// within two seconds whenever the test starts.
	src := newSource("a", n0+2, n0+3, n0+4)
	var (
		mu   sync.Mutex
		r    *Rotator
		seen []TunnelStatus // Status during each install of a random key
	)
	w := &probeWriter{probe: func(u []Update) {
		if len(u) != 1 || u[0].PSK == streamKey("a", EpochAt(time.Now(), time.Second)) || u[0].PSK == streamKey("a", EpochAt(time.Now(), time.Second)-1) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Status()[0])
	}}
	var atFirstClose *TunnelStatus // Status while the first session is being closed
	w.closeProbe = func() {
		mu.Lock()
		defer mu.Unlock()
		if atFirstClose == nil {
			st := r.Status()[0]
			atFirstClose = &st
		}
	}
	var err error
	r, err = NewRotator(w, []Tunnel{{Name: "a", Peer: peer, Interval: time.Second, Drive: true, Source: src}}, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	if ok, why := waitfor.Until(time.Now().Add(5*time.Second), pollEvery, func() (bool, string) {
		st := status(r)
		return st.FailedClosed, fmt.Sprintf("status %+v", st)
	}); !ok {
		t.Fatalf("the tunnel did not fail closed: %s", why)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no random PSK was installed")
	}
	for i, st := range seen {
		if st.Failures > 0 && !st.FailedClosed {
			t.Errorf("install %d of a random PSK: Status shows %d failures (%q) but not failed closed", i, st.Failures, st.LastError)
		}
	}
	switch {
	case atFirstClose == nil:
		t.Error("the failed-closed tunnel's session was never closed")
	case atFirstClose.FailedClosed:
		t.Error("Status said failed closed before the session was closed")
	}
}

// keyedDriveWriter is a fakeWriter that records, for each drive, the PSK
// its first peer held then.
type keyedDriveWriter struct {
	fakeWriter
	drivenWith []Key
}

func (w *keyedDriveWriter) Handshake(peers []wgtypes.Key) error {
	w.mu.Lock()
	var psk Key
	for _, s := range w.sets {
		for _, u := range s {
			if u.Peer == peers[0] {
				psk = u.PSK
			}
		}
	}
	w.drivenWith = append(w.drivenWith, psk)
	w.mu.Unlock()
	return w.fakeWriter.Handshake(peers)
}

// TestLateStartLeavesDriveToBoundary: a rotator started 150 ms before a
// boundary installs the epoch's key but does not drive it, as a handshake
// would have less than Retry before confirm gives up and would be
// reported as a peer without the PSK; the first drive is the next
// epoch's.
func TestLateStartLeavesDriveToBoundary(t *testing.T) {
	now := time.Now()
	b := EpochStart(EpochAt(now, time.Second)+1, time.Second)
	offset := b.Add(-150 * time.Millisecond).Sub(now)
	clock := func() time.Time { return time.Now().Add(offset) }
	n0 := EpochAt(clock(), time.Second)

	w := &keyedDriveWriter{}
	r, err := NewRotator(w, []Tunnel{{Name: "a", Peer: peerKey(t), Interval: time.Second, Drive: true, Source: newSource("a")}},
		Options{Now: clock, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	if ok, why := waitfor.Until(time.Now().Add(3*time.Second), pollEvery, func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.drivenWith) > 0, fmt.Sprintf("%d installs, no drive", len(w.sets))
	}); !ok {
		t.Fatalf("no drive: %s", why)
	}
	stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.drivenWith[0] == streamKey("a", n0) {
		t.Errorf("drove epoch %d's key, installed 150 ms before its end; want the first drive at the next boundary", n0)
	} else if w.drivenWith[0] != streamKey("a", n0+1) {
		t.Errorf("the first drive was with neither epoch %d's key nor %d's", n0, n0+1)
	}
	if st := r.Status()[0]; st.Unconfirmed != 0 {
		t.Errorf("unconfirmed %d: %s", st.Unconfirmed, st.LastError)
	}
}
