package frame

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// unhexDump decodes an annotated hex dump: on each line, what follows '#'
// is a comment and spaces are ignored.
func unhexDump(tb testing.TB, s string) []byte {
	tb.Helper()
	var digits strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		tb.Fatalf("bad hex dump: %v\n%s", err, s)
	}
	return b
}

// golden holds one hand-written frame of each type. docs/kmlink.md shows the
// same dumps (TestDocGolden), so the spec's byte tables cannot drift from the
// code without a test failing.
var golden = []struct {
	name  string
	frame any
	dump  string
}{
	{"RELAY", Relay{
		Flags: FlagQKDKey, Flow: 0x0102030405060708, FirstSeq: 42, PadPos: 4096,
		Count: 2, KeySize: 4, HopLimit: 8, Src: "alice", Dst: "bob",
		Payload: []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04},
		Tag:     [TagLen]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	}, `
02 01 0001 00000048                # prefix: version 2, RELAY, flags QKD_KEY, length 72
0102030405060708                   # flow ID
000000000000002a                   # first key sequence 42
0000000000001000                   # pad offset 4096
00000002                           # key count 2
0004                               # key size 4
08                                 # hop limit 8
00                                 # reserved
00000008                           # payload length 8 = 2 × 4
05 03 0000                         # src length 5, dst length 3, reserved
616c696365 626f62                  # "alice", "bob"
deadbeef01020304                   # payload: keys XOR pad[4096:4104]
000102030405060708090a0b0c0d0e0f   # tag: Poly1305 keyed by pad[4104:4136]
`},
	{"COMPLETION", Completion{
		Status: StatusPoolFull, Count: 2, Flow: 0x0102030405060708, FirstSeq: 42,
		Src: "alice", Dst: "bob", Reason: "pool full",
	}, `
02 02 0000 0000002b                # prefix: version 2, COMPLETION, no flags, length 43
03 00 0009                         # status POOL_FULL, reserved, reason length 9
00000002                           # key count 2
0102030405060708                   # flow ID
000000000000002a                   # first key sequence 42
05 03                              # src length 5, dst length 3
616c696365 626f62                  # "alice", "bob"
706f6f6c2066756c6c                 # "pool full"
`},
	{"ASSIGN", Assign{
		Seq: 7, PadPos: 0x100000, Dir: DirSlaveToMaster,
		Blocks: []AssignBlock{{ID: "k1", Size: 1024}, {ID: "block-2", Size: 16 << 20}},
	}, `
02 03 0000 00000027                # prefix: version 2, ASSIGN, no flags, length 39
0000000000000007                   # assignment sequence 7
0000000000100000                   # pad position 1,048,576 (1 MiB)
01 00 0002                         # dir SLAVE_TO_MASTER, reserved, block count 2
02 6b31 00000400                   # block 0: ID length 2, "k1", size 1024
07 626c6f636b2d32 01000000         # block 1: ID length 7, "block-2", size 16 MiB
`},
	{"ASSIGN_ACK", AssignAck{Seq: 7, OK: false, Reason: "no such block"}, `
02 04 0000 00000019                # prefix: version 2, ASSIGN_ACK, no flags, length 25
0000000000000007                   # assignment sequence 7
01 00 000d                         # status FAILED, reserved, reason length 13
6e6f2073756368 20626c6f636b       # "no such block"
`},
	{"DISCARD", Discard{Count: 2, Flow: 0x0102030405060708, FirstSeq: 42, Src: "alice", Dst: "bob"}, `
02 05 0000 0000001e                # prefix: version 2, DISCARD, no flags, length 30
00000002                           # key count 2
0102030405060708                   # flow ID
000000000000002a                   # first key sequence 42
05 03                              # src length 5, dst length 3
616c696365 626f62                  # "alice", "bob"
`},
	{"CONTROL", Control{Kind: 16, Body: []byte("hello")}, `
02 06 0000 00000007                # prefix: version 2, CONTROL, no flags, length 7
0010                               # kind 16 (the control plane's first)
68656c6c6f                         # body "hello"
`},
	{"SYNC", Sync{Used: [2]uint64{0x100000, 0x40000}, Head: [2]uint64{0x180000, 0x80000}}, `
02 07 0000 00000020                # prefix: version 2, SYNC, no flags, length 32
0000000000100000                   # MASTER_TO_SLAVE used 1,048,576 (1 MiB)
0000000000180000                   # MASTER_TO_SLAVE head 1,572,864 (1.5 MiB)
0000000000040000                   # SLAVE_TO_MASTER used 262,144 (256 KiB)
0000000000080000                   # SLAVE_TO_MASTER head 524,288 (512 KiB)
`},
	{"SYNC_AGREE", SyncAgree{From: [2]uint64{0x100000, 0x40000}, To: [2]uint64{0x180000, 0x80000}}, `
02 08 0000 00000020                # prefix: version 2, SYNC_AGREE, no flags, length 32
0000000000100000                   # MASTER_TO_SLAVE from 1,048,576 (1 MiB)
0000000000180000                   # MASTER_TO_SLAVE to 1,572,864 (1.5 MiB)
0000000000040000                   # SLAVE_TO_MASTER from 262,144 (256 KiB)
0000000000080000                   # SLAVE_TO_MASTER to 524,288 (512 KiB)
`},
}

