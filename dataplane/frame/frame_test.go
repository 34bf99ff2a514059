package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

// ids of the maximum length, one per position, with every allowed character.
var (
	maxSrc = strings.Repeat("Az09._-", 10)[:MaxNodeIDLen]
	maxDst = strings.Repeat("-_.90zA", 10)[:MaxNodeIDLen]
)

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

type namedFrame struct {
	name  string
	frame any
}

// boundaryFrames returns frames at the edges of what each type allows; with
// big false, only the small ones (under 2 KiB each).
func boundaryFrames(big bool) []namedFrame {
	maxReason := strings.Repeat("é", MaxReason/2) // 2 bytes each
	small := []namedFrame{
		{"relay min", Relay{Count: 1, KeySize: 1, HopLimit: 1, Src: "a", Dst: "b", Payload: []byte{0}}},
		{"completion min", Completion{Status: StatusOK, Count: 1, Src: "a", Dst: "b"}},
		{"completion max", Completion{Status: StatusInternal, Count: MaxKeys, Flow: math.MaxUint64, FirstSeq: math.MaxUint64, Src: maxSrc, Dst: maxDst, Reason: maxReason}},
		{"completion replay", Completion{Status: StatusReplay, Count: 5, Flow: 1, FirstSeq: 2, Src: "a.b", Dst: "c_d", Reason: "pad position 4096 already consumed"}},
		{"assign min", Assign{Blocks: []AssignBlock{{ID: "x", Size: 1}}}},
		{"assign at the end", Assign{Seq: 2, PadPos: math.MaxUint64 - 1, Dir: DirSlaveToMaster, Blocks: []AssignBlock{{ID: "x", Size: 1}}}},
		{"assign binary ID", Assign{Seq: 1, Blocks: []AssignBlock{{ID: "\x00\xff\n", Size: 32}, {ID: "7b1e2c3d-0000-4000-8000-000000000001", Size: 4096}}}},
		{"ack ok", AssignAck{OK: true}},
		{"ack failed max", AssignAck{Seq: math.MaxUint64, Reason: maxReason}},
		{"discard min", Discard{Count: 1, Src: "a", Dst: "b"}},
		{"discard max", Discard{Count: MaxKeys, Flow: math.MaxUint64, FirstSeq: math.MaxUint64, Src: maxSrc, Dst: maxDst}},
		{"control empty", Control{}},
		{"sync zero", Sync{}},
		{"sync fresh", Sync{Fresh: true}},
		{"sync equal", Sync{Used: [2]uint64{7, math.MaxUint64}, Head: [2]uint64{7, math.MaxUint64}}},
		{"sync max", Sync{Used: [2]uint64{math.MaxUint64 - 1, 0}, Head: [2]uint64{math.MaxUint64, math.MaxUint64}}},
		{"sync agree zero", SyncAgree{}},
		{"sync agree equal", SyncAgree{From: [2]uint64{5_000_000, 9}, To: [2]uint64{5_000_000, 9}}},
		{"sync agree max", SyncAgree{From: [2]uint64{0, math.MaxUint64 - 1}, To: [2]uint64{math.MaxUint64, math.MaxUint64}}},
	}
	if !big {
		return small
	}
	var maxBlocks []AssignBlock
	for i := range MaxAssignBlocks {
		id := strings.Repeat(string(rune('a'+i%26)), MaxBlockIDLen)
		maxBlocks = append(maxBlocks, AssignBlock{ID: id, Size: MaxBlockSize})
	}
	return append(small, []namedFrame{
		{"relay max", Relay{
			Flags: FlagQKDKey, Flow: math.MaxUint64, FirstSeq: math.MaxUint64,
			PadPos: math.MaxUint64 - (MaxPayload + PadKeyLen), Count: MaxKeys, KeySize: MaxPayload / MaxKeys,
			HopLimit: math.MaxUint8, Src: maxSrc, Dst: maxDst, Payload: seq(MaxPayload),
			Tag: [TagLen]byte{15: 0xff},
		}},
		{"relay one big key", Relay{Count: 1, KeySize: math.MaxUint16, HopLimit: 3, Src: "x", Dst: "y", Payload: seq(math.MaxUint16)}},
		{"relay 2048x32", Relay{Flow: 9, FirstSeq: 1 << 40, PadPos: 1 << 50, Count: 2048, KeySize: 32, HopLimit: 16, Src: "node-1", Dst: "node-2", Payload: seq(2048 * 32)}},
		{"assign max", Assign{Seq: math.MaxUint64, PadPos: math.MaxUint64 - MaxAssignBlocks*MaxBlockSize, Dir: DirSlaveToMaster, Blocks: maxBlocks}},
		{"control max", Control{Kind: math.MaxUint16, Body: seq(MaxFrameLen - controlOffBody)}},
	}...)
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range boundaryFrames(true) {
		t.Run(tc.name, func(t *testing.T) {
			typ := typeOf(tc.frame)
			b, err := appendAny([]byte("junk"), tc.frame)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if string(b[:4]) != "junk" {
				t.Fatal("append overwrote dst")
			}
			b = b[4:]
			if len(b) != frameLen(tc.frame) {
				t.Fatalf("len %d, FrameLen() %d", len(b), frameLen(tc.frame))
			}
			if len(b) > MaxFrameLen {
				t.Fatalf("len %d > MaxFrameLen", len(b))
			}
			p, err := ParsePrefix(b)
			if err != nil {
				t.Fatalf("ParsePrefix: %v", err)
			}
			if p.Type != typ || p.FrameLen() != len(b) {
				t.Fatalf("prefix %+v for a %d-byte %v", p, len(b), typ)
			}
			got, err := parseAny(typ, b)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !sameFrame(got, tc.frame) {
				t.Fatalf("parse gave a different frame")
			}
			again, err := appendAny(nil, got)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-append differs (%v)", err)
			}
			// Every truncation and one trailing byte are rejected with the
			// length named.
			step := 1 + len(b)/512
			for i := 0; i < len(b); i += step {
				if _, err := parseAny(typ, b[:i]); !isField(err, "prefix") && !isField(err, "length") {
					t.Fatalf("parse of %d of %d bytes: %v, want a prefix or length error", i, len(b), err)
				}
			}
			if _, err := parseAny(typ, append(b[:len(b):len(b)], 0)); !isField(err, "length") {
				t.Fatalf("parse with a trailing byte: %v, want a length error", err)
			}
		})
	}
}

