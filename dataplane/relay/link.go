package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/dataplane/kmlink"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/ringstore"
)

// link is the engine's side of one KM link: its pads, its key source, and
// the session on the current connection.
type link struct {
	e          *Engine
	peer       string
	master     bool
	tx, rx     *ringstore.PadRing
	rxw        *rxWindow
	src        qkd.Source
	fetchBytes int

	// mu guards sess and upCh. sess is the session whose pads the two
	// ends have agreed on (docs/kmlink.md section 6); it is nil while the
	// link is down or its new connection is still synchronising.
	mu        sync.Mutex
	sess      *session
	live      atomic.Pointer[session] // sess, for the per-frame check
	upCh      chan struct{}           // closed while sess is set
	txArrived chan struct{}           // closed and replaced when tx pad is appended

	// padMu keeps tx reservations out of a synchronisation: reserveTx holds
	// it shared while it reserves, unpublish and the keeper exclusively
	// while they change what a session may reserve. appendMu orders
	// AppendPad against the keeper's resynchronisation of the rings.
	padMu    sync.RWMutex
	appendMu sync.Mutex

	// ctlIn carries connection starts, SYNC, SYNC_AGREE, ASSIGN and
	// ASSIGN_ACK to the link's keeper goroutine (keepMaster or keepSlave),
	// which alone appends to the rings and owns the assignment state.
	ctlIn chan ctlMsg
	// agreed is set by the keeper once an agreement has moved the pads in
	// this process (see padState).
	agreed bool

	closeOnce sync.Once
	done      chan struct{}
}

type ctlMsg struct {
	sess   *session
	up     bool // sess is a new connection: synchronise it
	sync   *frame.Sync
	agree  *frame.SyncAgree
	ack    *frame.AssignAck
	assign *frame.Assign
}

// session is one connection's streams.
type session struct {
	l    *link
	conn *kmlink.Conn
	ctx  context.Context
	// Frames are written straight from the goroutine that made them, so a
	// frame crosses no queue and wakes no writer goroutine (on a VM each
	// wake-up of an idle thread costs tens of microseconds). A sender
	// holding a stream blocks in Write under QUIC flow control, which
	// bounds memory: one frame per sending goroutine.
	relay []*lockedStream
	ctl   *lockedStream
	next  atomic.Uint32
	// Control frames are queued for a writer goroutine instead: many are
	// written by stream readers (completions, refusals, forwarded
	// control), and a reader blocked on a control stream under flow
	// control, while the peer's reader is blocked the same way, would
	// leave both windows shut for good. The queue is bounded; a frame
	// that finds it full is dropped (its sender retries or times out).
	ctlQ chan []byte
	// synced is closed once the two ends agree on the pads; the readers
	// hold every other frame until then.
	synced chan struct{}
	// gotSync is set by the first SYNC or SYNC_AGREE: a second one closes
	// the connection.
	gotSync atomic.Bool
}

// ctlQueue bounds the control frames waiting for the control stream.
const ctlQueue = 4096

// syncWait bounds how long a connection may take to agree on its pads,
// and how long a reader holds a frame that arrived before the agreement
// (docs/kmlink.md section 6).
const syncWait = 5 * time.Second

// errSessionEnded is returned to a sender whose session is no longer the
// link's: its pad reservations would use positions the next agreement
// may have burnt.
var errSessionEnded = errors.New("the KM link's connection ended")

// lockedStream serialises the writers of one QUIC stream.
type lockedStream struct {
	mu sync.Mutex
	st *quic.SendStream
}

func (w *lockedStream) write(b []byte) error {
	w.mu.Lock()
	_, err := w.st.Write(b)
	w.mu.Unlock()
	return err
}

