package frame

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore"
)

type namedMsg struct {
	name string
	msg  any
}

// sampleMessages returns the golden messages and more of each kind, at the
// edges of what each allows.
func sampleMessages() []namedMsg {
	var out []namedMsg
	for _, g := range goldenMessages {
		out = append(out, namedMsg{g.name, g.msg})
	}
	ids := make([]ringstore.KeyID, 3)
	for i := range ids {
		ids[i] = ringstore.DeriveKeyID("a", "b", 7, uint64(i))
	}
	slices.SortFunc(ids, ringstore.CompareKeyIDs)
	inv := []ringstore.KeyState{{ID: ids[0]}, {ID: ids[1], Owned: true}, {ID: ids[2]}}
	drops := []PoolDropKey{
		{ID: ids[0], Reason: PoolDropMissing},
		{ID: ids[1], In: true, Reason: PoolDropUnconfirmed},
		{ID: ids[1], Assigned: true, Reason: PoolDropReserved},
		{ID: ids[2], In: true, Assigned: true, Reason: PoolDropOrphan},
		{ID: ids[2], In: true, Assigned: true, Reason: PoolDropStale},
	}
	maxName := strings.Repeat("n", 255)
	return append(out, []namedMsg{
		{"routed min", Routed{HopLimit: 1, Kind: KindControlPlaneMin, Src: "a", Dst: "b"}},
		{"routed max IDs", Routed{HopLimit: math.MaxUint8, Kind: math.MaxUint16, Src: maxSrc, Dst: maxDst, Payload: []byte("xyz")}},
		{"sae assign no slaves no keys", SAEAssign{Assignments: []SAEAssignment{{RequestID: 1, Master: "m"}}}},
		{"sae assign two", SAEAssign{Assignments: []SAEAssignment{
			{RequestID: math.MaxUint64, Master: maxName, Slaves: []string{"s"}, Keys: ids},
			{RequestID: 2, Master: "\x00\xff", Slaves: []string{"s1", "s2", "s3"}, Keys: ids[:1]},
		}}},
		{"sae ack max message", SAEAssignAck{Results: []SAEAssignResult{{RequestID: 3, Msg: strings.Repeat("x", MaxSAEAssignAckMsg)}}}},
		{"sae ack ok with message", SAEAssignAck{Results: []SAEAssignResult{{RequestID: 3, OK: true, Msg: "fine"}}}},
		{"sae cancel three", SAEAssignCancel{Keys: ids}},
		{"sae cancel ack max", SAEAssignCancelAck{First: ids[2], Count: MaxSAEAssignCancelKeys, Discarded: MaxSAEAssignCancelKeys}},
		{"sae cancel ack refused max message", SAEAssignCancelAck{First: ids[0], Count: 1, Status: SAECancelRefused, Msg: strings.Repeat("x", MaxSAEAssignAckMsg)}},
		{"key stream three", KeyStream{Name: maxName, Entries: []KeyStreamEntry{{0, ids[0]}, {math.MaxUint64, ids[1]}, {7, ids[2]}}}},
		{"key stream ack all statuses", KeyStreamAck{Name: "t1", Acks: []KeyStreamAckEntry{
			{Index: 1, Status: KeyStreamHeld}, {Index: 2, Status: KeyStreamKeyRefused, Msg: "key k is assigned to SAE x"},
			{Index: 3, Status: KeyStreamUnknown, Msg: "no such stream"}, {Index: 4, Status: KeyStreamServed, Msg: strings.Repeat("é", MaxKeyStreamAckMsg/2)},
		}}},
		{"hello", PoolHello{Boot: 0x0123456789abcdef, Durable: true, Seen: 0xfedcba9876543210}},
		{"hello first", PoolHello{Boot: 1}},
		{"sync req", PoolSyncReq{Round: 5, Boot: 6, Target: 7, Durable: true, Restarted: true}},
		{"ready", PoolSyncReady{Round: 5, Restarted: true, OutKeys: 4096, InKeys: 3}},
		{"ready refused", PoolSyncReady{Round: 5, Status: PoolReadyRefused, Durable: true, Msg: "this node's boot ID is 0000000000000009"}},
		{"ready failed max message", PoolSyncReady{Round: math.MaxUint64, Status: PoolReadyFailed, Msg: strings.Repeat("m", MaxPoolSyncMsg)}},
		{"inv req", PoolInvReq{Round: 5, Pool: PoolIn, Chunk: 2}},
		{"inv", PoolInv{Round: 5, Pool: PoolOut, Chunk: 1, Keys: inv}},
		{"inv empty", PoolInv{Round: 5, Pool: PoolIn}},
		{"drop", PoolDrop{Round: 5, Chunk: 1, Chunks: 3, Drops: drops}},
		{"drop none", PoolDrop{Round: 5, Chunks: 1}},
		{"drop ack", PoolDropAck{Round: 5, Chunk: 1, Dropped: 3, Orphans: 1}},
		{"drop ack failed", PoolDropAck{Round: 5, Chunk: 2, Status: PoolDropFailed, Msg: "pool closed"}},
	}...)
}