// parseAny parses b with the Parse function of type t.
func parseAny(t Type, b []byte) (any, error) {
	switch t {
	case TypeRelay:
		return ParseRelay(b)
	case TypeCompletion:
		return ParseCompletion(b)
	case TypeAssign:
		return ParseAssign(b)
	case TypeAssignAck:
		return ParseAssignAck(b)
	case TypeDiscard:
		return ParseDiscard(b)
	case TypeControl:
		return ParseControl(b)
	case TypeSync:
		return ParseSync(b)
	case TypeSyncAgree:
		return ParseSyncAgree(b)
	}
	panic("parseAny: bad type " + t.String())
}

// appendAny appends f, a frame struct (not a pointer), to dst.
func appendAny(dst []byte, f any) ([]byte, error) {
	switch f := f.(type) {
	case Relay:
		return AppendRelay(dst, &f)
	case Completion:
		return AppendCompletion(dst, &f)
	case Assign:
		return AppendAssign(dst, &f)
	case AssignAck:
		return AppendAssignAck(dst, &f)
	case Discard:
		return AppendDiscard(dst, &f)
	case Control:
		return AppendControl(dst, &f)
	case Sync:
		return AppendSync(dst, &f)
	case SyncAgree:
		return AppendSyncAgree(dst, &f)
	}
	panic("appendAny: bad frame type")
}

// typeOf returns the frame type of a frame struct.
func typeOf(f any) Type {
	switch f.(type) {
	case Relay:
		return TypeRelay
	case Completion:
		return TypeCompletion
	case Assign:
		return TypeAssign
	case AssignAck:
		return TypeAssignAck
	case Discard:
		return TypeDiscard
	case Control:
		return TypeControl
	case Sync:
		return TypeSync
	case SyncAgree:
		return TypeSyncAgree
	}
	panic("typeOf: bad frame type")
}

// frameLen returns the FrameLen of a frame struct.
func frameLen(f any) int {
	switch f := f.(type) {
	case Relay:
		return f.FrameLen()
	case Completion:
		return f.FrameLen()
	case Assign:
		return f.FrameLen()
	case AssignAck:
		return f.FrameLen()
	case Discard:
		return f.FrameLen()
	case Control:
		return f.FrameLen()
	case Sync:
		return f.FrameLen()
	case SyncAgree:
		return f.FrameLen()
	}
	panic("frameLen: bad frame type")
}

// sameFrame reports whether two frame structs are equal, an empty slice
// being equal to a nil one.
func sameFrame(a, b any) bool {
	norm := func(f any) any {
		if c, ok := f.(Control); ok && len(c.Body) == 0 {
			c.Body = nil
			return c
		}
		return f
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			want := unhexDump(t, g.dump)
			typ := typeOf(g.frame)
			if typ.String() != g.name {
				t.Fatalf("type %v, want %s", typ, g.name)
			}
			got, err := appendAny(nil, g.frame)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("append:\n got %x\nwant %x", got, want)
			}
			if n := frameLen(g.frame); n != len(want) {
				t.Errorf("FrameLen() = %d, want %d", n, len(want))
			}
			f, err := parseAny(typ, want)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !sameFrame(f, g.frame) {
				t.Errorf("parse:\n got %+v\nwant %+v", f, g.frame)
			}
			p, err := ParsePrefix(want)
			if err != nil || p != (Prefix{Version: Version, Type: typ, Flags: p.Flags, Length: uint32(len(want) - PrefixLen)}) {
				t.Errorf("ParsePrefix = %+v, %v", p, err)
			}
		})
	}
}

