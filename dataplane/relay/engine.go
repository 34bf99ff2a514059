// Package relay is the relay engine of a trusted node: it moves batches of
// end-to-end keys hop by hop across KM links, each hop encrypted with that
// link's one-time pad (otp.XOR, or otp.XOR3 at a relay node, which verifies
// and re-encrypts in one pass) and authenticated with a one-time Poly1305 key
// drawn from the same pad (DESIGN.md, "The KM link"; docs/kmlink.md).
//
// One Engine runs per node. It is the kmlink.Handler of the node's KM-link
// transport; per link it holds the two pad rings (tx: pad this end encrypts
// with, rx: pad the peer encrypts with), keeps them filled from the link's
// QKD source with the ASSIGN protocol, and runs the link's streams. Relay
// sends keys to any node the next-hop table reaches and returns once the
// destination has confirmed that it stored them, so a key is usable at both
// ends or reported lost, never silently at one end only.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/dataplane/kmlink"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/ringstore"
)

// NextHop tells the engine which neighbour leads to a node. The control
// plane implements it; until then StaticRoutes does.
type NextHop interface {
	// NextHop returns the neighbour to send traffic for dst to, and false
	// if dst is unreachable.
	NextHop(dst string) (peer string, ok bool)
}

// StaticRoutes is a fixed next-hop table: destination node → neighbour.
// Neighbours need no entry: a node with a link to dst sends to it directly.
type StaticRoutes map[string]string

// NextHop implements NextHop.
func (s StaticRoutes) NextHop(dst string) (string, bool) {
	p, ok := s[dst]
	return p, ok
}

// Batch is a run of end-to-end keys of one flow: key i is sequence
// FirstSeq+i, with ID ringstore.DeriveKeyID(Src, Dst, Flow, FirstSeq+i).
type Batch struct {
	Src, Dst       string
	Flow, FirstSeq uint64
	KeySize        int
	Keys           []byte // Count × KeySize bytes; the sink copies what it keeps
}

// Count is the number of keys in the batch.
func (b *Batch) Count() int { return len(b.Keys) / b.KeySize }

// ID is the key ID of key i of the batch.
func (b *Batch) ID(i int) ringstore.KeyID {
	return ringstore.DeriveKeyID(b.Src, b.Dst, b.Flow, b.FirstSeq+uint64(i))
}

// Sink stores end-to-end keys once they are known at both ends of a relay:
// at the destination when the keys arrive, at the source when the
// destination's completion does. PoolSink puts them into ringstore pools.
type Sink interface {
	// Deliver stores the batch's keys, shared with node remote. An error
	// means none of them were stored.
	Deliver(remote string, b *Batch) error
	// Discard removes the keys of a batch the source gave up on, those of
	// them the sink holds, and says how many it removed. b.Keys is nil;
	// count says how many keys the batch had.
	Discard(remote string, b *Batch, count int) (int, error)
}

// Config configures an Engine.
type Config struct {
	NodeID string
	Routes NextHop
	Sink   Sink
	// Streams is the number of parallel relay streams per link (default 2:
	// on a 2-core node 1 and 2 streams measured alike, 4 about 15% slower,
	// as quic-go's per-stream bookkeeping and more readers compete for
	// the cores; more streams pay off only with more cores).
	Streams int
	// FramePayload caps the key bytes per RELAY frame (default 64 KiB;
	// at most frame.MaxKeys keys whatever the size).
	FramePayload int
	// CompletionTimeout is how long a source waits for a destination's
	// completion before reporting the keys lost (default 10 s).
	CompletionTimeout time.Duration
	// Keys is where fresh end-to-end keys come from: KeysAESCTR (the
	// zero value, default) or KeysCryptoRand.
	Keys KeySource
	// HopLimit of new frames (default 16).
	HopLimit uint8
	// Control receives the CONTROL frames of kinds ControlKindMin and up
	// that neighbour peer sends (the control plane's messages). It runs on
	// the link's reader goroutine, so it must not block; body is the
	// reader's buffer, valid only during the call. Nil drops them.
	Control func(peer string, kind uint16, body []byte)
	// Routed receives the messages other nodes sent to this one with
	// SendRouted: src is the node that sent it. Same rules as Control.
	Routed func(src string, kind uint16, payload []byte)
	// Audit, if set, is told of every pad range the engine appends, uses
	// or burns (DESIGN.md, invariant 8; internal/audit implements it).
	Audit  PadAudit
	Logger *slog.Logger
}