func encodeMsg(tb testing.TB, m any) []byte {
	tb.Helper()
	b, n, err := appendMsg(nil, m)
	if err != nil {
		tb.Fatalf("append %T: %v", m, err)
	}
	if n != len(b) {
		tb.Fatalf("%T: length method %d, encoded %d bytes", m, n, len(b))
	}
	return b
}

// checkMsg parses b as a message of kind k. Whatever b is, parsing must not
// panic, must fail only with a well-formed *Error, and must give a message
// that encodes back to b exactly, so that no two encodings mean the same.
func checkMsg(t *testing.T, k Kind, b []byte) {
	t.Helper()
	m, err := parseMsg(k, b)
	if err != nil {
		var fe *Error
		if !errors.As(err, &fe) {
			t.Fatalf("parse %v: error %T %v, want *Error", k, err, err)
		}
		wantType, kindOK := Type(0), fe.Kind == k
		if k == KindRouted {
			wantType, kindOK = TypeControl, fe.Kind == k || fe.Kind == 0 // 0: the CONTROL frame itself
		}
		if fe.Type != wantType || !kindOK || fe.Field == "" || fe.Reason == "" || fe.Offset < 0 || fe.Offset > len(b) {
			t.Fatalf("parse %v of %d bytes: bad error %#v", k, len(b), fe)
		}
		return
	}
	out, n, err := appendMsg(nil, m)
	if err != nil {
		t.Fatalf("parse %v gave %+v, which does not encode: %v", k, m, err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("parse %v then append:\n got %x\nwant %x", k, out, b)
	}
	if n != len(b) {
		t.Fatalf("%v: length method %d for %d bytes", k, n, len(b))
	}
}

// TestMessageSamples: every sample encodes, parses back to itself, and
// every truncation of it, a byte more, and another version are refused
// with an error naming a field.
func TestMessageSamples(t *testing.T) {
	for _, s := range sampleMessages() {
		k := kindOfMsg(s.msg)
		b := encodeMsg(t, s.msg)
		m, err := parseMsg(k, b)
		if err != nil || !sameMsg(m, s.msg) {
			t.Errorf("%s: parse = %+v, %v, want %+v", s.name, m, err, s.msg)
		}
		checkMsg(t, k, b)
		for i := range b {
			if _, err := parseMsg(k, b[:i]); err == nil {
				t.Errorf("%s cut to %d of %d bytes: accepted", s.name, i, len(b))
			}
			checkMsg(t, k, b[:i])
		}
		if _, err := parseMsg(k, append(slices.Clone(b), 0)); err == nil {
			t.Errorf("%s with a byte more: accepted", s.name)
		}
		if k == KindRouted {
			continue
		}
		v2 := slices.Clone(b)
		v2[0] = 2
		if _, err := parseMsg(k, v2); err == nil || !isField(err, "version") || !strings.Contains(err.Error(), "2, want 1") {
			t.Errorf("%s of version 2: %v, want a refusal naming the versions", s.name, err)
		}
	}
}

// TestMessageRefuses: values the formats do not define, each refused with
// an error that names the field and its offset.
func TestMessageRefuses(t *testing.T) {
	id := func(i byte) ringstore.KeyID { return ringstore.KeyID{0: i} }
	set := func(b []byte, off int, v ...byte) []byte {
		b = slices.Clone(b)
		copy(b[off:], v)
		return b
	}
	enc := func(m any) []byte { return encodeMsg(t, m) }
	hello := enc(PoolHello{Boot: 1})
	req := enc(PoolSyncReq{Round: 1, Boot: 2, Target: 3})
	ready := enc(PoolSyncReady{Round: 1})
	assign := enc(SAEAssign{Assignments: []SAEAssignment{{RequestID: 1, Master: "m", Slaves: []string{"s"}, Keys: []ringstore.KeyID{id(1)}}}})
	ack := enc(SAEAssignAck{Results: []SAEAssignResult{{RequestID: 1, OK: true}}})
	cancel := enc(SAEAssignCancel{Keys: []ringstore.KeyID{id(1)}})
	cancelAck := enc(SAEAssignCancelAck{First: id(1), Count: 3, Discarded: 2})
	stream := enc(KeyStream{Name: "s", Entries: []KeyStreamEntry{{1, id(1)}}})
	streamAck := enc(KeyStreamAck{Name: "s", Acks: []KeyStreamAckEntry{{Index: 1}}})
	routed := enc(Routed{HopLimit: 3, Kind: 20, Src: "a", Dst: "bb", Payload: []byte("xyz")})
	ctl := func(body ...byte) []byte { // a CONTROL frame of kind ROUTED with this body
		c := Control{Kind: KindRouted, Body: body}
		b, err := AppendControl(nil, &c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, c := range []struct {
		name  string
		kind  Kind
		b     []byte
		field string
		off   int
		msg   string
	}{
		// ROUTED (these bodies were relay's TestParseRouted cases)
		{"routed kind 1", KindRouted, ctl(3, 0, 1, 1, 'a', 1, 'b'), "inner kind", 11, "1, want 16 or more"},
		{"routed src length 0", KindRouted, ctl(3, 0, 20, 0), "src node ID length", 13, "0, want 1..64"},
		{"routed src length 65", KindRouted, ctl(3, 0, 20, 65), "src node ID length", 13, "65, want 1..64"},
		{"routed body of 3", KindRouted, ctl(routed[10:13]...), "src node ID length", 13, "frame ends at 13"},
		{"routed body of 5", KindRouted, ctl(routed[10:15]...), "dst node ID length", 15, "frame ends at 15"},
		{"routed empty body", KindRouted, ctl(), "src node ID length", 10, "frame ends at 10"},
		{"routed hop limit 0", KindRouted, set(routed, 10, 0), "hop limit", 10, "0, want 1..255"},
		{"routed dst too long", KindRouted, set(routed, 15, 9), "dst node ID length", 15, "9, but only 5 bytes are left"},
		{"routed bad src", KindRouted, set(routed, 14, '/'), "src node ID", 14, "want only [A-Za-z0-9._-]"},
		{"routed another kind", KindRouted, set(routed, 9, 16), "kind", 8, "16 (CONTROL_PLANE), want 2 (ROUTED)"},
		// SAE_ASSIGN, SAE_ASSIGN_ACK, SAE_ASSIGN_CANCEL
		{"assign count 0", KindSAEAssign, set(assign, 1, 0, 0), "count", 1, "0, want 1..65535"},
		{"assign count 3", KindSAEAssign, set(assign, 1, 0, 3), "count", 1, "3, but the 31 bytes after it hold at most 2 entries"},
		{"assign master empty", KindSAEAssign, set(assign, 11, 0), "entry 0 master SAE length", 11, "0, want 1..255"},
		{"assign slave empty", KindSAEAssign, set(assign, 14, 0), "entry 0 slave 0 length", 14, "0, want 1..255"},
		{"assign keys short", KindSAEAssign, set(assign, 16, 0, 2), "entry 0 key count", 16, "2, but only 16 bytes are left"},
		{"assign trailing", KindSAEAssign, set(assign, 16, 0, 0), "end", 18, "16 bytes after the last field"},
		{"ack count 0", KindSAEAssignAck, set(ack, 1, 0, 0), "count", 1, "0, want 1..65535"},
		{"ack status 2", KindSAEAssignAck, set(ack, 11, 2), "entry 0 status", 11, "2, want 0..1"},
		{"ack long message", KindSAEAssignAck, append(set(ack, 12, 0x04, 0x01), make([]byte, 1025)...), "entry 0 message length", 12, "1025, want 0..1024"},
		{"cancel count 0", KindSAEAssignCancel, set(cancel, 1, 0, 0), "count", 1, "0, want 1..2048"},
		{"cancel count 2049", KindSAEAssignCancel, set(cancel, 1, 0x08, 0x01), "count", 1, "2049, want 1..2048"},
		{"cancel count 2", KindSAEAssignCancel, set(cancel, 1, 0, 2), "count", 1, "2, but 16 bytes follow it, want 32"},
		{"cancel ack count 0", KindSAEAssignCancelAck, set(cancelAck, 17, 0, 0), "count", 17, "0, want 1..2048"},
		{"cancel ack status 2", KindSAEAssignCancelAck, set(cancelAck, 19, 2), "status", 19, "2, want 0..1"},
		{"cancel ack discarded 4 of 3", KindSAEAssignCancelAck, set(cancelAck, 20, 0, 4), "keys discarded", 20, "4, want 0..3 (the count)"},
		{"cancel ack long message", KindSAEAssignCancelAck, append(set(cancelAck, 22, 0x04, 0x01), make([]byte, 1025)...), "message length", 22, "1025, want 0..1024"},
		// KEY_STREAM, KEY_STREAM_ACK
		{"stream name empty", KindKeyStream, set(stream, 1, 0), "stream name length", 1, "0, want 1..255"},
		{"stream count 0", KindKeyStream, set(stream, 3, 0, 0), "count", 3, "0, want 1..1024"},
		{"stream count 1025", KindKeyStream, set(stream, 3, 0x04, 0x01), "count", 3, "1025, want 1..1024"},
		{"stream count 2", KindKeyStream, set(stream, 3, 0, 2), "count", 3, "2, but 24 bytes follow it, want 48"},
		{"stream ack count 1025", KindKeyStreamAck, set(streamAck, 3, 0x04, 0x01), "count", 3, "1025, want 1..1024"},
		{"stream ack status 4", KindKeyStreamAck, set(streamAck, 13, 4), "entry 0 status", 13, "4, want 0..3"},
		{"stream ack long message", KindKeyStreamAck, append(set(streamAck, 14, 0x01, 0x01), make([]byte, 257)...), "entry 0 message length", 14, "257, want 0..256"},
		// POOL_* (node/pool_sync_test.go's TestPoolSyncParseRefuses cases)
		{"hello boot 0", KindPoolHello, set(hello, 1, 0, 0, 0, 0, 0, 0, 0, 0), "boot ID", 1, "0, want a nonzero ID"},
		{"hello restarted flag", KindPoolHello, set(hello, 9, poolFlagRestarted), "flags", 9, "undefined bits 0x02"},
		{"req round 0", KindPoolSyncReq, set(req, 1, 0, 0, 0, 0, 0, 0, 0, 0), "round ID", 1, "0, want a nonzero ID"},
		{"req target 0", KindPoolSyncReq, set(req, 17, 0, 0, 0, 0, 0, 0, 0, 0), "target boot ID", 17, "0, want a nonzero ID"},
		{"req flag bit 7", KindPoolSyncReq, set(req, 25, 0x80), "flags", 25, "undefined bits 0x80"},
		{"ready status 3", KindPoolSyncReady, set(ready, 9, 3), "status", 9, "3, want 0..2"},
		{"ready refused with counts", KindPoolSyncReady, set(ready, 9, PoolReadyRefused, 0, 0, 0, 0, 1), "out pool keys", 11, "status 1 with key counts 1 and 0"},
		{"ready ok with a message", KindPoolSyncReady, append(set(ready, 19, 0, 1), 'x'), "message length", 19, "status 0 with a message"},
		{"ready long message", KindPoolSyncReady, append(set(ready, 9, PoolReadyFailed, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1), make([]byte, 257)...), "message length", 19, "257, want 0..256"},
		{"inv_req pool 2", KindPoolInvReq, set(enc(PoolInvReq{Round: 1}), 9, 2), "pool", 9, "2, want 0..1"},
		{"inv unsorted", KindPoolInv, set(enc(PoolInv{Round: 1, Keys: []ringstore.KeyState{{ID: id(1)}, {ID: id(2)}}}), 16, 3), "key 1 ID", 33, "does not follow key 0"},
		{"inv twice", KindPoolInv, set(enc(PoolInv{Round: 1, Keys: []ringstore.KeyState{{ID: id(1)}, {ID: id(2)}}}), 33, 1), "key 1 ID", 33, "does not follow key 0"},
		{"inv state 2", KindPoolInv, set(enc(PoolInv{Round: 1, Keys: []ringstore.KeyState{{ID: id(2)}}}), 32, 2), "key 0 state", 32, "2, want 0..1"},
		{"inv count 2049", KindPoolInv, set(enc(PoolInv{Round: 1}), 14, 0x08, 0x01), "count", 14, "2049, want 0..2048"},
		{"drop chunk 1 of 1", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1}), 9, 0, 0, 0, 1), "chunk", 9, "chunk 1 of 1"},
		{"drop no chunks", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1}), 13, 0, 0, 0, 0), "chunk", 9, "chunk 0 of 0"},
		{"drop reason 0", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1, Drops: []PoolDropKey{{ID: id(1), Reason: PoolDropMissing}}}), 37, 0), "key 0 reason", 37, "0 (unknown) does not apply"},
		{"drop reason 6", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1, Drops: []PoolDropKey{{ID: id(1), Reason: PoolDropMissing}}}), 37, 6), "key 0 reason", 37, "6, want 0..5"},
		{"drop missing at in", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1, Drops: []PoolDropKey{{ID: id(1), Reason: PoolDropMissing}}}), 35, 1), "key 0 reason", 37, "1 (missing_at_other_end) does not apply to a key free in the in pool"},
		{"drop unconfirmed assigned", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1, Drops: []PoolDropKey{{ID: id(1), In: true, Reason: PoolDropUnconfirmed}}}), 36, 1), "key 0 reason", 37, "does not apply to a key assigned in the in pool"},
		{"drop reserved free at out", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1, Drops: []PoolDropKey{{ID: id(1), Reason: PoolDropMissing}}}), 37, 3), "key 0 reason", 37, "3 (reservation_lost)"},
		{"drop orphan at out", KindPoolDrop, set(enc(PoolDrop{Round: 1, Chunks: 1, Drops: []PoolDropKey{{ID: id(1), Assigned: true, Reason: PoolDropMissing}}}), 37, 5), "key 0 reason", 37, "5 (orphan)"},
		{"drop_ack status 2", KindPoolDropAck, set(enc(PoolDropAck{Round: 1}), 13, 2), "status", 13, "2, want 0..1"},
	} {
		_, err := parseMsg(c.kind, c.b)
		var fe *Error
		if !errors.As(err, &fe) || fe.Field != c.field || fe.Offset != c.off || !strings.Contains(fe.Reason, c.msg) {
			t.Errorf("%s: %v, want field %q at offset %d, reason containing %q", c.name, err, c.field, c.off, c.msg)
		}
	}
}