// TestDocGolden checks that docs/kmlink.md shows exactly the golden frames,
// each in a fenced block after a line "<!-- golden NAME -->".
func TestDocGolden(t *testing.T) {
	doc, err := os.ReadFile("../../docs/kmlink.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	lines := strings.Split(string(doc), "\n")
	for i := 0; i < len(lines); i++ {
		name, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "<!-- golden ")
		if !ok {
			continue
		}
		name = strings.TrimSpace(strings.TrimSuffix(name, "-->"))
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("docs/kmlink.md line %d: golden %s is not followed by a fenced block", i+1, name)
		}
		var body strings.Builder
		for i += 2; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body.WriteString(lines[i] + "\n")
		}
		if _, dup := blocks[name]; dup {
			t.Errorf("docs/kmlink.md: golden %s appears twice", name)
		}
		blocks[name] = body.String()
	}
	for _, g := range golden {
		d, ok := blocks[g.name]
		if !ok {
			t.Errorf("docs/kmlink.md has no golden %s", g.name)
			continue
		}
		if got, want := unhexDump(t, d), unhexDump(t, g.dump); !bytes.Equal(got, want) {
			t.Errorf("docs/kmlink.md golden %s:\n got %x\nwant %x", g.name, got, want)
		}
		delete(blocks, g.name)
	}
	for _, g := range goldenMessages {
		d, ok := blocks[g.name]
		if !ok {
			t.Errorf("docs/kmlink.md has no golden %s", g.name)
			continue
		}
		if got, want := unhexDump(t, d), unhexDump(t, g.dump); !bytes.Equal(got, want) {
			t.Errorf("docs/kmlink.md golden %s:\n got %x\nwant %x", g.name, got, want)
		}
		delete(blocks, g.name)
	}
	for name := range blocks {
		t.Errorf("docs/kmlink.md has golden %s, which the tests do not know", name)
	}

	// The table of types gives each type's length range.
	for ty := TypeRelay; ty <= lastType; ty++ {
		lo, hi := bodyLimits(ty)
		row := fmt.Sprintf("| %d | %s | ", ty, ty)
		want := commas(lo) + " .. " + commas(hi) + " |"
		found := false
		for _, line := range lines {
			if strings.HasPrefix(line, row) {
				found = true
				if !strings.HasSuffix(line, want) {
					t.Errorf("docs/kmlink.md: %q, want it to end %q", line, want)
				}
			}
		}
		if !found {
			t.Errorf("docs/kmlink.md has no type table row %q", row)
		}
	}
	if !strings.Contains(string(doc), commas(MaxFrameLen)+" bytes") {
		t.Errorf("docs/kmlink.md does not give MaxFrameLen as %s bytes", commas(MaxFrameLen))
	}
}

// commas formats n with thousands separators.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// positionsFields returns the fields of a SYNC or SYNC_AGREE by offset.
func positionsFields(low, high string) map[int]string {
	m := map[int]string{}
	for _, d := range []Dir{DirMasterToSlave, DirSlaveToMaster} {
		lo, hi := positionsOff(d)
		m[lo], m[hi] = positionsField(d, low), positionsField(d, high)
	}
	return m
}

