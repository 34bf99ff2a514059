// Package qkdsim simulates one end of a QKD link for tests, benchmarks and
// demos. It is NOT quantum key distribution: both ends derive their blocks
// from a shared seed, so anyone who knows the seed knows every key. New
// says so in a warning, and Status reports Simulated.
//
// # Blocks
//
// Block i of link L is bytes [i×BlockSize, (i+1)×BlockSize) of the
// AES-256-CTR keystream under the key HMAC-SHA256(Seed, "qrelay qkdsim
// v1\x00" || L), with a 128-bit big-endian counter starting at 0: block i
// starts at counter i×BlockSize/16, so no two blocks share keystream and a
// batch of consecutive blocks is made in one pass. Its ID is "L-<i>" (i in decimal) and its
// Source "qkdsim:L". Both ends configured with the same link name, seed and
// block size produce identical bytes for the same ID.
//
// # Production
//
// A device produces secret key at the effective rate
//
//	SecretRate × gain(QBER),  gain(q) = max(0, 1−2h(q)) / (1−2h(0.02))
//
// where h is the binary entropy: the asymptotic BB84 secret fraction
// normalised so that SecretRate holds at the default QBER of 2%. Above
// QBERThreshold (default 11%, where 1−2h reaches 0) or during an outage
// (SetOutage) the device produces nothing and the link is down. Blocks
// produced = floor(∫ effective rate dt / (8 × BlockSize)), counted from New.
// SecretRate 0 means unlimited: blocks are made on demand, for benchmarks.
//
// The master's Fetch waits (on a timer, never spinning) until at least one
// block has been produced, then returns the produced blocks it has not
// returned before, oldest first, up to max bytes.
//
// # Block numbers are anchored to the wall clock
//
// The master numbers its blocks consecutively from the clock reading at New
// in nanoseconds since 1970 (base = Now().UnixNano()). Because a device
// produces far less than one block per nanosecond, every index it hands
// out is at most the clock reading at that moment; a restarted master
// therefore starts above every index of its previous run and never repeats
// a block, even though its keystream is deterministic.
//
// In memory mode (Config.Meta nil) that is all: a wall clock stepped
// backwards across a restart defeats it (the simulator is for labs). In
// durable mode (Config.Meta set) the master also records, in one metadata
// transaction before each Fetch returns, the highest index it has
// returned, and New starts at the larger of the clock index and the
// record + 1, logging a warning if the clock is behind the record: no
// clock step makes it repeat a block, SIGKILL included.
//
// The same rule tells the slave when its device "has" a block: block i
// exists once the slave's clock reads at least i ns since 1970 (for an
// unlimited rate, at once). The slave's Get waits for that moment; an index
// more than MaxSkew ahead of its clock is refused as unknown. This differs
// from counting the slave's own production from its own start: that count
// only matches the master's if both ends start at the same instant.
//
// The slave remembers which blocks it has delivered and refuses to deliver
// one again ("already delivered"): the pad ring would otherwise reuse pad.
// It tracks the delivered indices of this run exactly (as runs of
// consecutive indices), so blocks may be asked in any order and in several
// calls. If more than 4096 separate runs accumulate (gaps that are never
// asked for), the two oldest runs are merged: the indices between them are
// then refused too.
//
// In memory mode that record dies with the Sim: a restarted slave would
// deliver a block again if asked, and relies on its master, which asks for
// increasing indices, never asking for an old one again. In
// durable mode the slave records, in one metadata transaction before each
// Get returns its blocks, the highest index it has delivered, and after a
// restart refuses every index at or below it ("delivered before this node
// restarted"). One number suffices: within a run an honest master asks for
// increasing indices, and a restarted master starts above all of them; the
// cost is that a block the slave skipped before its restart is refused
// too.
//
// # Durable records
//
// Each end keeps one entry in the node's metadata store: key
// "qkd/sim/<link>/master" or "qkd/sim/<link>/slave", value a 22-byte
// versioned record (magic "QSIM", version, role, block size, highest
// index, CRC-32C of the record; record.go has the layout). It holds no key
// bytes and nothing computed from them. A record that does not decode
// refuses New, naming the key. A block is made only after its record is
// written: if the write fails, Fetch or Get fails and no key bytes exist.
// Both calls write at most one transaction, whatever the number of blocks.
// If the block size changes across a restart, numbering continues past the
// keystream the recorded blocks covered, so no two blocks share keystream.
package qkdsim

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/ringstore"
)

