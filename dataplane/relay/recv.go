package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/otp"
)

// padWait bounds how long a frame waits for announced pad, or for pad and
// a session on the next link when forwarding.
const padWait = 5 * time.Second

// tombTTL is how long a discarded batch is remembered, so that its frame,
// if still on its way, is refused when it arrives.
const tombTTL = 10 * time.Minute

// handle processes one frame from session s. An error means the stream is
// out of step (a malformed frame) and the connection must close.
func (e *Engine) handle(s *session, typ frame.Type, b []byte) error {
	switch typ {
	case frame.TypeRelay:
		r, err := frame.ParseRelay(b)
		if err != nil {
			return err
		}
		e.stats.FramesReceived.Add(1)
		e.relayIn(s, &r, b)
	case frame.TypeCompletion:
		c, err := frame.ParseCompletion(b)
		if err != nil {
			return err
		}
		if c.Src == e.cfg.NodeID {
			e.completion(&c)
		} else if !e.sendControl(c.Src, b) {
			e.stats.Undeliverable.Add(1)
		}
	case frame.TypeDiscard:
		d, err := frame.ParseDiscard(b)
		if err != nil {
			return err
		}
		if d.Dst == e.cfg.NodeID {
			e.discardIn(&d)
		} else if !e.sendControl(d.Dst, b) {
			e.stats.Undeliverable.Add(1)
		}
	case frame.TypeAssign:
		a, err := frame.ParseAssign(b)
		if err != nil {
			return err
		}
		if s.l.master {
			return errors.New("ASSIGN from the link's slave: only the master (lower node ID) assigns pad")
		}
		s.l.post(ctlMsg{sess: s, assign: &a})
	case frame.TypeAssignAck:
		a, err := frame.ParseAssignAck(b)
		if err != nil {
			return err
		}
		if !s.l.master {
			return errors.New("ASSIGN_ACK from the link's master: only the slave acknowledges")
		}
		s.l.post(ctlMsg{sess: s, ack: &a})
	case frame.TypeControl:
		c, err := frame.ParseControl(b)
		if err != nil {
			return err
		}
		switch {
		case c.Kind == frame.KindRouted:
			return e.routedIn(b)
		case c.Kind >= frame.KindControlPlaneMin:
			if f := e.cfg.Control; f != nil {
				f(s.l.peer, uint16(c.Kind), c.Body)
			}
		default:
			return fmt.Errorf("CONTROL kind %d: the KM link defines only kind %d (ROUTED) below %d", uint16(c.Kind), uint16(frame.KindRouted), uint16(frame.KindControlPlaneMin))
		}
	case frame.TypeSync:
		y, err := frame.ParseSync(b)
		if err != nil {
			return err
		}
		if !s.l.master {
			return errors.New("SYNC from the link's master: only the slave sends SYNC, the master answers SYNC_AGREE")
		}
		if s.gotSync.Swap(true) {
			return errors.New("a second SYNC on one connection")
		}
		s.l.post(ctlMsg{sess: s, sync: &y})
	case frame.TypeSyncAgree:
		a, err := frame.ParseSyncAgree(b)
		if err != nil {
			return err
		}
		if s.l.master {
			return errors.New("SYNC_AGREE from the link's slave: only the master (lower node ID) sends it")
		}
		if s.gotSync.Swap(true) {
			return errors.New("a second SYNC_AGREE on one connection")
		}
		s.l.post(ctlMsg{sess: s, agree: &a})
	default:
		return fmt.Errorf("frame type %v not expected on a KM link", typ)
	}
	return nil
}

// post hands m to the link's keeper goroutine.
func (l *link) post(m ctlMsg) {
	select {
	case l.ctlIn <- m:
	case <-l.done:
	case <-m.sess.ctx.Done():
	}
}