func isField(err error, field string) bool {
	var fe *Error
	return errors.As(err, &fe) && fe.Field == field
}

func TestRelayHeader(t *testing.T) {
	for _, tc := range boundaryFrames(true) {
		r, ok := tc.frame.(Relay)
		if !ok {
			continue
		}
		full, err := AppendRelay(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		r.Payload = nil // AppendRelayHeader must not look at it
		h, err := AppendRelayHeader(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != r.HeaderLen() || !bytes.Equal(h, full[:r.HeaderLen()]) {
			t.Errorf("%s: header %x, want %x", tc.name, h, full[:r.HeaderLen()])
		}
		if r.AuthLen() != len(full)-TagLen || r.PadLen() != r.PayloadLen()+32 {
			t.Errorf("%s: AuthLen %d PadLen %d for a %d-byte frame", tc.name, r.AuthLen(), r.PadLen(), len(full))
		}
	}
}

// relayGolden returns a fresh copy of the golden RELAY frame.
func goldenBytes(tb testing.TB, name string) []byte {
	for _, g := range golden {
		if g.name == name {
			return unhexDump(tb, g.dump)
		}
	}
	tb.Fatalf("no golden %s", name)
	return nil
}

func TestParseRejects(t *testing.T) {
	put16 := func(off int, v uint16) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
	}
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
	}
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
	}
	set := func(off int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[off] = v; return b }
	}
	// both applies two edits.
	both := func(f, g func([]byte) []byte) func([]byte) []byte {
		return func(b []byte) []byte { return g(f(b)) }
	}
	tests := []struct {
		golden string
		edit   func([]byte) []byte
		typ    Type
		field  string
		off    int
		reason string
	}{
		// Prefix, on every type.
		{"RELAY", func(b []byte) []byte { return b[:5] }, TypeRelay, "prefix", 5, "5 bytes, want 8"},
		{"RELAY", set(0, 1), TypeRelay, "version", 0, "1, want 2 (this node supports frame version 2 only)"},
		{"RELAY", set(0, 0), TypeRelay, "version", 0, "0, want 2"},
		{"ASSIGN", set(0, 3), TypeAssign, "version", 0, "3, want 2"},
		{"RELAY", set(1, 0), TypeRelay, "type", 1, "0, want 1..8"},
		{"RELAY", set(1, 9), TypeRelay, "type", 1, "9, want 1..8"},
		{"SYNC", set(1, 6), TypeSync, "type", 1, "CONTROL, want SYNC"},
		{"SYNC", set(1, 8), TypeSync, "type", 1, "SYNC_AGREE, want SYNC"},
		{"SYNC_AGREE", set(1, 7), TypeSyncAgree, "type", 1, "SYNC, want SYNC_AGREE"},
		{"RELAY", set(1, 2), TypeRelay, "type", 1, "COMPLETION, want RELAY"},
		{"CONTROL", set(1, 1), TypeControl, "type", 1, "RELAY, want CONTROL"},
		{"RELAY", put16(2, 2), TypeRelay, "flags", 2, "0x0002, want only bits 0x0001"},
		{"RELAY", put16(2, 0x8001), TypeRelay, "flags", 2, "0x8001, want only bits 0x0001"},
		{"COMPLETION", put16(2, 1), TypeCompletion, "flags", 2, "0x0001, want 0 (no flags defined)"},
		{"ASSIGN", put16(2, 1), TypeAssign, "flags", 2, "want 0"},
		{"ASSIGN_ACK", put16(2, 0x100), TypeAssignAck, "flags", 2, "want 0"},
		{"DISCARD", put16(2, 4), TypeDiscard, "flags", 2, "want 0"},
		{"CONTROL", put16(2, 1), TypeControl, "flags", 2, "want 0"},
		{"SYNC", put16(2, 1), TypeSync, "", 0, ""}, // FRESH
		{"SYNC", put16(2, 2), TypeSync, "flags", 2, "0x0002, want only bits 0x0001"},
		{"SYNC_AGREE", put16(2, 0x8000), TypeSyncAgree, "flags", 2, "0x8000, want 0 (no flags defined)"},
		{"RELAY", put32(4, 73), TypeRelay, "length", 4, "73, but only 72 bytes follow the prefix (truncated frame)"},
		{"RELAY", put32(4, 71), TypeRelay, "length", 4, "71, but 72 bytes follow the prefix (trailing bytes)"},
		{"RELAY", put32(4, 58), TypeRelay, "length", 4, "58, want 59..8388792"},
		{"RELAY", put32(4, MaxFrameLen), TypeRelay, "length", 4, "want 59..8388792"},
		{"DISCARD", put32(4, 1<<20), TypeDiscard, "length", 4, "1048576, want 24..150"},
		{"CONTROL", put32(4, 1), TypeControl, "length", 4, "1, want 2..8392696"},
		{"CONTROL", put32(4, math.MaxUint32), TypeControl, "length", 4, "4294967295, want 2..8392696"},
		{"SYNC", put32(4, 31), TypeSync, "length", 4, "31, want 32"},
		{"SYNC", put32(4, 33), TypeSync, "length", 4, "33, want 32"},
		{"SYNC", put32(4, 0), TypeSync, "length", 4, "0, want 32"},
		{"SYNC_AGREE", put32(4, 24), TypeSyncAgree, "length", 4, "24, want 32"},
		{"SYNC_AGREE", put32(4, 33), TypeSyncAgree, "length", 4, "33, want 32"},

		// RELAY body.
		{"RELAY", put32(32, 0), TypeRelay, "key count", 32, "0, want 1..2048"},
		{"RELAY", put32(32, 2049), TypeRelay, "key count", 32, "2049, want 1..2048"},
		{"RELAY", put16(36, 0), TypeRelay, "key size", 36, "0, want 1..65535"},
		{"RELAY", set(38, 0), TypeRelay, "hop limit", 38, "0, want 1..255"},
		{"RELAY", set(39, 1), TypeRelay, "reserved", 39, "0x1, want 0 (reserved)"},
		{"RELAY", put32(40, 0), TypeRelay, "payload length", 40, "0, want 1..8388608"},
		{"RELAY", put32(40, MaxPayload+1), TypeRelay, "payload length", 40, "8388609, want 1..8388608"},
		{"RELAY", put32(40, 9), TypeRelay, "payload length", 40, "9, want key count × key size = 2 × 4 = 8"},
		{"RELAY", both(put32(32, 1), put16(36, 8)), TypeRelay, "", 0, ""}, // 1×8 = 8 is fine
		{"RELAY", put16(36, 3), TypeRelay, "payload length", 40, "8, want key count × key size = 2 × 3 = 6"},
		{"RELAY", set(44, 0), TypeRelay, "src node ID length", 44, "0, want 1..64"},
		{"RELAY", set(44, 65), TypeRelay, "src node ID length", 44, "65, want 1..64"},
		{"RELAY", set(45, 0), TypeRelay, "dst node ID length", 45, "0, want 1..64"},
		{"RELAY", set(46, 1), TypeRelay, "reserved", 46, "0x100, want 0 (reserved)"},
		{"RELAY", set(47, 1), TypeRelay, "reserved", 46, "0x1, want 0 (reserved)"},
		{"RELAY", set(44, 4), TypeRelay, "length", 4, "72, want 40 + src 4 + dst 3 + payload 8 + tag 16 = 71"},
		{"RELAY", put32(24, math.MaxUint32), TypeRelay, "", 0, ""},
		{"RELAY", both(put32(24, math.MaxUint32), put32(28, math.MaxUint32-39)), TypeRelay, "pad offset", 24, "18446744073709551576, want at most 18446744073709551575 so that the frame's 40 pad bytes end before 2^64"},
		{"RELAY", both(put32(24, math.MaxUint32), put32(28, math.MaxUint32-40)), TypeRelay, "", 0, ""},
		{"RELAY", set(48, ' '), TypeRelay, "src node ID", 48, `" lice" has byte ' ' at index 0, want only [A-Za-z0-9._-]`},
		{"RELAY", set(52, '/'), TypeRelay, "src node ID", 52, `"alic/" has byte '/' at index 4`},
		{"RELAY", set(55, 0xff), TypeRelay, "dst node ID", 55, `"bo\xff" has byte 0xff at index 2`},

		// COMPLETION body.
		{"COMPLETION", set(8, 0), TypeCompletion, "status", 8, "0, want 1..8"},
		{"COMPLETION", set(8, 9), TypeCompletion, "status", 8, "9, want 1..8"},
		{"COMPLETION", set(9, 1), TypeCompletion, "reserved", 9, "0x1, want 0"},
		{"COMPLETION", put16(10, MaxReason+1), TypeCompletion, "reason length", 10, "1025, want 0..1024"},
		{"COMPLETION", put16(10, 8), TypeCompletion, "length", 4, "43, want 26 + src 5 + dst 3 + reason 8 = 42"},
		{"COMPLETION", put32(12, 0), TypeCompletion, "key count", 12, "0, want 1..2048"},
		{"COMPLETION", set(32, 65), TypeCompletion, "src node ID length", 32, "65, want 1..64"},
		{"COMPLETION", set(33, 0), TypeCompletion, "dst node ID length", 33, "0, want 1..64"},
		{"COMPLETION", set(39, '+'), TypeCompletion, "dst node ID", 39, `"+ob" has byte '+' at index 0`},
		{"COMPLETION", set(45, 0xc3), TypeCompletion, "reason", 45, "invalid UTF-8 at index 3, want UTF-8 text"},

		// ASSIGN body. The golden frame's blocks are 1024 + 16 MiB bytes.
		{"ASSIGN", put64(16, 0), TypeAssign, "", 0, ""},
		{"ASSIGN", put64(16, math.MaxUint64-1024-MaxBlockSize), TypeAssign, "", 0, ""},
		{"ASSIGN", put64(16, math.MaxUint64-1024-MaxBlockSize+1), TypeAssign, "pad position", 16, "18446744073692773376, want at most 18446744073692773375 so that the blocks' 16778240 bytes end before 2^64"},
		{"ASSIGN", put64(16, math.MaxUint64), TypeAssign, "pad position", 16, "18446744073709551615, want at most 18446744073692773375"},
		{"ASSIGN", set(24, 2), TypeAssign, "dir", 24, "2, want 0 (MASTER_TO_SLAVE) or 1 (SLAVE_TO_MASTER)"},
		{"ASSIGN", set(25, 1), TypeAssign, "reserved", 25, "0x1, want 0"},
		{"ASSIGN", put16(26, 0), TypeAssign, "block count", 26, "0, want 1..4096"},
		{"ASSIGN", put16(26, 4097), TypeAssign, "block count", 26, "4097, want 1..4096"},
		{"ASSIGN", put16(26, 6), TypeAssign, "block count", 26, "6, but the 19 bytes after it hold at most 3 blocks"},
		{"ASSIGN", put16(26, 3), TypeAssign, "block 2 ID length", 47, "frame ends before block 2 of 3"},
		{"ASSIGN", put16(26, 1), TypeAssign, "length", 4, "39, but the 1 blocks end 12 bytes before the frame does (trailing bytes)"},
		{"ASSIGN", set(28, 0), TypeAssign, "block 0 ID length", 28, "0, want 1..255"},
		{"ASSIGN", set(35, 200), TypeAssign, "block 1 ID length", 35, "200, but only 11 bytes are left for the ID and the size"},
		{"ASSIGN", put32(31, 0), TypeAssign, "block 0 size", 31, "0, want 1..16777216"},
		{"ASSIGN", put32(43, MaxBlockSize+1), TypeAssign, "block 1 size", 43, "16777217, want 1..16777216"},
		{"ASSIGN", both(put64(16, math.MaxUint64), put32(43, MaxBlockSize+1)), TypeAssign, "block 1 size", 43, "16777217"}, // sizes first

		// SYNC body: used ≤ head in each direction.
		{"SYNC", put64(8, 0x180000), TypeSync, "", 0, ""},
		{"SYNC", put64(8, 0x180001), TypeSync, "MASTER_TO_SLAVE used", 8, "1572865, want at most the MASTER_TO_SLAVE head, 1572864"},
		{"SYNC", put64(16, 0xfffff), TypeSync, "MASTER_TO_SLAVE used", 8, "1048576, want at most the MASTER_TO_SLAVE head, 1048575"},
		{"SYNC", put64(24, 0x80000), TypeSync, "", 0, ""},
		{"SYNC", put64(24, math.MaxUint64), TypeSync, "SLAVE_TO_MASTER used", 24, "18446744073709551615, want at most the SLAVE_TO_MASTER head, 524288"},
		{"SYNC", put64(32, 0), TypeSync, "SLAVE_TO_MASTER used", 24, "262144, want at most the SLAVE_TO_MASTER head, 0"},
		{"SYNC", both(put64(8, math.MaxUint64), put64(16, math.MaxUint64)), TypeSync, "", 0, ""},

		// SYNC_AGREE body: from ≤ to in each direction.
		{"SYNC_AGREE", put64(8, 0x180000), TypeSyncAgree, "", 0, ""},
		{"SYNC_AGREE", put64(8, 0x180001), TypeSyncAgree, "MASTER_TO_SLAVE from", 8, "1572865, want at most the MASTER_TO_SLAVE to, 1572864"},
		{"SYNC_AGREE", put64(16, 0), TypeSyncAgree, "MASTER_TO_SLAVE from", 8, "1048576, want at most the MASTER_TO_SLAVE to, 0"},
		{"SYNC_AGREE", put64(24, 0x80001), TypeSyncAgree, "SLAVE_TO_MASTER from", 24, "524289, want at most the SLAVE_TO_MASTER to, 524288"},
		{"SYNC_AGREE", put64(32, 0x3ffff), TypeSyncAgree, "SLAVE_TO_MASTER from", 24, "262144, want at most the SLAVE_TO_MASTER to, 262143"},
		{"SYNC_AGREE", both(put64(16, 0), put64(32, 0)), TypeSyncAgree, "MASTER_TO_SLAVE from", 8, "want at most"}, // the first direction first

		// ASSIGN_ACK body.
		{"ASSIGN_ACK", set(16, 2), TypeAssignAck, "status", 16, "2, want 0 (OK) or 1 (Failed)"},
		{"ASSIGN_ACK", set(17, 0x80), TypeAssignAck, "reserved", 17, "0x80, want 0"},
		{"ASSIGN_ACK", put16(18, 1025), TypeAssignAck, "reason length", 18, "1025, want 0..1024"},
		{"ASSIGN_ACK", put16(18, 12), TypeAssignAck, "length", 4, "25, want 12 + reason 12 = 24"},
		{"ASSIGN_ACK", set(32, 0xfe), TypeAssignAck, "reason", 32, "invalid UTF-8 at index 12"},

		// DISCARD body.
		{"DISCARD", put32(8, 0), TypeDiscard, "key count", 8, "0, want 1..2048"},
		{"DISCARD", put32(8, MaxKeys+1), TypeDiscard, "key count", 8, "2049, want 1..2048"},
		{"DISCARD", set(28, 0), TypeDiscard, "src node ID length", 28, "0, want 1..64"},
		{"DISCARD", set(29, 200), TypeDiscard, "dst node ID length", 29, "200, want 1..64"},
		{"DISCARD", set(29, 2), TypeDiscard, "length", 4, "30, want 22 + src 5 + dst 2 = 29"},
		{"DISCARD", set(30, 'a'-1), TypeDiscard, "src node ID", 30, "has byte '`' at index 0"},
	}
	for _, tc := range tests {
		b := tc.edit(goldenBytes(t, tc.golden))
		_, err := parseAny(Type(goldenType(t, tc.golden)), b)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s %x: %v, want no error", tc.golden, b, err)
			}
			continue
		}
		var fe *Error
		if !errors.As(err, &fe) {
			t.Errorf("%s %x: error %v, want *Error for field %q", tc.golden, b, err, tc.field)
			continue
		}
		if fe.Type != tc.typ || fe.Field != tc.field || fe.Offset != tc.off || !strings.Contains(fe.Reason, tc.reason) {
			t.Errorf("%s %x:\n got %v\nwant %s field %q at offset %d: ...%s...", tc.golden, b, err, tc.typ, tc.field, tc.off, tc.reason)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "frame: "+tc.typ.String()+" field \""+tc.field+"\" at offset ") {
			t.Errorf("message %q does not name the type, field and offset", msg)
		}
	}
}

