package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/dataplane/kmlink"
	"github.com/qrelay/qrelay/otp"
)

// LostError reports keys a source gave up on: the destination may or may
// not have stored them, so the source has not, and has told the
// destination to discard them (retrying until it confirms).
type LostError struct {
	Dst            string
	Flow, FirstSeq uint64
	Count          int
	Reason         error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("relay to %s: keys %d..%d of flow %016x lost: %v; the destination is told to discard them", e.Dst, e.FirstSeq, e.FirstSeq+uint64(e.Count)-1, e.Flow, e.Reason)
}

func (e *LostError) Unwrap() error { return e.Reason }

// RefusedError reports keys the destination or a node on the way refused;
// no node stored them.
type RefusedError struct {
	Dst, By        string
	Flow, FirstSeq uint64
	Count          int
	Status         frame.Status
	Reason         string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("relay to %s: keys %d..%d of flow %016x refused (%v): %s", e.Dst, e.FirstSeq, e.FirstSeq+uint64(e.Count)-1, e.Flow, e.Status, e.Reason)
}

// pending is a frame's keys, held by the source until the destination
// confirms them.
type pending struct {
	batch    Batch
	deadline time.Time
	via      *kmlink.Conn
	done     chan error
}

// Result says what a Relay call achieved.
type Result struct {
	Flow, FirstSeq uint64
	Delivered      int     // keys stored at both ends
	Errors         []error // one per frame that failed: *LostError or *RefusedError, or a local error
}

// Relay sends n fresh end-to-end keys of size bytes each to node dst and
// waits until every frame is confirmed or has failed. Keys the destination
// confirms are delivered to this node's Sink as well; they are then usable
// at both ends. The keys are drawn from crypto/rand. An error is returned if
// any key was not delivered; Result says how many were.
func (e *Engine) Relay(ctx context.Context, dst string, n, size int) (Result, error) {
	return e.relay(ctx, dst, n, size, false)
}

// RelayQKDKeys is Relay with ITU-T Y.3803 case 2: the end-to-end keys are
// the first hop's QKD key (pad) itself rather than fresh random bytes. It
// saves the random draw and, on a one-hop route, is simply the QKD key; the
// first hop's frame then carries zeros, since keys ⊕ pad = 0.
func (e *Engine) RelayQKDKeys(ctx context.Context, dst string, n, size int) (Result, error) {
	return e.relay(ctx, dst, n, size, true)
}

func (e *Engine) relay(ctx context.Context, dst string, n, size int, qkdKeys bool) (Result, error) {
	if dst == e.cfg.NodeID {
		return Result{}, fmt.Errorf("relay: destination %s is this node", dst)
	}
	if size <= 0 || size > 0xffff || size > e.cfg.FramePayload {
		return Result{}, fmt.Errorf("relay: key size %d bytes: want 1 to %d", size, min(0xffff, e.cfg.FramePayload))
	}
	if n <= 0 {
		return Result{}, fmt.Errorf("relay: %d keys asked for: want at least 1", n)
	}
	perFrame := min(frame.MaxKeys, e.cfg.FramePayload/size)
	f := e.flowTo(dst)
	first := f.seq.Add(uint64(n)) - uint64(n)
	res := Result{Flow: f.id, FirstSeq: first}
	var waits []*pending
	for done := 0; done < n; {
		cnt := min(perFrame, n-done)
		p, err := e.sendFrame(ctx, dst, f.id, first+uint64(done), cnt, size, qkdKeys)
		done += cnt
		if err != nil {
			res.Errors = append(res.Errors, err)
			continue
		}
		waits = append(waits, p)
	}
	for _, p := range waits {
		if err := <-p.done; err != nil {
			res.Errors = append(res.Errors, err)
		} else {
			res.Delivered += p.batch.Count()
		}
	}
	if len(res.Errors) > 0 {
		return res, fmt.Errorf("relay to %s: %d of %d keys delivered; %d frames failed, first: %w", dst, res.Delivered, n, len(res.Errors), res.Errors[0])
	}
	return res, nil
}