func newLink(e *Engine, lc LinkConfig) *link {
	l := &link{
		e: e, peer: lc.Peer, master: e.cfg.NodeID < lc.Peer,
		tx: lc.Tx, rx: lc.Rx, rxw: newRxWindow(lc.Rx, uint64(lc.Rx.Stats().Capacity/2)),
		src: lc.Source, fetchBytes: lc.FetchBytes,
		upCh:      make(chan struct{}),
		txArrived: make(chan struct{}),
		ctlIn:     make(chan ctlMsg, 256),
		done:      make(chan struct{}),
	}
	l.rxw.burn = func(g ringstore.Range) { l.burnt(l.rx, g.Pos, g.Pos+uint64(len(g.Bytes)), burnGap) }
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if l.master {
			l.keepMaster()
		} else {
			l.keepSlave()
		}
	}()
	return l
}

func (l *link) close() { l.closeOnce.Do(func() { close(l.done) }) }

// ringDir is the link direction ring r (l.tx or l.rx) serves, and whether
// this end sends under it.
func (l *link) ringDir(r *ringstore.PadRing) (uint8, bool) {
	txd, rxd := l.dirs()
	if r == l.tx {
		return uint8(txd), true
	}
	return uint8(rxd), false
}

// appendBlock appends b to r, which is l.tx or l.rx, and records it.
func (l *link) appendBlock(r *ringstore.PadRing, b ringstore.Block) error {
	pos := r.Stats().Head
	if err := r.Append(b); err != nil {
		return err
	}
	d, _ := l.ringDir(r)
	l.e.cfg.Audit.PadAppended(l.peer, d, pos, len(b.Data), b.ID)
	return nil
}

// used and burnt record a pad range of r (l.tx or l.rx).
func (l *link) used(r *ringstore.PadRing, pos, end uint64) {
	d, tx := l.ringDir(r)
	l.e.cfg.Audit.PadUsed(l.peer, d, tx, pos, end)
}

func (l *link) burnt(r *ringstore.PadRing, pos, end uint64, reason string) {
	if end > pos {
		d, tx := l.ringDir(r)
		l.e.cfg.Audit.PadBurnt(l.peer, d, tx, pos, end, reason)
	}
}

func (l *link) txNotify() {
	l.mu.Lock()
	close(l.txArrived)
	l.txArrived = make(chan struct{})
	l.mu.Unlock()
}

// reserveTx reserves n bytes of tx pad for a frame to be sent on session
// s, waiting for the QKD link if the stock is short: a sender never
// overdraws. It fails once s is no longer the link's session.
func (l *link) reserveTx(ctx context.Context, s *session, n int) (ringstore.Range, error) {
	for {
		l.mu.Lock()
		ch := l.txArrived
		l.mu.Unlock()
		l.padMu.RLock()
		if l.live.Load() != s {
			l.padMu.RUnlock()
			return ringstore.Range{}, fmt.Errorf("KM link to %s: %w", l.peer, errSessionEnded)
		}
		rg, err := l.tx.Reserve(n)
		l.padMu.RUnlock()
		if err == nil || !errors.Is(err, ringstore.ErrPadShort) {
			return rg, err
		}
		l.e.stats.PadWaits.Add(1)
		select {
		case <-ch:
		case <-ctx.Done():
			return ringstore.Range{}, fmt.Errorf("waiting for %d bytes of pad on the link to %s (stock %d): %w", n, l.peer, l.tx.Stats().Stock, ctx.Err())
		case <-l.done:
			return ringstore.Range{}, fmt.Errorf("link to %s removed", l.peer)
		case <-s.ctx.Done():
			return ringstore.Range{}, fmt.Errorf("KM link to %s: %w", l.peer, errSessionEnded)
		}
	}
}

// session returns the current session, waiting for the link to come up.
func (l *link) session(ctx context.Context) (*session, error) {
	for {
		l.mu.Lock()
		s, ch := l.sess, l.upCh
		l.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("KM link to %s is down: %w", l.peer, ctx.Err())
		case <-l.done:
			return nil, fmt.Errorf("link to %s removed", l.peer)
		}
	}
}

// current is the session if the link is up, else nil.
func (l *link) current() *session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess
}