// PadAudit records what happens to the pads of the engine's links. dir is
// the link direction (frame.Dir), tx whether this end sends under it. It
// is called on the relay's hot paths: it must batch, and never block.
type PadAudit interface {
	PadAppended(peer string, dir uint8, pos uint64, size int, block string)
	PadUsed(peer string, dir uint8, tx bool, pos, end uint64)
	PadBurnt(peer string, dir uint8, tx bool, pos, end uint64, reason string)
}

// Burn reasons given to PadAudit.
const (
	burnSync   = "sync"    // below an agreement's from
	burnDrop   = "drop"    // beyond an agreement's to
	burnGap    = "gap"     // skipped for a frame that never came
	burnBadTag = "bad-tag" // consumed by a frame whose tag failed
)

// noAudit is the PadAudit of an engine without one.
type noAudit struct{}

func (noAudit) PadAppended(string, uint8, uint64, int, string)       {}
func (noAudit) PadUsed(string, uint8, bool, uint64, uint64)          {}
func (noAudit) PadBurnt(string, uint8, bool, uint64, uint64, string) {}

// ControlKindMin is the first CONTROL frame kind that belongs to the
// control plane (frame.KindControlPlaneMin); kinds below it are the relay
// engine's own.
const ControlKindMin = uint16(frame.KindControlPlaneMin)

// LinkConfig is one KM link's pads and key source.
type LinkConfig struct {
	Peer string
	// Tx is the pad this end encrypts with, Rx the pad the peer encrypts
	// with; the engine is their only consumer and their only producer.
	Tx, Rx *ringstore.PadRing
	// Source supplies QKD blocks; nil means pad is added with AppendPad
	// (tests, benchmarks).
	Source qkd.Source
	// FetchBytes is the most pad the master fetches per assignment
	// (default 1 MiB).
	FetchBytes int
}

// Engine is one node's relay engine.
type Engine struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	links   map[string]*link
	flows   map[string]*flow // by destination
	pending map[pendingKey]*pending
	discard map[pendingKey]*pendingDiscard // discards not yet confirmed

	tombMu sync.Mutex
	tombs  map[tombKey]time.Time // discarded batches, refused if they arrive late

	stats Stats

	// testHookSend, if set, replaces each outgoing RELAY frame with the
	// frames it returns (tests forge and replay frames with it).
	testHookSend atomic.Pointer[func([]byte) [][]byte]
}

type pendingKey struct {
	flow, seq uint64
}

type tombKey struct {
	src       string
	flow, seq uint64
}

type flow struct {
	id  uint64
	seq atomic.Uint64
}

// Stats are the engine's counters.
type Stats struct {
	FramesSent, FramesReceived, FramesForwarded atomic.Uint64
	KeysDelivered                               atomic.Uint64 // keys stored at this node as destination or source
	KeyBytesRelayed                             atomic.Uint64 // key bytes this node originated and had confirmed
	KeysLost                                    atomic.Uint64 // keys a source gave up on (reported to its caller)
	PadMACBytes                                 atomic.Uint64 // pad spent on one-time MAC keys
	BadTags, Replays, Malformed, Undeliverable  atomic.Uint64
	PadBurnt                                    atomic.Uint64 // pad burnt without carrying keys (bad tags, lost frames)
	PadWaits                                    atomic.Uint64 // times a sender waited for pad instead of overdrawing
	PadWaitTimeouts                             atomic.Uint64 // RELAY frames refused because their announced pad did not arrive within padWait
	AssignsSent, AssignsApplied                 atomic.Uint64
	CtlDropped                                  atomic.Uint64 // control frames dropped because the control stream's queue was full
	Syncs                                       atomic.Uint64 // connections whose pads the two ends agreed on
	AssignsSettled, AssignsDropped              atomic.Uint64 // master: unacknowledged assignments an agreement applied or dropped
	BadCompletions                              atomic.Uint64 // COMPLETION OK or DISCARDED not from the keys' destination, ignored
}