// Defaults of Config.
const (
	DefaultBlockSize     = 4096
	DefaultQBER          = 0.02
	DefaultQBERThreshold = 0.11
	DefaultMaxSkew       = time.Minute
)

// maxBlocksPerSecond bounds a finite rate so that a device produces less
// than one block per nanosecond, which the wall-clock numbering needs.
const maxBlocksPerSecond = 1e8

// maxRuns bounds the slave's record of delivered indices.
const maxRuns = 4096

// maxBlockSize bounds Config.BlockSize.
const maxBlockSize = 1 << 26

// ErrClosed is returned by a Sim after Close.
var ErrClosed = errors.New("qkdsim: simulator closed")

// Config configures one end of a simulated QKD link.
type Config struct {
	// Link names the link; both ends use the same name. It appears in
	// block IDs ("<Link>-<index>"), so it may not contain whitespace.
	Link string
	// Seed is the link's shared secret; both ends use the same one. An
	// all-zero seed is refused as a configuration mistake.
	Seed [32]byte
	// Master selects the end that calls Fetch; the other end calls Get.
	Master bool
	// SecretRate is the secret key rate in bit/s at the default QBER;
	// 0 means unlimited (blocks on demand, for benchmarks).
	SecretRate float64
	// BlockSize is the size of a block in bytes: a positive multiple of 8
	// (default 4096).
	BlockSize int
	// QBER is the initial quantum bit error rate, 0 to 0.5 (0 means the
	// default 0.02; use SetQBER for an error-free link).
	QBER float64
	// QBERThreshold is the QBER above which the link aborts and produces
	// nothing (default 0.11).
	QBERThreshold float64
	// MaxSkew is how far ahead of the slave's clock an asked block may lie
	// before Get refuses it as unknown instead of waiting (default 1 min).
	MaxSkew time.Duration
	// Logger receives the simulator warning and link state changes
	// (default slog.Default()). Key bytes are never logged.
	Logger *slog.Logger
	// Meta, if set, is the node's metadata store (durable mode): this end
	// keeps its record of the blocks it handed out there, so that a
	// restarted end never hands out a block again (see the package doc).
	// Nil is memory mode: the record lives as long as the Sim.
	Meta *ringstore.Meta
	// Now is the clock (default time.Now).
	Now func() time.Time
	// After returns a channel that receives once d has passed on the clock,
	// and a function that stops it (default: a time.Timer). Tests that
	// inject Now inject After too, so that advancing their clock wakes a
	// waiting Fetch or Get without real sleeps.
	After func(d time.Duration) (<-chan time.Time, func() bool)
}

// Sim is one end of a simulated QKD link. It implements qkd.Source and is
// safe for concurrent use.
type Sim struct {
	cfg       Config
	log       *slog.Logger
	prefix    string // "<link>-"
	source    string // "qkdsim:<link>"
	blockBits float64

	mu      sync.Mutex
	key     [32]byte // AES key, zeroised by Close
	aes     cipher.Block
	closed  bool
	changed chan struct{} // closed and replaced on every state change

	outage    bool
	outReason string
	qber      float64
	downSince time.Time // when the link last went down (zero while up)

	// Production, counted at both ends: paces Fetch, reported by Status.
	since     time.Time // production counted up to here
	acc       float64   // bits produced toward the next block
	produced  uint64    // blocks produced since New
	lastBlock time.Time

	base    uint64 // master: index of the first block of this run
	fetched uint64 // master: blocks returned by Fetch

	delivered runs   // slave: indices returned by Get
	before    uint64 // slave, durable: indices below were delivered before a restart
	bytesOut  uint64 // Status.Delivered

	// Durable mode: the record in cfg.Meta, written by persist.
	update  func(func(*ringstore.MetaTx) error) error // cfg.Meta.Update; tests wrap it
	pmu     sync.Mutex                                // serialises persist; taken without mu
	recHigh uint64                                    // the highest index recorded, if recOK
	recOK   bool
}