// publish makes s the link's session once its pads are agreed.
func (l *link) publish(s *session) {
	l.e.wg.Add(1)
	go func() { defer l.e.wg.Done(); s.ctlWriter() }()
	l.rxw.open(s)
	l.mu.Lock()
	l.sess = s
	l.live.Store(s)
	close(l.upCh)
	l.mu.Unlock()
	close(s.synced)
}

// unpublish takes the link's session away if it is s (any session if s
// is nil), and waits for reservations in progress: after it returns no
// sender reserves pad for the old session.
func (l *link) unpublish(s *session) bool {
	l.padMu.Lock()
	defer l.padMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess == nil || (s != nil && l.sess != s) {
		return false
	}
	l.sess = nil
	l.live.Store(nil)
	l.upCh = make(chan struct{})
	l.rxw.close()
	return true
}

// up starts a new connection: its streams, its readers, and the
// agreement on the pads, which the keeper goroutine makes. Nothing but
// the agreement's own frames moves until then.
func (l *link) up(c *kmlink.Conn) {
	s := &session{l: l, conn: c, ctx: c.Context(), ctlQ: make(chan []byte, ctlQueue), synced: make(chan struct{})}
	open := func() *lockedStream {
		st, err := c.OpenUniStream(s.ctx)
		if err != nil {
			return nil
		}
		return &lockedStream{st: st}
	}
	if s.ctl = open(); s.ctl == nil {
		return // the connection is already gone; LinkDown follows
	}
	for i := 0; i < l.e.cfg.Streams; i++ {
		w := open()
		if w == nil {
			return
		}
		s.relay = append(s.relay, w)
	}
	if old := l.current(); old != nil && l.unpublish(old) {
		old.conn.Close("replaced by a new connection")
	}
	l.e.wg.Add(2)
	go func() { defer l.e.wg.Done(); s.acceptLoop() }()
	go func() {
		defer l.e.wg.Done()
		t := time.NewTimer(syncWait)
		defer t.Stop()
		select {
		case <-s.synced:
		case <-s.ctx.Done():
		case <-l.done:
		case <-t.C:
			l.e.log.Warn("KM link did not agree on its pads in time; closing the connection", "peer", l.peer, "generation", c.Generation(), "wait", syncWait)
			c.Close(fmt.Sprintf("no pad agreement (SYNC, SYNC_AGREE) within %v", syncWait))
		}
	}()
	l.post(ctlMsg{sess: s, up: true})
}

// ctlWriter writes the queued control frames in order until the
// connection ends.
func (s *session) ctlWriter() {
	for {
		select {
		case <-s.ctx.Done():
			for {
				select {
				case <-s.ctlQ:
				default:
					return
				}
			}
		case b := <-s.ctlQ:
			if err := s.ctl.write(b); err != nil {
				return // the connection is failing; LinkDown follows
			}
		}
	}
}

func (l *link) down(c *kmlink.Conn, err error) {
	s := l.current()
	if s == nil || s.conn != c || !l.unpublish(s) {
		return
	}
	// Frames in flight on the dead connection can no longer arrive: the pad
	// skipped for them is burnt (never reused).
	burnt := l.rxw.dropGaps()
	l.e.stats.PadBurnt.Add(burnt)
	l.e.log.Info("relay session down", "peer", l.peer, "generation", c.Generation(), "reason", err, "pad_burnt", burnt)
}

// waitSynced holds a frame that arrived before the agreement until it is
// made.
func (s *session) waitSynced() error {
	select {
	case <-s.synced:
		return nil
	default:
	}
	t := time.NewTimer(syncWait)
	defer t.Stop()
	select {
	case <-s.synced:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-t.C:
		return fmt.Errorf("a frame arrived and no pad agreement followed within %v", syncWait)
	}
}

// sendRelay writes a RELAY frame on a free relay stream (or waits for the
// next one in turn) and recycles its buffer.
func (s *session) sendRelay(b []byte) error {
	if h := s.l.e.testHookSend.Load(); h != nil {
		for _, f := range (*h)(b) {
			if err := s.writeRelay(f); err != nil {
				return err
			}
		}
		return nil
	}
	return s.writeRelay(b)
}