// TestMessageCuts: the Append functions cut a message text that is too
// long, as the node's encoders did, and the result parses.
func TestMessageCuts(t *testing.T) {
	long := strings.Repeat("z", 5000)
	for _, c := range []struct {
		m    any
		keep int
	}{
		{SAEAssignAck{Results: []SAEAssignResult{{RequestID: 1, Msg: long}}}, MaxSAEAssignAckMsg},
		{KeyStreamAck{Name: "s", Acks: []KeyStreamAckEntry{{Index: 1, Status: KeyStreamKeyRefused, Msg: long}}}, MaxKeyStreamAckMsg},
		{PoolSyncReady{Round: 1, Status: PoolReadyFailed, Msg: long}, MaxPoolSyncMsg},
		{PoolDropAck{Round: 1, Status: PoolDropFailed, Msg: long}, MaxPoolSyncMsg},
		{SAEAssignCancelAck{Count: 1, Status: SAECancelRefused, Msg: long}, MaxSAEAssignAckMsg},
	} {
		b := encodeMsg(t, c.m)
		if !bytes.HasSuffix(b, []byte{byte(c.keep >> 8), byte(c.keep), 'z'}) && !bytes.HasSuffix(b, []byte(long[:c.keep])) {
			t.Errorf("%T: message not cut to %d bytes: %x", c.m, c.keep, b)
		}
		if bytes.Contains(b, []byte(long[:c.keep+1])) {
			t.Errorf("%T: message longer than %d bytes", c.m, c.keep)
		}
		checkMsg(t, kindOfMsg(c.m), b)
	}
}