// TestDocTables checks the byte table of each frame type in docs/kmlink.md
// against the offsets and field names the code uses: fixed fields follow one
// another from offset 8 with no gap, each names the field the errors name,
// and the variable part starts where the code says.
func TestDocTables(t *testing.T) {
	doc, err := os.ReadFile("../../docs/kmlink.md")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[Type]map[int]string{
		TypeRelay: {relayOffFlow: "flow ID", relayOffFirstSeq: "first key sequence", relayOffPadPos: "pad offset",
			relayOffCount: "key count", relayOffKeySize: "key size", relayOffHopLimit: "hop limit",
			relayOffReserved1: "reserved", relayOffPayloadLen: "payload length", relayOffSrcLen: "src node ID length",
			relayOffDstLen: "dst node ID length", relayOffReserved2: "reserved", relayOffSrc: "src node ID"},
		TypeCompletion: {complOffStatus: "status", complOffReserved: "reserved", complOffReasonLen: "reason length",
			complOffCount: "key count", complOffFlow: "flow ID", complOffFirstSeq: "first key sequence",
			complOffSrcLen: "src node ID length", complOffDstLen: "dst node ID length", complOffSrc: "src node ID"},
		TypeAssign: {assignOffSeq: "assignment sequence", assignOffPadPos: "pad position", assignOffDir: "dir",
			assignOffReserved: "reserved", assignOffBlockCount: "block count", assignOffBlocks: "N blocks"},
		TypeAssignAck: {ackOffSeq: "assignment sequence", ackOffStatus: "status", ackOffReserved: "reserved",
			ackOffReasonLen: "reason length", ackOffReason: "reason"},
		TypeDiscard: {discardOffCount: "key count", discardOffFlow: "flow ID", discardOffFirstSeq: "first key sequence",
			discardOffSrcLen: "src node ID length", discardOffDstLen: "dst node ID length", discardOffSrc: "src node ID"},
		TypeControl:   {controlOffKind: "kind", controlOffBody: "body"},
		TypeSync:      positionsFields("used", "head"),
		TypeSyncAgree: positionsFields("from", "to"),
	}
	// The offset where each type's fixed fields end.
	fixedEnd := map[Type]int{
		TypeRelay: RelayFixedLen, TypeCompletion: PrefixLen + completionFixed, TypeAssign: PrefixLen + assignFixed,
		TypeAssignAck: PrefixLen + assignAckFixed, TypeDiscard: PrefixLen + discardFixed, TypeControl: PrefixLen + controlFixed,
		TypeSync: PrefixLen + syncFixed, TypeSyncAgree: PrefixLen + syncAgreeFixed,
	}
	sections := strings.Split(string(doc), "\n### ")
	for ty := TypeRelay; ty <= lastType; ty++ {
		checkDocTable(t, sections, fmt.Sprintf("%s (type %d)", ty, ty), PrefixLen, fields[ty], fixedEnd[ty])
	}
	for st := StatusOK; st <= StatusInternal; st++ {
		if row := fmt.Sprintf("\n| %d | %s | ", st, st); !strings.Contains(string(doc), row) {
			t.Errorf("docs/kmlink.md has no status row %q", row[1:])
		}
	}
}

// checkDocTable checks the byte table of the section of docs/kmlink.md
// whose heading contains heading: its first table's rows with a numeric
// offset follow one another from offset start with no gap, each names the
// field the code has at that offset, and the fixed fields end at fixedEnd
// (ignored if a field of variable size comes first).
func checkDocTable(t *testing.T, sections []string, heading string, start int, fields map[int]string, fixedEnd int) {
	t.Helper()
	var section string
	for _, s := range sections {
		if strings.Contains(strings.SplitN(s, "\n", 2)[0], heading) {
			section = s
		}
	}
	if section == "" {
		t.Errorf("docs/kmlink.md has no section for %s", heading)
		return
	}
	next := start
	seen := map[int]bool{}
	inTable := false
	for line := range strings.Lines(section) {
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			if inTable {
				break // only the first table is the byte table
			}
			continue
		}
		inTable = true
		off, err := strconv.Atoi(strings.TrimSpace(cells[1]))
		if err != nil {
			continue // header row, or a variable offset such as 48+S
		}
		name := strings.TrimSpace(cells[3])
		if want, ok := fields[off]; !ok || !strings.HasPrefix(name, want) {
			t.Errorf("%s table: offset %d is %q, the code has %q there", heading, off, name, want)
		}
		seen[off] = true
		if off != next {
			t.Errorf("%s table: offset %d follows a field that ends at %d", heading, off, next)
		}
		size, err := strconv.Atoi(strings.TrimSpace(cells[2]))
		if err != nil {
			next = -1 // a variable size: nothing may follow at a fixed offset
			continue
		}
		next = off + size
	}
	if next != -1 && next != fixedEnd {
		t.Errorf("%s table: fixed fields end at %d, the code says %d", heading, next, fixedEnd)
	}
	for off, name := range fields {
		if !seen[off] {
			t.Errorf("%s table: no row for %q at offset %d", heading, name, off)
		}
	}
}
