package controlplane

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/qrelay/qrelay/dataplane/frame"
	"github.com/qrelay/qrelay/internal/ids"
)

// Specification constants: the wire format in doc.go.
const (
	// Kind is the CONTROL frame kind (frame.KindControlPlane, 16) that
	// carries every control-plane message. Kinds below 16 belong to the
	// relay engine; the control plane's message type is the first byte of
	// the body, so it needs only this one kind.
	Kind = uint16(frame.KindControlPlane)

	// Version is the only message version this package reads and writes.
	Version = 1

	// MsgAdverts is the message type of a batch of adverts, the only type.
	MsgAdverts = 1

	// MaxNodeIDLen is the longest node ID, in bytes: ids.MaxLen, as in
	// the KM link frames (dataplane/frame.MaxNodeIDLen).
	MaxNodeIDLen = ids.MaxLen
	// MaxLinks is the most links one advert lists.
	MaxLinks = 256
	// MaxLifetime is the longest remaining lifetime an advert may carry.
	MaxLifetime = 24 * time.Hour
	// MaxMessageLen is the largest message Send is given. One advert with
	// MaxLinks links of MaxNodeIDLen-byte peers fits; database sync packs
	// as many adverts as fit.
	MaxMessageLen = 64 << 10
)

// Field sizes and offsets.
const (
	msgHeaderLen   = 4  // type, version, advert count
	advertFixedLen = 15 // origin len, seq, lifetime, link count (+ origin)
	linkFixedLen   = 55 // peer len, flags, state, cost, 2 stocks, 4 rates (+ peer)

	// Offsets within a link, from the byte after its peer ID.
	linkOffFlags   = 0
	linkOffState   = 1
	linkOffCost    = 2
	linkOffTx      = 6
	linkOffRx      = 14
	linkOffFill    = 22
	linkOffConsume = 30
	linkOffQBER    = 38
	linkOffSKR     = 46
)

// Link flags.
const (
	flagUp     = 1 << 0 // the KM link is up
	flagQKDUp  = 1 << 1 // the QKD module delivers keys
	flagUsable = 1 << 2 // the advertiser offers the link to SPF
	flagsKnown = flagUp | flagQKDUp | flagUsable
)

// advert is one origin's link-state advertisement. Once built or parsed it
// is never modified, so the LSDB and SPF share it without copying.
type advert struct {
	Origin   string
	Seq      uint64
	Lifetime uint32 // remaining lifetime in ms; 0 flushes the origin
	Links    []advLink
}

// advLink is one link as its advertiser sees it.
type advLink struct {
	Peer        string
	Flags       uint8
	State       State
	Cost        uint32 // key-aware cost; 0 iff not usable
	TxStock     uint64
	RxStock     uint64
	FillRate    float64
	ConsumeRate float64
	QBER        float64
	SecretRate  float64
}

func (l *advLink) up() bool     { return l.Flags&flagUp != 0 }
func (l *advLink) qkdUp() bool  { return l.Flags&flagQKDUp != 0 }
func (l *advLink) usable() bool { return l.Flags&flagUsable != 0 }

// link returns the advert's link to peer, or nil. Links are sorted by peer.
func (a *advert) link(peer string) *advLink {
	lo, hi := 0, len(a.Links)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a.Links[m].Peer < peer {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(a.Links) && a.Links[lo].Peer == peer {
		return &a.Links[lo]
	}
	return nil
}

// encodedLen returns the length of a's encoding.
func (a *advert) encodedLen() int {
	n := advertFixedLen + len(a.Origin)
	for i := range a.Links {
		n += linkFixedLen + len(a.Links[i].Peer)
	}
	return n
}

// appendAdvert appends the encoding of a to dst, with lifetime in place of
// a.Lifetime (the remaining lifetime when it is sent). a must be valid
// (built by this package or parsed); the encoding is canonical, so parsing
// and re-appending gives the same bytes.
func appendAdvert(dst []byte, a *advert, lifetime uint32) []byte {
	dst = append(dst, byte(len(a.Origin)))
	dst = append(dst, a.Origin...)
	dst = binary.BigEndian.AppendUint64(dst, a.Seq)
	dst = binary.BigEndian.AppendUint32(dst, lifetime)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(a.Links)))
	for i := range a.Links {
		l := &a.Links[i]
		dst = append(dst, byte(len(l.Peer)))
		dst = append(dst, l.Peer...)
		dst = append(dst, l.Flags, byte(l.State))
		dst = binary.BigEndian.AppendUint32(dst, l.Cost)
		dst = binary.BigEndian.AppendUint64(dst, l.TxStock)
		dst = binary.BigEndian.AppendUint64(dst, l.RxStock)
		for _, f := range [...]float64{l.FillRate, l.ConsumeRate, l.QBER, l.SecretRate} {
			dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
		}
	}
	return dst
}