// New starts one end of a simulated link. It logs a warning that the link
// is simulated.
func New(cfg Config) (*Sim, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	s := &Sim{
		cfg:       cfg,
		log:       cfg.Logger.With("link", cfg.Link, "qkd", "simulator"),
		prefix:    cfg.Link + "-",
		source:    "qkdsim:" + cfg.Link,
		blockBits: 8 * float64(cfg.BlockSize),
		changed:   make(chan struct{}),
		qber:      cfg.QBER,
	}
	mac := hmac.New(sha256.New, cfg.Seed[:])
	mac.Write([]byte("qrelay qkdsim v1\x00"))
	mac.Write([]byte(cfg.Link))
	mac.Sum(s.key[:0])
	blk, err := aes.NewCipher(s.key[:])
	if err != nil {
		return nil, fmt.Errorf("qkdsim: link %s: %w", cfg.Link, err)
	}
	s.aes = blk
	now := cfg.Now()
	s.since = now
	s.base = clockIndex(now)
	if cfg.Meta != nil {
		s.update = cfg.Meta.Update
		next, found, err := s.load()
		if err != nil {
			clear(s.key[:])
			return nil, err
		}
		switch {
		case !found:
		case cfg.Master && next > s.base:
			s.log.Warn("simulated QKD link: the clock is behind the highest block handed out before this node restarted (was it stepped back?); numbering continues above the record",
				"record", recordKey(cfg.Link, true), "clock_index", s.base, "next", next, "behind", time.Duration(min(next-s.base, math.MaxInt64)))
			s.base = next
		case !cfg.Master:
			s.before = next
		}
	}
	if !s.upLocked() {
		s.downSince = now
	}
	s.log.Warn(fmt.Sprintf("QKD link %s is SIMULATED: keys come from a shared seed, not from quantum physics; for tests and demos only", cfg.Link),
		"master", cfg.Master, "secret_rate_bps", cfg.SecretRate, "block_size", cfg.BlockSize, "qber", cfg.QBER)
	return s, nil
}

