package frame

import (
	"encoding/binary"

	"github.com/qrelay/qrelay/ringstore"
)

// The key stream messages (docs/kmlink.md, section 10.2): a key stream's
// owner (the node with the lower ID) tells the other node which of the keys
// both hold is the key of which index (KEY_STREAM), and the other node
// answers for each index (KEY_STREAM_ACK). Each message starts with the
// format version keyStreamVersion.
const (
	keyStreamVersion = 1
	// MaxKeyStreamEntries is the most indices one KEY_STREAM or
	// KEY_STREAM_ACK names.
	MaxKeyStreamEntries = 1024
	// MaxKeyStreamAckMsg is the longest message of a KEY_STREAM_ACK
	// entry; AppendKeyStreamAck cuts a longer one.
	MaxKeyStreamAckMsg = 256
)

// KEY_STREAM_ACK statuses.
const (
	// KeyStreamHeld: the other node holds the key for the index.
	KeyStreamHeld = 0
	// KeyStreamKeyRefused: the other node cannot hold this key; the owner
	// chooses another.
	KeyStreamKeyRefused = 1
	// KeyStreamUnknown: the other node serves no such stream with the
	// owner (a configuration mismatch; the owner keeps its keys).
	KeyStreamUnknown = 2
	// KeyStreamServed: the other node served another key for this index
	// (the owner restarted since): the index fails closed at both ends.
	KeyStreamServed = 3
)

const (
	keyStreamOffVersion = 0
	keyStreamOffNameLen = 1
	keyStreamOffName    = 2
	keyStreamEntryLen   = 8 + 16    // index, key ID
	keyStreamAckMin     = 8 + 1 + 2 // index, status, message length
)

// KeyStream is a KEY_STREAM message (kind KindKeyStream).
type KeyStream struct {
	Name    string           // the stream's name, 1..255 bytes
	Entries []KeyStreamEntry // 1..MaxKeyStreamEntries
}

// KeyStreamEntry is one index of a KEY_STREAM.
type KeyStreamEntry struct {
	Index uint64
	Key   ringstore.KeyID // the ID of the index's key, in the pools the two nodes share
}

// Len returns the length of the whole message.
func (m *KeyStream) Len() int { return 2 + len(m.Name) + 2 + keyStreamEntryLen*len(m.Entries) }

// checkStreamName fails unless name is 1..255 bytes.
func checkStreamName(k Kind, name string) *Error {
	if len(name) < 1 || len(name) > 255 {
		return msgErr(k, "stream name length", keyStreamOffNameLen, "%d, want 1..255", len(name))
	}
	return nil
}

// checkStreamCount fails unless 1 <= n <= MaxKeyStreamEntries.
func checkStreamCount(k Kind, name string, n int) *Error {
	if n < 1 || n > MaxKeyStreamEntries {
		return msgErr(k, "count", keyStreamOffName+len(name), "%d, want 1..%d", n, MaxKeyStreamEntries)
	}
	return nil
}

// AppendKeyStream appends the message m to dst. If m cannot be encoded it
// returns dst unchanged and an *Error naming the bad field.
func AppendKeyStream(dst []byte, m *KeyStream) ([]byte, error) {
	if err := checkStreamName(KindKeyStream, m.Name); err != nil {
		return dst, err
	}
	if err := checkStreamCount(KindKeyStream, m.Name, len(m.Entries)); err != nil {
		return dst, err
	}
	dst = append(dst, keyStreamVersion)
	dst = appendStr(dst, m.Name)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Entries)))
	for _, e := range m.Entries {
		dst = binary.BigEndian.AppendUint64(dst, e.Index)
		dst = append(dst, e.Key[:]...)
	}
	return dst, nil
}