// relayIn handles a RELAY frame: consume its pad whatever happens next,
// verify, then deliver here or re-encrypt for the next hop.
func (e *Engine) relayIn(s *session, r *frame.Relay, b []byte) {
	l := s.l
	ctx, cancel := context.WithTimeout(s.ctx, padWait)
	defer cancel()
	p := r.PayloadLen()
	pad, err := l.rxw.take(ctx, s, r.PadPos, r.PadLen())
	if err != nil {
		// No completion: the frame's (flow, seq) may be a legitimate one in
		// flight, whose completion must not be pre-empted by a copy's. The
		// source of a frame really lost this way times out and discards.
		if errors.Is(err, context.DeadlineExceeded) {
			e.stats.PadWaitTimeouts.Add(1) // the pad announced did not arrive within padWait
		} else {
			e.stats.Replays.Add(1)
		}
		e.log.Warn("RELAY frame refused: its pad position is not available", "peer", l.peer, "src", r.Src, "dst", r.Dst, "flow", r.Flow, "first_seq", r.FirstSeq, "pad_pos", r.PadPos, "err", err)
		return
	}
	defer l.rx.Release(pad)
	auth := b[:r.HeaderLen()+p]
	if !otp.Verify((*[otp.MACKeySize]byte)(pad.Bytes[p:p+otp.MACKeySize]), auth, r.Tag) {
		l.burnt(l.rx, pad.Pos, pad.Pos+uint64(len(pad.Bytes)), burnBadTag)
		e.stats.BadTags.Add(1)
		e.stats.PadBurnt.Add(uint64(len(pad.Bytes)))
		e.log.Warn("RELAY frame with a bad tag: dropped, its pad burnt", "peer", l.peer, "src", r.Src, "dst", r.Dst, "flow", r.Flow, "first_seq", r.FirstSeq, "pad_pos", r.PadPos)
		e.refuse(r, frame.StatusBadTag, fmt.Sprintf("tag check failed at %s on the link from %s", e.cfg.NodeID, l.peer))
		return
	}
	l.used(l.rx, pad.Pos, pad.Pos+uint64(len(pad.Bytes)))
	e.stats.PadMACBytes.Add(otp.MACKeySize)
	payload := b[r.HeaderLen() : r.HeaderLen()+p]
	if r.Dst == e.cfg.NodeID {
		e.deliver(r, payload, pad.Bytes[:p])
		return
	}
	e.forward(ctx, r, payload, pad.Bytes[:p])
}

// deliver decrypts keys that reached their destination, stores them and
// confirms to the source.
func (e *Engine) deliver(r *frame.Relay, payload, pad []byte) {
	otp.XOR(payload, payload, pad)
	defer clear(payload)
	// tombMu orders this against a discard of the same batch, so a key
	// is either discarded or refused, never stored after its discard.
	e.tombMu.Lock()
	_, dead := e.tombs[tombKey{r.Src, r.Flow, r.FirstSeq}]
	var err error
	if !dead {
		batch := Batch{Src: r.Src, Dst: r.Dst, Flow: r.Flow, FirstSeq: r.FirstSeq, KeySize: int(r.KeySize), Keys: payload}
		err = e.cfg.Sink.Deliver(r.Src, &batch)
	}
	e.tombMu.Unlock()
	if dead {
		e.refuse(r, frame.StatusDiscarded, "the source discarded these keys before they arrived")
		return
	}
	if err != nil {
		e.refuse(r, frame.StatusPoolFull, fmt.Sprintf("%s cannot store them: %v", e.cfg.NodeID, err))
		return
	}
	e.stats.KeysDelivered.Add(uint64(r.Count))
	c := frame.Completion{Status: frame.StatusOK, Count: r.Count, Flow: r.Flow, FirstSeq: r.FirstSeq, Src: r.Src, Dst: r.Dst}
	e.answer(&c)
}