func (c *Config) fill() error {
	if c.Link == "" {
		return errors.New("qkdsim: Link is empty: name the link (both ends use the same name)")
	}
	if len(c.Link) > 128 || strings.IndexFunc(c.Link, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("qkdsim: Link %q: want at most 128 characters without spaces or control characters", c.Link)
	}
	if c.Meta != nil {
		if err := checkDurableLink(c.Link); err != nil {
			return err
		}
	}
	if c.Seed == ([32]byte{}) {
		return fmt.Errorf("qkdsim: link %s: Seed is all zero: set the link's shared seed (the same 32 bytes at both ends)", c.Link)
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.BlockSize < 8 || c.BlockSize%8 != 0 || c.BlockSize > maxBlockSize {
		return fmt.Errorf("qkdsim: link %s: BlockSize %d: want a positive multiple of 8 up to 64 MiB (default %d)", c.Link, c.BlockSize, DefaultBlockSize)
	}
	if math.IsNaN(c.SecretRate) || c.SecretRate < 0 || math.IsInf(c.SecretRate, 0) {
		return fmt.Errorf("qkdsim: link %s: SecretRate %v bit/s: want 0 (unlimited) or a positive rate", c.Link, c.SecretRate)
	}
	if peak := c.SecretRate * Gain(0) / (8 * float64(c.BlockSize)); peak > maxBlocksPerSecond {
		return fmt.Errorf("qkdsim: link %s: SecretRate %v bit/s makes %.3g blocks of %d bytes per second: want at most %g (use a larger BlockSize, or 0 for unlimited)",
			c.Link, c.SecretRate, peak, c.BlockSize, float64(maxBlocksPerSecond))
	}
	if c.QBER == 0 {
		c.QBER = DefaultQBER
	}
	if !(c.QBER >= 0 && c.QBER <= 0.5) {
		return fmt.Errorf("qkdsim: link %s: QBER %v: want 0 to 0.5", c.Link, c.QBER)
	}
	if c.QBERThreshold == 0 {
		c.QBERThreshold = DefaultQBERThreshold
	}
	if !(c.QBERThreshold > 0 && c.QBERThreshold <= 0.5) {
		return fmt.Errorf("qkdsim: link %s: QBERThreshold %v: want above 0, at most 0.5 (default %v)", c.Link, c.QBERThreshold, DefaultQBERThreshold)
	}
	if c.MaxSkew == 0 {
		c.MaxSkew = DefaultMaxSkew
	}
	if c.MaxSkew < 0 {
		return fmt.Errorf("qkdsim: link %s: MaxSkew %v: want a positive duration", c.Link, c.MaxSkew)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.After == nil {
		c.After = func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		}
	}
	return nil
}

// Gain is the factor by which QBER q scales the configured secret key
// rate: the BB84 secret fraction 1−2h(q), clamped at 0, relative to its
// value at the default QBER of 2%.
func Gain(q float64) float64 {
	f := 1 - 2*entropy(q)
	if f <= 0 {
		return 0
	}
	return f / (1 - 2*entropy(DefaultQBER))
}

// entropy is the binary entropy h(q) in bits.
func entropy(q float64) float64 {
	if q <= 0 || q >= 1 {
		return 0
	}
	return -q*math.Log2(q) - (1-q)*math.Log2(1-q)
}

// clockIndex is the block number anchored at time t: nanoseconds since
// 1970, 0 before.
func clockIndex(t time.Time) uint64 {
	ns := t.UnixNano()
	if ns < 0 {
		return 0
	}
	return uint64(ns)
}

func (s *Sim) unlimited() bool { return s.cfg.SecretRate == 0 }

// upLocked reports whether the device produces key.
func (s *Sim) upLocked() bool {
	return !s.outage && s.qber <= s.cfg.QBERThreshold && Gain(s.qber) > 0
}

func (s *Sim) reasonLocked() string {
	switch {
	case s.outage:
		return "outage: " + s.outReason
	case s.qber > s.cfg.QBERThreshold:
		return fmt.Sprintf("QBER %.4f above threshold %.4f: key distillation aborted (noise or eavesdropping)", s.qber, s.cfg.QBERThreshold)
	case Gain(s.qber) <= 0:
		return fmt.Sprintf("QBER %.4f leaves no secret key (BB84 secret fraction 1-2h(QBER) <= 0)", s.qber)
	}
	return ""
}

// rateLocked is the effective secret key rate in bit/s (0 when down or
// unlimited).
func (s *Sim) rateLocked() float64 {
	if !s.upLocked() {
		return 0
	}
	return s.cfg.SecretRate * Gain(s.qber)
}

// advanceLocked counts the production up to now.
func (s *Sim) advanceLocked(now time.Time) {
	if !now.After(s.since) {
		return // clock stood still or stepped back: nothing produced
	}
	rate := s.rateLocked()
	if rate > 0 {
		s.acc += now.Sub(s.since).Seconds() * rate
		if n := math.Floor(s.acc / s.blockBits); n >= 1 {
			s.produced += uint64(n)
			s.acc -= n * s.blockBits
			s.lastBlock = now.Add(-secs(s.acc / rate))
		}
	}
	s.since = now
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func (s *Sim) downErrLocked() error {
	return fmt.Errorf("qkdsim: link %s: %s: %w; retry later", s.cfg.Link, s.reasonLocked(), qkd.ErrDown)
}

func (s *Sim) closedErr() error { return fmt.Errorf("qkdsim: link %s: %w", s.cfg.Link, ErrClosed) }

// changeLocked wakes every waiter after a state change.
func (s *Sim) changeLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// setStateLocked applies a change of outage or QBER at now.
func (s *Sim) setStateLocked(now time.Time, apply func()) {
	s.advanceLocked(now) // production so far counts at the old rate
	wasUp := s.upLocked()
	apply()
	switch up := s.upLocked(); {
	case wasUp && !up:
		s.downSince = now
		s.log.Warn("simulated QKD link down", "reason", s.reasonLocked())
	case !wasUp && up:
		s.downSince = time.Time{}
		s.log.Info("simulated QKD link up", "qber", s.qber, "secret_rate_bps", s.rateLocked())
	}
	s.changeLocked()
}

// SetOutage starts (down) or ends an outage of the link, with the reason
// reported by Status and by the errors of Fetch and Get.
func (s *Sim) SetOutage(down bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if down && reason == "" {
		reason = "simulated outage"
	}
	s.setStateLocked(s.cfg.Now(), func() {
		s.outage, s.outReason = down, reason
		if !down {
			s.outReason = ""
		}
	})
}

// SetQBER sets the link's quantum bit error rate (clamped to 0..0.5). Above
// the threshold the link is down.
func (s *Sim) SetQBER(q float64) {
	if math.IsNaN(q) || q < 0 {
		q = 0
	}
	q = min(q, 0.5)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStateLocked(s.cfg.Now(), func() { s.qber = q })
}

// wait blocks until d has passed on the clock, the state changes or ctx
// ends.
func (s *Sim) wait(ctx context.Context, d time.Duration, changed <-chan struct{}) error {
	c, stop := s.cfg.After(max(d, time.Nanosecond))
	defer stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c:
	case <-changed:
	}
	return nil
}

// Fetch returns the blocks produced since the last Fetch, oldest first, at
// most max bytes (at least one block), waiting until there is one. It
// fails at once, wrapping qkd.ErrDown with the reason, while the link is
// down. Only the master end fetches.
func (s *Sim) Fetch(ctx context.Context, max int) ([]ringstore.Block, error) {
	if !s.cfg.Master {
		return nil, fmt.Errorf("qkdsim: link %s: Fetch called at the slave end: the slave asks for the master's blocks with Get", s.cfg.Link)
	}
	want := uint64(1)
	if max > s.cfg.BlockSize {
		want = uint64(max / s.cfg.BlockSize)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, s.closedErr()
		}
		if !s.upLocked() {
			err := s.downErrLocked()
			s.mu.Unlock()
			return nil, err
		}
		now := s.cfg.Now()
		if s.unlimited() {
			first := s.base + s.fetched
			s.fetched += want
			s.produced = s.fetched
			s.lastBlock = now
			s.bytesOut += want * uint64(s.cfg.BlockSize)
			blk := s.aes
			s.mu.Unlock()
			if err := s.persistOut(first+want-1, want); err != nil {
				return nil, err
			}
			return s.blocks(blk, first, int(want), func(int) time.Time { return now }), nil
		}
		s.advanceLocked(now)
		pending := s.produced - s.fetched
		if pending == 0 {
			rate := s.rateLocked()
			d := time.Duration(math.Ceil((s.blockBits - s.acc) / rate * 1e9))
			changed := s.changed
			s.mu.Unlock()
			if err := s.wait(ctx, d, changed); err != nil {
				return nil, err
			}
			continue
		}
		n := min(want, pending)
		first := s.base + s.fetched
		s.fetched += n
		s.bytesOut += n * uint64(s.cfg.BlockSize)
		// Block j of the pending ones was produced about (pending-1-j)
		// block periods before the newest.
		newest, period := s.lastBlock, secs(s.blockBits/s.rateLocked())
		blk := s.aes
		s.mu.Unlock()
		if err := s.persistOut(first+n-1, n); err != nil {
			return nil, err
		}
		return s.blocks(blk, first, int(n), func(j int) time.Time {
			return newest.Add(-time.Duration(pending-1-uint64(j)) * period)
		}), nil
	}
}