// sendFrame encrypts and queues one RELAY frame and registers its keys as
// pending. Once pad is reserved the frame either leaves or its keys are
// reported lost; the pad is never reused.
func (e *Engine) sendFrame(ctx context.Context, dst string, flowID, seq uint64, cnt, size int, qkdKeys bool) (*pending, error) {
	l, err := e.route(dst)
	if err != nil {
		e.stats.Undeliverable.Add(1)
		return nil, err
	}
	s, err := l.session(ctx)
	if err != nil {
		return nil, err
	}
	r := frame.Relay{Flow: flowID, FirstSeq: seq, Count: uint32(cnt), KeySize: uint16(size), HopLimit: e.cfg.HopLimit, Src: e.cfg.NodeID, Dst: dst}
	keys := getKeyBuf(r.PayloadLen())
	if qkdKeys {
		r.Flags |= frame.FlagQKDKey
	} else if err := fillKeys(e.cfg.Keys, keys); err != nil {
		putKeyBuf(keys)
		return nil, fmt.Errorf("relay: drawing keys from %v: %w", e.cfg.Keys, err)
	}
	pad, err := l.reserveTx(ctx, s, r.PadLen())
	if err != nil {
		putKeyBuf(keys)
		return nil, err
	}
	l.used(l.tx, pad.Pos, pad.Pos+uint64(len(pad.Bytes)))
	r.PadPos = pad.Pos
	if qkdKeys {
		copy(keys, pad.Bytes)
	}
	b, err := sealRelay(getBuf(r.FrameLen()), &r, keys, pad.Bytes)
	l.tx.Release(pad)
	if err != nil {
		putKeyBuf(keys)
		return nil, err
	}
	e.stats.PadMACBytes.Add(otp.MACKeySize)
	p := &pending{
		batch:    Batch{Src: e.cfg.NodeID, Dst: dst, Flow: flowID, FirstSeq: seq, KeySize: size, Keys: keys},
		deadline: time.Now().Add(e.cfg.CompletionTimeout),
		via:      s.conn,
		done:     make(chan error, 1),
	}
	e.mu.Lock()
	e.pending[pendingKey{flowID, seq}] = p
	e.mu.Unlock()
	if err := s.sendRelay(b); err != nil {
		e.failPending(func(q *pending) bool { return q == p }, err)
		return p, nil // its done channel carries the LostError
	}
	e.stats.FramesSent.Add(1)
	return p, nil
}

// sealRelay builds a RELAY frame in buf: the header, keys ⊕ pad[:P], and the
// tag keyed by pad[P:P+32]. pad is r.PadLen() bytes.
func sealRelay(buf []byte, r *frame.Relay, keys, pad []byte) ([]byte, error) {
	b, err := frame.AppendRelayHeader(buf, r)
	if err != nil {
		return nil, err
	}
	h, p := len(b), r.PayloadLen()
	b = b[:h+p]
	otp.XOR(b[h:], keys, pad[:p])
	tag := otp.Tag((*[otp.MACKeySize]byte)(pad[p:p+otp.MACKeySize]), b)
	return append(b, tag[:]...), nil
}

// completion settles a pending frame from the destination's answer.
func (e *Engine) completion(c *frame.Completion) {
	k := pendingKey{c.Flow, c.FirstSeq}
	if c.Status == frame.StatusDiscarded {
		e.mu.Lock()
		pd := e.discard[k]
		ok := pd != nil && pd.d.Dst == c.Dst && pd.d.Count == c.Count
		if ok {
			delete(e.discard, k)
		}
		e.mu.Unlock()
		if pd != nil && !ok {
			e.badCompletion(c, pd.d.Dst, int(pd.d.Count))
		}
		return
	}
	e.mu.Lock()
	p := e.pending[k]
	// Only the destination stores keys, so only it may confirm them; a
	// refusal names the node that dropped them, which may be any on the
	// path.
	if p != nil && c.Status == frame.StatusOK && (c.Dst != p.batch.Dst || int(c.Count) != p.batch.Count()) {
		e.mu.Unlock()
		e.badCompletion(c, p.batch.Dst, p.batch.Count())
		return
	}
	delete(e.pending, k)
	e.mu.Unlock()
	if p == nil {
		// Late: the source already reported these keys lost and asked for
		// their discard.
		return
	}
	defer putKeyBuf(p.batch.Keys)
	if c.Status != frame.StatusOK {
		p.done <- &RefusedError{Dst: p.batch.Dst, By: c.Dst, Flow: c.Flow, FirstSeq: c.FirstSeq, Count: p.batch.Count(), Status: c.Status, Reason: c.Reason}
		return
	}
	if err := e.cfg.Sink.Deliver(p.batch.Dst, &p.batch); err != nil {
		// The destination holds them, this end cannot: discard there.
		e.lose(k, p, fmt.Errorf("storing the source's copy: %w", err))
		return
	}
	e.stats.KeysDelivered.Add(uint64(p.batch.Count()))
	e.stats.KeyBytesRelayed.Add(uint64(len(p.batch.Keys)))
	p.done <- nil
}