// appendMessage appends a message carrying advs, with their own lifetimes,
// to dst. The router builds its messages with appendMessageHeader and
// appendAdvert instead, to send remaining lifetimes.
func appendMessage(dst []byte, advs []*advert) []byte {
	dst = appendMessageHeader(dst, len(advs))
	for _, a := range advs {
		dst = appendAdvert(dst, a, a.Lifetime)
	}
	return dst
}

// appendMessageHeader appends the header of a message carrying n adverts.
func appendMessageHeader(dst []byte, n int) []byte {
	dst = append(dst, MsgAdverts, Version)
	return binary.BigEndian.AppendUint16(dst, uint16(n))
}

// ParseError is what Receive returns, wrapped, for a malformed message:
// which field is wrong, where, and what was wanted.
type ParseError struct {
	Field  string // such as "advert[0].link[2].qber"
	Offset int    // the field's offset from the start of the message
	Reason string // the bad value and what is wanted
}

// Error returns a message such as
//
//	controlplane: message field "advert[0].link[2].qber" at offset 141: 1.5, want 0..1
func (e *ParseError) Error() string {
	return "controlplane: message field " + strconv.Quote(e.Field) + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

func perrorf(field string, off int, format string, args ...any) *ParseError {
	return &ParseError{Field: field, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// parseMessage parses a whole message. Strings are copied, so the result
// does not alias b.
func parseMessage(b []byte) ([]*advert, error) {
	if len(b) > MaxMessageLen {
		return nil, perrorf("message", 0, "%d bytes, want at most %d", len(b), MaxMessageLen)
	}
	if len(b) < msgHeaderLen {
		return nil, perrorf("header", 0, "%d bytes, want %d", len(b), msgHeaderLen)
	}
	if b[0] != MsgAdverts {
		return nil, perrorf("type", 0, "%d, want %d (ADVERTS)", b[0], MsgAdverts)
	}
	if b[1] != Version {
		return nil, perrorf("version", 1, "%d, want %d", b[1], Version)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n == 0 {
		return nil, perrorf("advert count", 2, "0, want at least 1")
	}
	p := parser{b: b, off: msgHeaderLen}
	advs := make([]*advert, 0, min(n, 64))
	for i := range n {
		a, err := p.advert(i)
		if err != nil {
			return nil, err
		}
		advs = append(advs, a)
	}
	if p.off != len(b) {
		return nil, perrorf("message", p.off, "%d trailing bytes after %d adverts", len(b)-p.off, n)
	}
	return advs, nil
}

type parser struct {
	b   []byte
	off int
	adv int // index of the advert being parsed
	lnk int // index of the link being parsed, or -1
}

// field names field of the current advert or link, such as
// "advert[0].link[2].qber". Names are built only for errors.
func (p *parser) field(f string) string {
	s := "advert[" + strconv.Itoa(p.adv) + "]"
	if p.lnk >= 0 {
		s += ".link[" + strconv.Itoa(p.lnk) + "]"
	}
	if f != "" {
		s += "." + f
	}
	return s
}

func (p *parser) errorf(f string, off int, format string, args ...any) *ParseError {
	return perrorf(p.field(f), off, format, args...)
}

// need fails unless n more bytes remain for field f.
func (p *parser) need(f string, n int) error {
	if len(p.b)-p.off < n {
		return p.errorf(f, p.off, "truncated: %d bytes left, want %d", len(p.b)-p.off, n)
	}
	return nil
}

// id parses a length-prefixed node ID.
func (p *parser) id(f string) (string, error) {
	if err := p.need(f+" length", 1); err != nil {
		return "", err
	}
	n := int(p.b[p.off])
	if n == 0 || n > MaxNodeIDLen {
		return "", p.errorf(f+" length", p.off, "%d, want 1..%d", n, MaxNodeIDLen)
	}
	p.off++
	if err := p.need(f, n); err != nil {
		return "", err
	}
	raw := p.b[p.off : p.off+n]
	if i := ids.BadByte(raw); i >= 0 {
		return "", p.errorf(f, p.off+i, "byte %#02x, want %s", raw[i], ids.Chars)
	}
	p.off += n
	return string(raw), nil
}

func (p *parser) advert(i int) (*advert, error) {
	p.adv, p.lnk = i, -1
	origin, err := p.id("origin")
	if err != nil {
		return nil, err
	}
	if err := p.need("", advertFixedLen-1); err != nil {
		return nil, err
	}
	a := &advert{Origin: origin}
	a.Seq = binary.BigEndian.Uint64(p.b[p.off:])
	a.Lifetime = binary.BigEndian.Uint32(p.b[p.off+8:])
	if a.Lifetime > uint32(MaxLifetime/time.Millisecond) {
		return nil, p.errorf("lifetime", p.off+8, "%d ms, want at most %d", a.Lifetime, MaxLifetime/time.Millisecond)
	}
	nl := int(binary.BigEndian.Uint16(p.b[p.off+12:]))
	if nl > MaxLinks {
		return nil, p.errorf("link count", p.off+12, "%d, want at most %d", nl, MaxLinks)
	}
	if a.Lifetime == 0 && nl != 0 {
		return nil, p.errorf("link count", p.off+12, "%d in a flush (lifetime 0), want 0", nl)
	}
	p.off += advertFixedLen - 1
	if nl > 0 {
		a.Links = make([]advLink, nl)
	}
	for j := range a.Links {
		p.lnk = j
		loff := p.off
		if err := p.link(&a.Links[j]); err != nil {
			return nil, err
		}
		l := &a.Links[j]
		if l.Peer == origin {
			return nil, p.errorf("peer", loff+1, "%q is the origin itself", l.Peer)
		}
		if j > 0 && l.Peer <= a.Links[j-1].Peer {
			return nil, p.errorf("peer", loff+1, "%q after %q, want peers in strictly ascending order", l.Peer, a.Links[j-1].Peer)
		}
	}
	return a, nil
}

// Float fields of a link: name, offset after the peer, largest value.
var linkFloats = [...]struct {
	name string
	off  int
	max  float64
}{
	{"fill rate", linkOffFill, math.MaxFloat64},
	{"consume rate", linkOffConsume, math.MaxFloat64},
	{"qber", linkOffQBER, 1},
	{"secret rate", linkOffSKR, math.MaxFloat64},
}

func (p *parser) link(l *advLink) error {
	peer, err := p.id("peer")
	if err != nil {
		return err
	}
	l.Peer = peer
	if err := p.need("", linkFixedLen-1); err != nil {
		return err
	}
	b, off := p.b[p.off:p.off+linkFixedLen-1], p.off
	l.Flags = b[linkOffFlags]
	if l.Flags&^flagsKnown != 0 {
		return p.errorf("flags", off+linkOffFlags, "%#02x, unknown bits %#02x", l.Flags, l.Flags&^flagsKnown)
	}
	l.State = State(b[linkOffState])
	if !l.State.Valid() {
		return p.errorf("state", off+linkOffState, "%d, want 0..%d", b[linkOffState], Reserved)
	}
	l.Cost = binary.BigEndian.Uint32(b[linkOffCost:])
	if l.usable() {
		if !l.up() || !l.qkdUp() || (l.State != InService && l.State != Standby) {
			return p.errorf("flags", off+linkOffFlags, "%#02x with state %v: usable needs up, qkd_up and in_service or standby", l.Flags, l.State)
		}
		if l.Cost == 0 || l.Cost > MaxLinkCost {
			return p.errorf("cost", off+linkOffCost, "%d on a usable link, want 1..%d", l.Cost, MaxLinkCost)
		}
	} else if l.Cost != 0 {
		return p.errorf("cost", off+linkOffCost, "%d on an unusable link, want 0", l.Cost)
	}
	l.TxStock = binary.BigEndian.Uint64(b[linkOffTx:])
	l.RxStock = binary.BigEndian.Uint64(b[linkOffRx:])
	var vals [len(linkFloats)]float64
	for i, f := range linkFloats {
		bits := binary.BigEndian.Uint64(b[f.off:])
		v := math.Float64frombits(bits)
		// Reject -0 too: it compares equal to 0 but encodes differently,
		// which would break the canonical encoding.
		if !(v >= 0 && v <= f.max) || bits == 1<<63 {
			return p.errorf(f.name, off+f.off, "%v, want 0..%v", v, f.max)
		}
		vals[i] = v
	}
	l.FillRate, l.ConsumeRate, l.QBER, l.SecretRate = vals[0], vals[1], vals[2], vals[3]
	p.off += linkFixedLen - 1
	return nil
}

// checkNodeID fails unless id is a valid ID (internal/ids): 1 to
// MaxNodeIDLen bytes of [A-Za-z0-9._-].
func checkNodeID(id string) error {
	if len(id) == 0 || len(id) > MaxNodeIDLen {
		return fmt.Errorf("node ID %q is %d bytes, want 1..%d", id, len(id), MaxNodeIDLen)
	}
	if i := ids.BadByte(id); i >= 0 {
		return fmt.Errorf("node ID %q has byte %#02x at %d, want %s", id, id[i], i, ids.Chars)
	}
	return nil
}