func goldenType(tb testing.TB, name string) Type {
	for _, g := range golden {
		if g.name == name {
			return typeOf(g.frame)
		}
	}
	tb.Fatalf("no golden %s", name)
	return 0
}

func TestParsePrefixErrors(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{nil, `frame: field "prefix" at offset 0: 0 bytes, want 8`},
		{[]byte{1, 1, 0, 0, 0, 0}, `frame: field "prefix" at offset 6: 6 bytes, want 8`},
		{[]byte{1, 1, 0, 0, 0, 0, 0, 59}, `frame: field "version" at offset 0: 1, want 2 (this node supports frame version 2 only)`},
		{[]byte{2, 9, 0, 0, 0, 0, 0, 59}, `frame: field "type" at offset 1: 9, want 1..8 (RELAY, COMPLETION, ASSIGN, ASSIGN_ACK, DISCARD, CONTROL, SYNC, SYNC_AGREE)`},
		{[]byte{2, 1, 0, 2, 0, 0, 0, 59}, `frame: RELAY field "flags" at offset 2: 0x0002, want only bits 0x0001`},
		{[]byte{2, 4, 0, 0, 0, 0, 0, 11}, `frame: ASSIGN_ACK field "length" at offset 4: 11, want 12..1036`},
		{[]byte{2, 3, 0, 0, 0, 0, 0, 25}, `frame: ASSIGN field "length" at offset 4: 25, want 26..1064980`},
		{[]byte{2, 7, 0, 0, 0, 0, 0, 40}, `frame: SYNC field "length" at offset 4: 40, want 32`},
	}
	for _, tc := range tests {
		_, err := ParsePrefix(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParsePrefix(%x) = %v\nwant %s", tc.in, err, tc.want)
		}
	}
	// A prefix alone is enough: the body need not be there.
	p, err := ParsePrefix([]byte{2, 1, 0, 1, 0, 0x80, 0, 0})
	if err != nil || p != (Prefix{Version: 2, Type: TypeRelay, Flags: FlagQKDKey, Length: 0x800000}) {
		t.Errorf("ParsePrefix = %+v, %v", p, err)
	}
	p, err = ParsePrefix([]byte{2, 8, 0, 0, 0, 0, 0, 32})
	if err != nil || p != (Prefix{Version: 2, Type: TypeSyncAgree, Length: 32}) {
		t.Errorf("ParsePrefix = %+v, %v", p, err)
	}
}