// badCompletion counts and logs a COMPLETION OK or DISCARDED that does not
// come from the destination of the keys it names; it is ignored.
func (e *Engine) badCompletion(c *frame.Completion, dst string, count int) {
	e.stats.BadCompletions.Add(1)
	e.log.Warn("COMPLETION ignored: it names another destination or key count than the keys it settles",
		"status", c.Status, "flow", c.Flow, "first_seq", c.FirstSeq, "completion_dst", c.Dst, "keys_dst", dst,
		"completion_count", c.Count, "keys_count", count)
}

// failPending reports lost every pending frame pred selects.
func (e *Engine) failPending(pred func(*pending) bool, reason error) {
	e.mu.Lock()
	var lost []pendingKey
	var ps []*pending
	for k, p := range e.pending {
		if pred(p) {
			lost = append(lost, k)
			ps = append(ps, p)
			delete(e.pending, k)
		}
	}
	e.mu.Unlock()
	for i, p := range ps {
		e.lose(lost[i], p, reason)
		putKeyBuf(p.batch.Keys)
	}
}

// lose reports p's keys lost and queues their discard at the destination.
func (e *Engine) lose(k pendingKey, p *pending, reason error) {
	b := p.batch
	e.stats.KeysLost.Add(uint64(b.Count()))
	d := &frame.Discard{Count: uint32(b.Count()), Flow: b.Flow, FirstSeq: b.FirstSeq, Src: b.Src, Dst: b.Dst}
	e.mu.Lock()
	e.discard[k] = &pendingDiscard{d: d, next: time.Now().Add(discardRetryMin), wait: discardRetryMin}
	e.mu.Unlock()
	e.sendDiscard(d)
	p.done <- &LostError{Dst: b.Dst, Flow: b.Flow, FirstSeq: b.FirstSeq, Count: b.Count(), Reason: reason}
}

func (e *Engine) sendDiscard(d *frame.Discard) {
	buf, err := frame.AppendDiscard(nil, d)
	if err != nil {
		return
	}
	e.sendControl(d.Dst, buf)
}

// pendingDiscard is a discard not yet confirmed, and when to send it
// again.
type pendingDiscard struct {
	d    *frame.Discard
	next time.Time
	wait time.Duration
}

// Discards are sent again with exponential backoff, and at most
// discardBurst per housekeeping tick: after a mass loss (a link that died
// under load) a storm of discards would crowd out the completions and
// assignments that share the control streams.
const (
	discardRetryMin = 500 * time.Millisecond
	discardRetryMax = 8 * time.Second
	discardBurst    = 256
)

func (e *Engine) resendDiscards(now time.Time) {
	e.mu.Lock()
	var ds []*frame.Discard
	for _, pd := range e.discard {
		if len(ds) == discardBurst {
			break
		}
		if now.Before(pd.next) {
			continue
		}
		pd.wait = min(2*pd.wait, discardRetryMax)
		pd.next = now.Add(pd.wait)
		ds = append(ds, pd.d)
	}
	e.mu.Unlock()
	for _, d := range ds {
		e.sendDiscard(d)
	}
}

// sendControl routes a control frame towards node dst, dropping it if there
// is no way there now (its sender retries or times out). It writes b
// before returning and keeps no reference to it, so a reader may forward
// a frame straight from its buffer.
func (e *Engine) sendControl(dst string, b []byte) bool {
	l, err := e.route(dst)
	if err != nil {
		return false
	}
	s := l.current()
	if s == nil {
		return false
	}
	return s.sendCtl(b) == nil
}

// Pending is the number of frames awaiting completion.
func (e *Engine) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending)
}

// PendingDiscards is the number of discards not yet confirmed.
func (e *Engine) PendingDiscards() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.discard)
}