// New makes an engine. Add links with AddLink and hand the engine to
// kmlink as its Handler.
func New(cfg Config) (*Engine, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("relay: Config.NodeID is empty")
	}
	if cfg.Sink == nil {
		return nil, errors.New("relay: Config.Sink is nil: keys would have nowhere to go")
	}
	if cfg.Routes == nil {
		cfg.Routes = StaticRoutes{}
	}
	if cfg.Streams <= 0 {
		cfg.Streams = 2
	}
	if cfg.FramePayload <= 0 {
		cfg.FramePayload = 64 << 10
	}
	if cfg.FramePayload > frame.MaxPayload {
		return nil, fmt.Errorf("relay: Config.FramePayload %d exceeds the frame limit %d", cfg.FramePayload, frame.MaxPayload)
	}
	if cfg.CompletionTimeout <= 0 {
		cfg.CompletionTimeout = 10 * time.Second
	}
	if cfg.HopLimit == 0 {
		cfg.HopLimit = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Audit == nil {
		cfg.Audit = noAudit{}
	}
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.NodeID),
		links:   map[string]*link{},
		flows:   map[string]*flow{},
		pending: map[pendingKey]*pending{},
		discard: map[pendingKey]*pendingDiscard{},
		tombs:   map[tombKey]time.Time{},
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Add(1)
	go e.housekeeping()
	return e, nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// NodeID is this node's ID.
func (e *Engine) NodeID() string { return e.cfg.NodeID }

// AddLink registers a KM link. Call it before the transport connects the
// peer.
func (e *Engine) AddLink(lc LinkConfig) error {
	if lc.Tx == nil || lc.Rx == nil {
		return fmt.Errorf("relay: link to %s: Tx and Rx pad rings are required", lc.Peer)
	}
	if lc.FetchBytes <= 0 {
		lc.FetchBytes = 1 << 20
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.links[lc.Peer]; ok {
		return fmt.Errorf("relay: link to %s added twice", lc.Peer)
	}
	e.links[lc.Peer] = newLink(e, lc)
	return nil
}

// AppendPad adds pad to the link to peer directly: blocks to the tx ring if
// tx, else to the rx ring. It is for links without a Source (tests,
// benchmarks), where the caller makes both ends agree.
func (e *Engine) AppendPad(peer string, tx bool, b ringstore.Block) error {
	l := e.link(peer)
	if l == nil {
		return fmt.Errorf("relay: no link to %s", peer)
	}
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if tx {
		err := l.appendBlock(l.tx, b)
		l.txNotify()
		return err
	}
	err := l.appendBlock(l.rx, b)
	l.rxw.notify()
	return err
}

func (e *Engine) link(peer string) *link {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.links[peer]
}

// route returns the link that leads to dst: the next hop the routes name,
// or, when they name none, the direct link to dst if there is one. The
// routes come first so that the control plane can steer traffic for a
// neighbour around a failed direct link.
func (e *Engine) route(dst string) (*link, error) {
	peer, ok := e.cfg.Routes.NextHop(dst)
	e.mu.Lock()
	if !ok {
		peer = dst
	}
	l := e.links[peer]
	e.mu.Unlock()
	if l != nil {
		return l, nil
	}
	if !ok {
		return nil, fmt.Errorf("no route to node %s", dst)
	}
	return nil, fmt.Errorf("route to node %s names neighbour %s, which has no link", dst, peer)
}

// LinkUp implements kmlink.Handler.
func (e *Engine) LinkUp(c *kmlink.Conn) {
	l := e.link(c.Peer())
	if l == nil {
		e.log.Warn("KM link up to a peer with no pads configured; closing it", "peer", c.Peer())
		c.Close("no pads configured for this peer")
		return
	}
	l.up(c)
}

// LinkDown implements kmlink.Handler.
func (e *Engine) LinkDown(c *kmlink.Conn, err error) {
	if l := e.link(c.Peer()); l != nil {
		l.down(c, err)
	}
	// Batches whose first hop was this connection can no longer be
	// confirmed: report them now rather than at the timeout.
	e.failPending(func(p *pending) bool { return p.via == c }, fmt.Errorf("KM link to %s went down: %v", c.Peer(), err))
}

// Close stops the engine and waits for its goroutines, including the
// stream readers of open connections: close the kmlink transport first.
// The pad rings, the sources and the sink are the caller's to close after.
func (e *Engine) Close() error {
	e.cancel()
	e.mu.Lock()
	links := make([]*link, 0, len(e.links))
	for _, l := range e.links {
		links = append(links, l)
	}
	e.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	e.failPending(func(*pending) bool { return true }, errors.New("relay engine closed"))
	e.wg.Wait()
	return nil
}

// housekeeping expires pending relays, retries discards and forgets old
// tombstones.
func (e *Engine) housekeeping() {
	defer e.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-t.C:
			e.failPending(func(p *pending) bool { return now.After(p.deadline) },
				fmt.Errorf("no completion within %v", e.cfg.CompletionTimeout))
			e.resendDiscards(now)
			e.tombMu.Lock()
			for k, exp := range e.tombs {
				if now.After(exp) {
					delete(e.tombs, k)
				}
			}
			e.tombMu.Unlock()
		}
	}
}