func TestAppendRejects(t *testing.T) {
	okRelay := func(edit func(*Relay)) any {
		r := Relay{Count: 2, KeySize: 4, HopLimit: 1, Src: "a", Dst: "b", Payload: make([]byte, 8)}
		edit(&r)
		return r
	}
	okCompl := func(edit func(*Completion)) any {
		c := Completion{Status: StatusOK, Count: 1, Src: "a", Dst: "b"}
		edit(&c)
		return c
	}
	tests := []struct {
		frame any
		field string
		off   int
	}{
		{okRelay(func(r *Relay) { r.Flags = 2 }), "flags", 2},
		{okRelay(func(r *Relay) { r.Count = 0 }), "key count", 32},
		{okRelay(func(r *Relay) { r.Count = MaxKeys + 1 }), "key count", 32},
		{okRelay(func(r *Relay) { r.KeySize = 0 }), "key size", 36},
		{okRelay(func(r *Relay) { r.HopLimit = 0 }), "hop limit", 38},
		{okRelay(func(r *Relay) { r.Count, r.KeySize = MaxKeys, MaxPayload/MaxKeys+1 }), "payload length", 40},
		{okRelay(func(r *Relay) { r.PadPos = math.MaxUint64 - 39 }), "pad offset", 24},
		{okRelay(func(r *Relay) { r.Src = "" }), "src node ID", 48},
		{okRelay(func(r *Relay) { r.Src = maxSrc + "x" }), "src node ID", 48},
		{okRelay(func(r *Relay) { r.Dst = "b c" }), "dst node ID", 50},
		{okRelay(func(r *Relay) { r.Payload = r.Payload[:7] }), "payload", 50},
		{okCompl(func(c *Completion) { c.Status = 0 }), "status", 8},
		{okCompl(func(c *Completion) { c.Status = 9 }), "status", 8},
		{okCompl(func(c *Completion) { c.Reason = strings.Repeat("x", MaxReason+1) }), "reason length", 10},
		{okCompl(func(c *Completion) { c.Reason = "ok\xff" }), "reason", 38},
		{okCompl(func(c *Completion) { c.Count = 0 }), "key count", 12},
		{okCompl(func(c *Completion) { c.Dst = "" }), "dst node ID", 35},
		{Assign{Blocks: nil}, "block count", 26},
		{Assign{Blocks: make([]AssignBlock, MaxAssignBlocks+1)}, "block count", 26},
		{Assign{Dir: 2, Blocks: []AssignBlock{{"a", 1}}}, "dir", 24},
		{Assign{Blocks: []AssignBlock{{"a", 1}, {"", 1}}}, "block 1 ID length", 34},
		{Assign{Blocks: []AssignBlock{{strings.Repeat("a", 256), 1}}}, "block 0 ID length", 28},
		{Assign{Blocks: []AssignBlock{{"ab", 0}}}, "block 0 size", 31},
		{Assign{Blocks: []AssignBlock{{"ab", MaxBlockSize + 1}}}, "block 0 size", 31},
		{Assign{PadPos: math.MaxUint64, Blocks: []AssignBlock{{"ab", 1}}}, "pad position", 16},
		{Assign{PadPos: math.MaxUint64 - 5, Blocks: []AssignBlock{{"ab", 3}, {"cd", 3}}}, "pad position", 16},
		{AssignAck{Reason: strings.Repeat("x", MaxReason+1)}, "reason length", 18},
		{AssignAck{Reason: "\xc3"}, "reason", 20},
		{Discard{Count: 0, Src: "a", Dst: "b"}, "key count", 8},
		{Discard{Count: 1, Src: "a", Dst: maxDst + "x"}, "dst node ID", 31},
		{Control{Body: make([]byte, MaxFrameLen-controlOffBody+1)}, "body", 10},
		{Sync{Used: [2]uint64{1, 0}}, "MASTER_TO_SLAVE used", 8},
		{Sync{Used: [2]uint64{5, 5}, Head: [2]uint64{5, 4}}, "SLAVE_TO_MASTER used", 24},
		{Sync{Used: [2]uint64{math.MaxUint64, math.MaxUint64}, Head: [2]uint64{0, math.MaxUint64}}, "MASTER_TO_SLAVE used", 8},
		{SyncAgree{From: [2]uint64{1, 0}}, "MASTER_TO_SLAVE from", 8},
		{SyncAgree{From: [2]uint64{0, 2}, To: [2]uint64{0, 1}}, "SLAVE_TO_MASTER from", 24},
	}
	for i, tc := range tests {
		dst := []byte("keep")
		out, err := appendAny(dst, tc.frame)
		var fe *Error
		if !errors.As(err, &fe) || fe.Type != typeOf(tc.frame) || fe.Field != tc.field || fe.Offset != tc.off {
			t.Errorf("%d: append %T: %v, want %v field %q at offset %d", i, tc.frame, err, typeOf(tc.frame), tc.field, tc.off)
		}
		if string(out) != "keep" {
			t.Errorf("%d: append changed dst on error: %q", i, out)
		}
	}
	r := okRelay(func(r *Relay) { r.HopLimit = 0 }).(Relay)
	if _, err := AppendRelayHeader(nil, &r); !isField(err, "hop limit") {
		t.Errorf("AppendRelayHeader with hop limit 0: %v", err)
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{TypeRelay.String(), "RELAY"}, {TypeAssignAck.String(), "ASSIGN_ACK"}, {TypeControl.String(), "CONTROL"},
		{TypeSync.String(), "SYNC"}, {TypeSyncAgree.String(), "SYNC_AGREE"}, {Type(0).String(), "Type(0)"}, {Type(9).String(), "Type(9)"},
		{StatusOK.String(), "OK"}, {StatusBadTag.String(), "BAD_TAG"}, {StatusPoolFull.String(), "POOL_FULL"},
		{StatusNoRoute.String(), "NO_ROUTE"}, {StatusHopLimit.String(), "HOP_LIMIT"}, {StatusReplay.String(), "REPLAY"},
		{StatusDiscarded.String(), "DISCARDED"}, {StatusInternal.String(), "INTERNAL"}, {Status(0).String(), "Status(0)"},
		{DirMasterToSlave.String(), "MASTER_TO_SLAVE"}, {DirSlaveToMaster.String(), "SLAVE_TO_MASTER"}, {Dir(2).String(), "Dir(2)"},
		{(&Error{Type: TypeRelay, Field: "key count", Offset: 32, Reason: "0, want 1..2048"}).Error(), `frame: RELAY field "key count" at offset 32: 0, want 1..2048`},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for ty := range lastType + 2 {
		if want := ty >= TypeRelay && ty <= lastType; ty.Valid() != want {
			t.Errorf("%v.Valid() = %v", ty, !want)
		}
	}
	for ty := TypeRelay; ty <= lastType; ty++ {
		lo, hi := bodyLimits(ty)
		if lo <= 0 || hi < lo || PrefixLen+hi > MaxFrameLen {
			t.Errorf("%v: body %d..%d bytes, max frame %d", ty, lo, hi, MaxFrameLen)
		}
	}
}

func TestPayloadAliases(t *testing.T) {
	b := goldenBytes(t, "RELAY")
	r, err := ParseRelay(b)
	if err != nil {
		t.Fatal(err)
	}
	if &r.Payload[0] != &b[r.HeaderLen()] || cap(r.Payload) != len(r.Payload) {
		t.Error("Payload does not alias the frame, or its capacity reaches the tag")
	}
	c, err := ParseControl(goldenBytes(t, "CONTROL"))
	if err != nil || cap(c.Body) != len(c.Body) {
		t.Errorf("Control body capacity %d for %d bytes (%v)", cap(c.Body), len(c.Body), err)
	}
}