// forward re-encrypts a verified frame from the incoming link's pad to the
// next link's in one pass (otp.XOR3) and queues it there.
func (e *Engine) forward(ctx context.Context, r *frame.Relay, payload, padIn []byte) {
	if r.HopLimit <= 1 {
		e.refuse(r, frame.StatusHopLimit, fmt.Sprintf("hop limit reached at %s", e.cfg.NodeID))
		return
	}
	out, err := e.route(r.Dst)
	if err != nil {
		e.stats.Undeliverable.Add(1)
		e.refuse(r, frame.StatusNoRoute, fmt.Sprintf("at %s: %v", e.cfg.NodeID, err))
		return
	}
	s, err := out.session(ctx)
	if err != nil {
		e.stats.Undeliverable.Add(1)
		e.refuse(r, frame.StatusNoRoute, fmt.Sprintf("at %s: %v", e.cfg.NodeID, err))
		return
	}
	fwd := *r
	fwd.HopLimit--
	padOut, err := out.reserveTx(ctx, s, fwd.PadLen())
	if err != nil {
		e.stats.Undeliverable.Add(1)
		e.refuse(r, frame.StatusNoRoute, fmt.Sprintf("at %s: %v", e.cfg.NodeID, err))
		return
	}
	fwd.PadPos = padOut.Pos
	out.used(out.tx, padOut.Pos, padOut.Pos+uint64(len(padOut.Bytes)))
	p := fwd.PayloadLen()
	b, err := frame.AppendRelayHeader(getBuf(fwd.FrameLen()), &fwd)
	if err != nil {
		out.tx.Release(padOut)
		e.refuse(r, frame.StatusInternal, err.Error())
		return
	}
	h := len(b)
	b = b[:h+p]
	otp.XOR3(b[h:], payload, padIn, padOut.Bytes[:p])
	tag := otp.Tag((*[otp.MACKeySize]byte)(padOut.Bytes[p:p+otp.MACKeySize]), b)
	b = append(b, tag[:]...)
	out.tx.Release(padOut)
	e.stats.PadMACBytes.Add(otp.MACKeySize)
	if err := s.sendRelay(b); err != nil {
		e.stats.Undeliverable.Add(1)
		e.refuse(r, frame.StatusNoRoute, fmt.Sprintf("at %s: %v", e.cfg.NodeID, err))
		return
	}
	e.stats.FramesForwarded.Add(1)
}

// refuse answers the source that the keys of r were not stored.
func (e *Engine) refuse(r *frame.Relay, st frame.Status, reason string) {
	if len(reason) > frame.MaxReason {
		reason = reason[:frame.MaxReason]
	}
	c := frame.Completion{Status: st, Count: r.Count, Flow: r.Flow, FirstSeq: r.FirstSeq, Src: r.Src, Dst: e.cfg.NodeID, Reason: reason}
	e.answer(&c)
}

func (e *Engine) answer(c *frame.Completion) {
	if c.Src == e.cfg.NodeID {
		e.completion(c)
		return
	}
	b, err := frame.AppendCompletion(nil, c)
	if err != nil {
		e.log.Error("cannot encode a completion", "err", err)
		return
	}
	if !e.sendControl(c.Src, b) {
		e.stats.Undeliverable.Add(1)
	}
}

// discardIn removes keys their source gave up on and remembers the batch,
// so that its frame is refused should it still arrive.
func (e *Engine) discardIn(d *frame.Discard) {
	e.tombMu.Lock()
	e.tombs[tombKey{d.Src, d.Flow, d.FirstSeq}] = time.Now().Add(tombTTL)
	n, err := e.cfg.Sink.Discard(d.Src, &Batch{Src: d.Src, Dst: d.Dst, Flow: d.Flow, FirstSeq: d.FirstSeq, KeySize: 1}, int(d.Count))
	e.tombMu.Unlock()
	if err != nil {
		e.log.Warn("cannot discard keys the source gave up on; it will ask again", "src", d.Src, "flow", d.Flow, "first_seq", d.FirstSeq, "err", err)
		return
	}
	if n > 0 {
		e.log.Info("discarded keys whose completion never reached the source", "src", d.Src, "flow", d.Flow, "first_seq", d.FirstSeq, "keys", n)
	}
	c := frame.Completion{Status: frame.StatusDiscarded, Count: d.Count, Flow: d.Flow, FirstSeq: d.FirstSeq, Src: d.Src, Dst: d.Dst}
	e.answer(&c)
}