// FlowInfo describes the flow of keys this node originates towards one
// destination.
type FlowInfo struct {
	Dst     string
	ID      uint64
	NextSeq uint64 // sequence number of the next key
	Pending int    // frames awaiting the destination's completion
}

// Flows lists this node's flows, by destination.
func (e *Engine) Flows() []FlowInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]FlowInfo, 0, len(e.flows))
	for dst, f := range e.flows {
		fi := FlowInfo{Dst: dst, ID: f.id, NextSeq: f.seq.Load()}
		for k := range e.pending {
			if k.flow == f.id {
				fi.Pending++
			}
		}
		out = append(out, fi)
	}
	slices.SortFunc(out, func(a, b FlowInfo) int { return strings.Compare(a.Dst, b.Dst) })
	return out
}

// SendControl sends a control-plane message of the given kind (at least
// ControlKindMin) to neighbour peer on the link's ordered control stream.
// It fails if there is no link to peer or the link is down.
func (e *Engine) SendControl(peer string, kind uint16, body []byte) error {
	if kind < ControlKindMin {
		return fmt.Errorf("relay: control kind %d is reserved for the relay engine (control plane kinds start at %d)", kind, ControlKindMin)
	}
	l := e.link(peer)
	if l == nil {
		return fmt.Errorf("relay: no KM link to %s", peer)
	}
	s := l.current()
	if s == nil {
		return fmt.Errorf("relay: KM link to %s is down", peer)
	}
	c := frame.Control{Kind: frame.Kind(kind), Body: body}
	b, err := frame.AppendControl(getBuf(c.FrameLen()), &c)
	if err != nil {
		return fmt.Errorf("relay: control message for %s: %w", peer, err)
	}
	defer putBuf(b)
	return s.sendCtl(b)
}

// flowTo returns the flow to dst, making one with a random ID the first
// time: a random ID keeps key IDs unique across restarts of this node.
func (e *Engine) flowTo(dst string) *flow {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.flows[dst]
	if f == nil {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic("relay: crypto/rand failed: " + err.Error())
		}
		f = &flow{id: binary.BigEndian.Uint64(b[:])}
		e.flows[dst] = f
	}
	return f
}