func (s *Sim) id(i uint64) string { return s.prefix + strconv.FormatUint(i, 10) }

// parseID returns the index named by id, or an error naming id.
func (s *Sim) parseID(id string) (uint64, error) {
	digits, ok := strings.CutPrefix(id, s.prefix)
	if !ok {
		return 0, fmt.Errorf("qkdsim: link %s: block ID %q is not of this link: want %q followed by a decimal index", s.cfg.Link, id, s.prefix)
	}
	i, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || digits == "" || digits[0] == '+' || (len(digits) > 1 && digits[0] == '0') {
		return 0, fmt.Errorf("qkdsim: link %s: block ID %q is malformed: want %q followed by a decimal index", s.cfg.Link, id, s.prefix)
	}
	return i, nil
}

// Get returns the blocks ids in the order asked, waiting until this end's
// device has produced them. It refuses, naming the ID, a block of another
// link, a malformed ID, an ID asked twice, a block already delivered, or
// one lying more than MaxSkew ahead of this end's clock. Nothing is
// delivered unless every block is. Only the slave end gets blocks.
func (s *Sim) Get(ctx context.Context, ids []string) ([]ringstore.Block, error) {
	if s.cfg.Master {
		return nil, fmt.Errorf("qkdsim: link %s: Get called at the master end: the master learns its blocks with Fetch", s.cfg.Link)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	idx := make([]uint64, len(ids))
	seen := make(map[uint64]int, len(ids))
	var last uint64
	var blk cipher.Block
	for k, id := range ids {
		i, err := s.parseID(id)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[i]; dup {
			return nil, fmt.Errorf("qkdsim: link %s: block %s asked twice in one request (positions %d and %d)", s.cfg.Link, id, prev, k)
		}
		seen[i] = k
		idx[k] = i
		last = max(last, i)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, s.closedErr()
		}
		for k, i := range idx {
			if i < s.before {
				s.mu.Unlock()
				return nil, fmt.Errorf("qkdsim: link %s: block %s was delivered before this node restarted: refused, a block used twice would reuse pad", s.cfg.Link, ids[k])
			}
			if s.delivered.contains(i) {
				s.mu.Unlock()
				return nil, fmt.Errorf("qkdsim: link %s: block %s already delivered: a block is handed out once, or its pad would be used twice", s.cfg.Link, ids[k])
			}
		}
		now := s.cfg.Now()
		s.advanceLocked(now)
		if !s.unlimited() {
			avail := clockIndex(now)
			if !s.upLocked() {
				avail = clockIndex(s.downSince)
			}
			if last > avail {
				id := s.id(last)
				if !s.upLocked() {
					err := fmt.Errorf("qkdsim: link %s: block %s not produced before the link went down: %w", s.cfg.Link, id, s.downErrLocked())
					s.mu.Unlock()
					return nil, err
				}
				ahead := last - clockIndex(now)
				if ahead > uint64(s.cfg.MaxSkew) {
					s.mu.Unlock()
					return nil, fmt.Errorf("qkdsim: link %s: block %s is unknown: this end would produce it only in %v, more than MaxSkew %v; are both ends' clocks synchronised and is the ID from this link's master?",
						s.cfg.Link, id, time.Duration(min(ahead, math.MaxInt64)), s.cfg.MaxSkew)
				}
				d := time.Duration(ahead)
				changed := s.changed
				s.mu.Unlock()
				if err := s.wait(ctx, d, changed); err != nil {
					return nil, err
				}
				continue
			}
		}
		for _, i := range idx {
			s.delivered.add(i)
		}
		s.bytesOut += uint64(len(idx)) * uint64(s.cfg.BlockSize)
		if s.unlimited() {
			s.lastBlock = now // made on demand
		}
		blk = s.aes // Close drops s.aes; the blocks asked for are made with it all the same
		s.mu.Unlock()
		break
	}
	// The record is made before any block is: if it fails, no key bytes
	// exist, and the indices stay delivered (refused) for this run.
	if err := s.persistOut(last, uint64(len(idx))); err != nil {
		return nil, err
	}
	size := s.cfg.BlockSize
	buf := make([]byte, len(idx)*size)
	out := make([]ringstore.Block, len(idx))
	now := s.cfg.Now()
	for k := 0; k < len(idx); {
		// Blocks asked in consecutive order are one keystream.
		e := k + 1
		for e < len(idx) && idx[e] == idx[e-1]+1 {
			e++
		}
		s.generate(blk, idx[k], buf[k*size:e*size])
		k = e
	}
	for k := range idx {
		out[k] = ringstore.Block{ID: ids[k], Source: s.source, Time: now, Data: buf[k*size : (k+1)*size : (k+1)*size]}
	}
	return out, nil
}

