package wgkey

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/wgkey/wgtest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// streamKey is index n of a fake key stream: SHA-256(seed ‖ n). Two sources
// with the same seed are the two ends of one stream.
func streamKey(seed string, n uint64) Key {
	h := sha256.New()
	h.Write([]byte(seed))
	binary.Write(h, binary.BigEndian, n)
	return Key(h.Sum(nil))
}

// streamSource is a KeySource over streamKey that can be told to fail.
type streamSource struct {
	seed string

	mu       sync.Mutex
	fail     map[uint64]bool
	released uint64
}

var errNoKey = errors.New("test: no key for this index")

func newSource(seed string, failing ...uint64) *streamSource {
	s := &streamSource{seed: seed, fail: map[uint64]bool{}}
	for _, n := range failing {
		s.fail[n] = true
	}
	return s
}

func (s *streamSource) Key(ctx context.Context, n uint64) (Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail[n] {
		return Key{}, fmt.Errorf("%w %d", errNoKey, n)
	}
	if n < s.released {
		return Key{}, fmt.Errorf("test: index %d asked for after Release(%d)", n, s.released)
	}
	return streamKey(s.seed, n), nil
}

func (s *streamSource) Release(below uint64) {
	s.mu.Lock()
	s.released = max(s.released, below)
	s.mu.Unlock()
}

// recWriter records what passes through a Writer: when each PSK was
// installed (when SetPSKs returned) and how often it drove.
type recWriter struct {
	Writer

	mu        sync.Mutex
	installed map[Key]time.Time
	sets      [][]Update
	drives    [][]wgtypes.Key // by Handshake or Initiate
	lastDrive time.Time
	initiates int
	closes    int
}

func record(w Writer) *recWriter { return &recWriter{Writer: w, installed: map[Key]time.Time{}} }

func (w *recWriter) SetPSKs(u []Update) error {
	err := w.Writer.SetPSKs(u)
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sets = append(w.sets, append([]Update(nil), u...))
	if err == nil {
		for _, x := range u {
			if _, ok := w.installed[x.PSK]; !ok {
				w.installed[x.PSK] = now
			}
		}
	}
	return err
}

func (w *recWriter) Handshake(peers []wgtypes.Key) error {
	w.mu.Lock()
	w.drives = append(w.drives, append([]wgtypes.Key(nil), peers...))
	w.lastDrive = time.Now()
	w.mu.Unlock()
	return w.Writer.Handshake(peers)
}

// Initiate forwards to the Writer recorded, if it can, and counts as a
// drive.
func (w *recWriter) Initiate(peers []wgtypes.Key) error {
	in, ok := w.Writer.(Initiator)
	if !ok {
		return errors.ErrUnsupported
	}
	w.mu.Lock()
	w.drives = append(w.drives, append([]wgtypes.Key(nil), peers...))
	w.lastDrive = time.Now()
	w.initiates++
	w.mu.Unlock()
	return in.Initiate(peers)
}

// CloseSessions forwards to the Writer recorded, if it can.
func (w *recWriter) CloseSessions(peers []wgtypes.Key) error {
	c, ok := w.Writer.(SessionCloser)
	if !ok {
		return errors.ErrUnsupported
	}
	w.mu.Lock()
	w.closes++
	w.mu.Unlock()
	return c.CloseSessions(peers)
}

func (w *recWriter) installedAt(k Key) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.installed[k]
	return t, ok
}

func (w *recWriter) driveCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.drives)
}

// testLog logs warnings and errors to the test's output.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// run starts r.Run; the returned stop (also run at cleanup) ends it and
// waits for it to return.
func run(t testing.TB, r *Rotator) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// pollEvery is how often the tests look at the devices: each look reads
// both (IpcGet), costly under the race detector, and the machine is
// shared with the other packages.
const pollEvery = 25 * time.Millisecond

// during polls check every 10 ms until deadline and returns its first
// complaint, or "" if it had none.
func during(deadline time.Time, check func() string) string {
	for time.Now().Before(deadline) {
		if bad := check(); bad != "" {
			return bad
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// status returns the status of r's only tunnel.
func status(r *Rotator) TunnelStatus { return r.Status()[0] }

// rotatorPair is a wgtest.Pair whose two sides rotate the PSK of their one
// tunnel, A driving.
type rotatorPair struct {
	*wgtest.Pair
	wa, wb *recWriter
	ra, rb *Rotator
}

func newRotatorPair(t *testing.T, interval time.Duration, srcA, srcB KeySource, polA Policy) *rotatorPair {
	return newRotatorPairWith(t, interval, srcA, srcB, polA, Options{})
}

// newRotatorPairWith is newRotatorPair with both Rotators given o (and the
// test's log if o has none).
func newRotatorPairWith(t *testing.T, interval time.Duration, srcA, srcB KeySource, polA Policy, o Options) *rotatorPair {
	if o.Log == nil {
		o.Log = testLog(t)
	}
	p := &rotatorPair{Pair: wgtest.NewPair(t)}
	p.wa, p.wb = record(NewDeviceWriter(p.A.Dev)), record(NewDeviceWriter(p.B.Dev))
	var err error
	p.ra, err = NewRotator(p.wa, []Tunnel{{Name: "to-b", Peer: p.B.Public, Interval: interval, Policy: polA, Drive: true, Source: srcA}}, o)
	if err != nil {
		t.Fatal(err)
	}
	p.rb, err = NewRotator(p.wb, []Tunnel{{Name: "to-a", Peer: p.A.Public, Interval: interval, Source: srcB}}, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// infos reads both sides' view of the tunnel.
func (p *rotatorPair) infos() (a, b wgtest.PeerInfo, err error) {
	if a, err = p.A.Info(p.B.Public); err != nil {
		return
	}
	b, err = p.B.Info(p.A.Public)
	return
}

// inUse reports whether both sides hold psk and a handshake has completed on
// both since both installed it: a handshake completes only with equal PSKs,
// so this proves psk is the one in use.
func (p *rotatorPair) inUse(psk Key) (bool, string) { return inUse(p.wa, p.wb, psk, p.infos) }

// inUse is rotatorPair.inUse for any two sides: wa and wb are their
// writers, infos reads each side's view of the other.
func inUse(wa, wb *recWriter, psk Key, infos func() (a, b wgtest.PeerInfo, err error)) (bool, string) {
	ta, okA := wa.installedAt(psk)
	tb, okB := wb.installedAt(psk)
	if !okA || !okB {
		return false, fmt.Sprintf("not installed on both sides (A %v, B %v)", okA, okB)
	}
	a, b, err := infos()
	if err != nil {
		return false, err.Error()
	}
	if Key(a.PSK) != psk || Key(b.PSK) != psk {
		return false, "the interface shows another PSK"
	}
	after := ta
	if tb.After(after) {
		after = tb
	}
	if !a.LastHandshake.After(after) || !b.LastHandshake.After(after) {
		return false, fmt.Sprintf("no handshake since both installed (at %s): A %s, B %s",
			after.Format("15:04:05.000"), a.LastHandshake.Format("15:04:05.000"), b.LastHandshake.Format("15:04:05.000"))
	}
	return true, ""
}