// ParseKeyStream parses the whole KEY_STREAM message b.
func ParseKeyStream(b []byte) (KeyStream, error) {
	r := newMsgReader(KindKeyStream, b)
	r.version(keyStreamVersion)
	var m KeyStream
	m.Name = r.str("stream name")
	off := r.off
	n := r.count("count", 1, MaxKeyStreamEntries)
	if r.ok() && n*keyStreamEntryLen != len(b)-r.off {
		r.failAt("count", off, "%d, but %d bytes follow it, want %d (%d per entry)", n, len(b)-r.off, n*keyStreamEntryLen, keyStreamEntryLen)
	}
	if r.ok() {
		m.Entries = make([]KeyStreamEntry, n)
		r.label = "entry"
		for i := range m.Entries {
			r.entry = i
			m.Entries[i] = KeyStreamEntry{Index: r.u64("index"), Key: r.keyID("key ID")}
		}
	}
	if err := r.end(); err != nil {
		return KeyStream{}, err
	}
	return m, nil
}

// KeyStreamAck is a KEY_STREAM_ACK message (kind KindKeyStreamAck).
type KeyStreamAck struct {
	Name string              // the stream's name, as in the KEY_STREAM, 1..255 bytes
	Acks []KeyStreamAckEntry // 1..MaxKeyStreamEntries
}

// KeyStreamAckEntry is the outcome of one index.
type KeyStreamAckEntry struct {
	Index  uint64
	Status uint8 // KeyStreamHeld .. KeyStreamServed
	// Msg says why, as text for operators: at most MaxKeyStreamAckMsg
	// bytes (AppendKeyStreamAck cuts a longer one), not checked for UTF-8.
	Msg string
}

// Len returns the length of the whole message, each Msg cut as
// AppendKeyStreamAck cuts it.
func (m *KeyStreamAck) Len() int {
	n := 2 + len(m.Name) + 2
	for _, a := range m.Acks {
		n += keyStreamAckMin + min(len(a.Msg), MaxKeyStreamAckMsg)
	}
	return n
}

// AppendKeyStreamAck appends the message m to dst, each Msg cut to
// MaxKeyStreamAckMsg bytes. If m cannot be encoded it returns dst
// unchanged and an *Error naming the bad field.
func AppendKeyStreamAck(dst []byte, m *KeyStreamAck) ([]byte, error) {
	const k = KindKeyStreamAck
	if err := checkStreamName(k, m.Name); err != nil {
		return dst, err
	}
	if err := checkStreamCount(k, m.Name, len(m.Acks)); err != nil {
		return dst, err
	}
	off := keyStreamOffName + len(m.Name) + 2
	for i, a := range m.Acks {
		if a.Status > KeyStreamServed {
			return dst, msgErr(k, "entry "+itoa(i)+" status", off+8, "%d, want 0..%d", a.Status, KeyStreamServed)
		}
		off += keyStreamAckMin + min(len(a.Msg), MaxKeyStreamAckMsg)
	}
	dst = append(dst, keyStreamVersion)
	dst = appendStr(dst, m.Name)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Acks)))
	for _, a := range m.Acks {
		dst = binary.BigEndian.AppendUint64(dst, a.Index)
		dst = append(dst, a.Status)
		dst = appendText(dst, a.Msg, MaxKeyStreamAckMsg)
	}
	return dst, nil
}

// ParseKeyStreamAck parses the whole KEY_STREAM_ACK message b.
func ParseKeyStreamAck(b []byte) (KeyStreamAck, error) {
	r := newMsgReader(KindKeyStreamAck, b)
	r.version(keyStreamVersion)
	var m KeyStreamAck
	m.Name = r.str("stream name")
	off := r.off
	n := r.count("count", 1, MaxKeyStreamEntries)
	if !r.entries("count", off, n, keyStreamAckMin) {
		return KeyStreamAck{}, r.end()
	}
	m.Acks = make([]KeyStreamAckEntry, n)
	r.label = "entry"
	for i := 0; i < n && r.ok(); i++ {
		r.entry = i
		a := &m.Acks[i]
		a.Index = r.u64("index")
		a.Status = r.upTo("status", KeyStreamServed)
		a.Msg = r.text("message", MaxKeyStreamAckMsg)
	}
	if err := r.end(); err != nil {
		return KeyStreamAck{}, err
	}
	return m, nil
}