// persistOut records high (durable mode) before n blocks up to it are
// made and handed out; if that fails they are not, and Status stops
// counting them.
func (s *Sim) persistOut(high, n uint64) error {
	err := s.persist(high)
	if err != nil {
		s.mu.Lock()
		s.bytesOut -= n * uint64(s.cfg.BlockSize)
		s.mu.Unlock()
	}
	return err
}

// Status reports the simulated link. Kind is "simulator" and Simulated
// true. SecretRate is the effective rate (0 while down, and 0 for an
// unlimited link).
func (s *Sim) Status() qkd.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.advanceLocked(s.cfg.Now())
	}
	up := s.upLocked() && !s.closed
	reason := s.reasonLocked()
	if s.closed {
		reason = "simulator closed"
	}
	return qkd.Status{
		Kind:       "simulator",
		Simulated:  true,
		Up:         up,
		Reason:     reason,
		QBER:       s.qber,
		SecretRate: s.rateLocked(),
		Delivered:  s.bytesOut,
		LastBlock:  s.lastBlock,
	}
}

// Close stops the simulator, wakes waiting calls (which then fail with
// ErrClosed) and zeroises the AES key it holds. (crypto/aes keeps its own
// expanded key schedule, which Go offers no way to erase; it is dropped.)
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	clear(s.key[:])
	s.aes = nil
	s.changeLocked()
	return nil
}