func (s *session) writeRelay(b []byte) error {
	defer putBuf(b)
	n := uint32(len(s.relay))
	i := s.next.Add(1)
	for k := uint32(0); k < n; k++ {
		w := s.relay[(i+k)%n]
		if w.mu.TryLock() {
			_, err := w.st.Write(b)
			w.mu.Unlock()
			return s.wrap(err)
		}
	}
	return s.wrap(s.relay[i%n].write(b))
}

// sendCtl queues a control frame for the control stream, in order. It
// copies b and never blocks: a full queue drops the frame with an error.
func (s *session) sendCtl(b []byte) error {
	// A copy of its own size: control frames are mostly small, and the
	// queue must not pin frame-sized pool buffers.
	c := bytes.Clone(b)
	select {
	case s.ctlQ <- c:
		return nil
	case <-s.ctx.Done():
		return s.wrap(s.ctx.Err())
	default:
		s.l.e.stats.CtlDropped.Add(1)
		return s.wrap(fmt.Errorf("control queue full (%d frames): the peer reads its control stream too slowly", ctlQueue))
	}
}

func (s *session) wrap(err error) error {
	if err != nil {
		return fmt.Errorf("KM link to %s: %w", s.l.peer, err)
	}
	return nil
}

func (s *session) acceptLoop() {
	for {
		st, err := s.conn.AcceptUniStream(s.ctx)
		if err != nil {
			return
		}
		s.l.e.wg.Add(1)
		go func() { defer s.l.e.wg.Done(); s.reader(st) }()
	}
}

// reader handles the frames of one stream in order.
func (s *session) reader(st io.Reader) {
	e := s.l.e
	r := frame.NewReader(st)
	for {
		typ, b, err := r.Next()
		if err != nil {
			var fe *frame.Error
			if errors.As(err, &fe) {
				e.stats.Malformed.Add(1)
				e.log.Warn("malformed frame on KM link; closing the connection", "peer", s.l.peer, "err", err)
				s.conn.Close("bad frame: " + err.Error())
			}
			// Anything else is the stream or the connection ending.
			return
		}
		if typ != frame.TypeSync && typ != frame.TypeSyncAgree {
			if err := s.waitSynced(); err != nil {
				if s.ctx.Err() == nil {
					e.log.Warn("frame held for the pad agreement; closing the connection", "peer", s.l.peer, "type", typ, "err", err)
					s.conn.Close(err.Error())
				}
				return
			}
		}
		if err := e.handle(s, typ, b); err != nil {
			e.stats.Malformed.Add(1)
			e.log.Warn("bad frame on KM link; closing the connection", "peer", s.l.peer, "type", typ, "err", err)
			s.conn.Close("bad frame: " + err.Error())
			return
		}
	}
}

// Frame buffers: most frames fit in one size class, so pooling them keeps
// the steady state allocation-free.
var frameBufs = newBufPool(128 << 10)

func getBuf(n int) []byte { return frameBufs.get(n)[:0] }
func putBuf(b []byte)     { frameBufs.put(b) }

// bufPool pools byte slices of one capacity; larger requests are allocated
// and never pooled.
type bufPool struct {
	size int
	p    sync.Pool
}

func newBufPool(size int) *bufPool {
	bp := &bufPool{size: size}
	bp.p.New = func() any { b := make([]byte, size); return &b }
	return bp
}

// get returns a slice of length n (capacity size if n fits).
func (bp *bufPool) get(n int) []byte {
	if n > bp.size {
		return make([]byte, n)
	}
	return (*bp.p.Get().(*[]byte))[:n]
}

// put returns b to the pool if it came from it.
func (bp *bufPool) put(b []byte) {
	if cap(b) != bp.size {
		return
	}
	b = b[:bp.size]
	bp.p.Put(&b)
}