// TestMessageAppendRejects: what a message cannot carry is an error, not
// bytes the receiver would misread.
func TestMessageAppendRejects(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, c := range []struct {
		name  string
		m     any
		field string
	}{
		{"routed hop limit 0", Routed{Kind: KindSAEAssign, Src: "a", Dst: "b"}, "hop limit"},
		{"routed kind 2", Routed{HopLimit: 1, Kind: KindRouted, Src: "a", Dst: "b"}, "inner kind"},
		{"routed no dst", Routed{HopLimit: 1, Kind: KindSAEAssign, Src: "a"}, "dst node ID"},
		{"routed bad src", Routed{HopLimit: 1, Kind: KindSAEAssign, Src: "a b", Dst: "b"}, "src node ID"},
		{"routed too big", Routed{HopLimit: 1, Kind: KindSAEAssign, Src: "a", Dst: "b", Payload: make([]byte, MaxFrameLen)}, "payload"},
		{"assign none", SAEAssign{}, "count"},
		{"assign no master", SAEAssign{Assignments: []SAEAssignment{{}}}, "entry 0 master SAE length"},
		{"assign long master", SAEAssign{Assignments: []SAEAssignment{{Master: long}}}, "entry 0 master SAE length"},
		{"assign empty slave", SAEAssign{Assignments: []SAEAssignment{{Master: "m", Slaves: []string{"s", ""}}}}, "entry 0 slave 1 length"},
		{"assign 256 slaves", SAEAssign{Assignments: []SAEAssignment{{Master: "m", Slaves: make([]string, 256)}}}, "entry 0 slave count"},
		{"assign 65536 keys", SAEAssign{Assignments: []SAEAssignment{{Master: "m", Keys: make([]ringstore.KeyID, 65536)}}}, "entry 0 key count"},
		{"ack none", SAEAssignAck{}, "count"},
		{"cancel none", SAEAssignCancel{}, "count"},
		{"cancel 2049", SAEAssignCancel{Keys: make([]ringstore.KeyID, 2049)}, "count"},
		{"cancel ack count 0", SAEAssignCancelAck{}, "count"},
		{"cancel ack status 2", SAEAssignCancelAck{Count: 1, Status: 2}, "status"},
		{"cancel ack discarded above count", SAEAssignCancelAck{Count: 1, Discarded: 2}, "keys discarded"},
		{"stream no name", KeyStream{Entries: make([]KeyStreamEntry, 1)}, "stream name length"},
		{"stream long name", KeyStream{Name: long, Entries: make([]KeyStreamEntry, 1)}, "stream name length"},
		{"stream none", KeyStream{Name: "s"}, "count"},
		{"stream 1025", KeyStream{Name: "s", Entries: make([]KeyStreamEntry, 1025)}, "count"},
		{"stream ack status 4", KeyStreamAck{Name: "s", Acks: []KeyStreamAckEntry{{}, {Status: 4}}}, "entry 1 status"},
		{"hello boot 0", PoolHello{}, "boot ID"},
		{"req target 0", PoolSyncReq{Round: 1, Boot: 1}, "target boot ID"},
		{"ready status 3", PoolSyncReady{Round: 1, Status: 3}, "status"},
		{"ready ok with message", PoolSyncReady{Round: 1, Msg: "x"}, "message length"},
		{"ready failed with counts", PoolSyncReady{Round: 1, Status: PoolReadyFailed, InKeys: 1}, "out pool keys"},
		{"inv req pool 2", PoolInvReq{Round: 1, Pool: 2}, "pool"},
		{"inv round 0", PoolInv{}, "round ID"},
		{"inv 2049", PoolInv{Round: 1, Keys: make([]ringstore.KeyState, 2049)}, "count"},
		{"inv twice", PoolInv{Round: 1, Keys: make([]ringstore.KeyState, 2)}, "key 1 ID"},
		{"drop chunk 0 of 0", PoolDrop{Round: 1}, "chunk"},
		{"drop 2049", PoolDrop{Round: 1, Chunks: 1, Drops: make([]PoolDropKey, 2049)}, "count"},
		{"drop reason 0", PoolDrop{Round: 1, Chunks: 1, Drops: make([]PoolDropKey, 1)}, "key 0 reason"},
		{"drop ack status 2", PoolDropAck{Round: 1, Status: 2}, "status"},
	} {
		b, _, err := appendMsg([]byte("keep"), c.m)
		if !isField(err, c.field) || string(b) != "keep" {
			t.Errorf("%s: %v (dst %q), want an error naming field %q and dst unchanged", c.name, err, b, c.field)
		}
	}
}

// TestMessageAliases: a parsed ROUTED payload aliases the frame, nothing
// else a parsed message holds does.
func TestMessageAliases(t *testing.T) {
	b := encodeMsg(t, goldenMessages[0].msg)
	r, err := ParseRouted(b)
	if err != nil {
		t.Fatal(err)
	}
	if &r.Payload[0] != &b[len(b)-len(r.Payload)] || cap(r.Payload) != len(r.Payload) {
		t.Error("ROUTED payload does not alias the frame, or may grow into it")
	}
	for _, s := range sampleMessages()[1:] {
		k := kindOfMsg(s.msg)
		if k == KindRouted {
			continue
		}
		b := encodeMsg(t, s.msg)
		m, err := parseMsg(k, b)
		if err != nil {
			t.Fatal(err)
		}
		clear(b)
		if !sameMsg(m, s.msg) {
			t.Errorf("%s: parsed message changed with the bytes it came from", s.name)
		}
	}
}

// TestNodeLimits: the bounds that are ringstore's too.
func TestNodeLimits(t *testing.T) {
	if MaxSAEAssignCancelKeys != ringstore.MaxBatch || MaxPoolChunk != ringstore.MaxBatch {
		t.Errorf("MaxSAEAssignCancelKeys %d, MaxPoolChunk %d, want ringstore.MaxBatch %d", MaxSAEAssignCancelKeys, MaxPoolChunk, ringstore.MaxBatch)
	}
}

func TestKinds(t *testing.T) {
	for k, name := range kindNames {
		if k.String() != name {
			t.Errorf("Kind(%d).String() = %q, want %q", uint16(k), k.String(), name)
		}
		if got, want := k.Routed(), k >= 32; got != want {
			t.Errorf("%v.Routed() = %v, want %v", k, got, want)
		}
	}
	if s := Kind(99).String(); s != "Kind(99)" {
		t.Errorf("Kind(99).String() = %q", s)
	}
	for k := KindSAEAssign; k <= KindSAEAssignCancelAck; k++ {
		if _, ok := kindNames[k]; !ok {
			t.Errorf("routed kind %d has no name", uint16(k))
		}
	}
	e := &Error{Kind: KindSAEAssign, Field: "count", Offset: 1, Reason: "0, want 1..65535"}
	if got, want := e.Error(), `frame: SAE_ASSIGN message field "count" at offset 1: 0, want 1..65535`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e = &Error{Type: TypeControl, Kind: KindRouted, Field: "hop limit", Offset: 10, Reason: "0, want 1..255"}
	if got, want := e.Error(), `frame: CONTROL ROUTED field "hop limit" at offset 10: 0, want 1..255`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
