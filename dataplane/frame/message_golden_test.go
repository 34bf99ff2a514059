package frame

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore"
)

// goldenKeyID is the key ID of the golden messages.
var goldenKeyID = ringstore.KeyID{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// poolKeyID is the key ID of the golden pool reconciliation messages.
var poolKeyID = ringstore.KeyID{0: 0xaa, 15: 0xbb}

// goldenMessages holds one hand-written ROUTED frame and one routed message
// of each kind. docs/kmlink.md shows the same dumps (TestDocGolden). The
// pool reconciliation dumps are those node/pool_sync_test.go checks its
// encoders against, so the two codecs write the same bytes.
var goldenMessages = []struct {
	name string
	msg  any
	dump string
}{
	{"ROUTED", Routed{HopLimit: 16, Kind: KindSAEAssignCancel, Src: "alice", Dst: "bob",
		Payload: append([]byte{1, 0, 1}, goldenKeyID[:]...)}, `
02 06 0000 00000022                # prefix: version 2, CONTROL, no flags, length 34
0002                               # kind 2 (ROUTED)
10                                 # hop limit 16
0024                               # inner kind 36 (SAE_ASSIGN_CANCEL)
05 616c696365                      # src length 5, "alice"
03 626f62                          # dst length 3, "bob"
01 0001 00112233445566778899aabbccddeeff  # payload: an SAE_ASSIGN_CANCEL of one key
`},
	{"SAE_ASSIGN", SAEAssign{Assignments: []SAEAssignment{{RequestID: 7, Master: "sae-a", Slaves: []string{"sae-b", "sae-c"},
		Keys: []ringstore.KeyID{goldenKeyID}}}}, `
01                                 # version 1
0001                               # count 1
0000000000000007                   # entry 0: request ID 7
05 7361652d61                      #   master SAE length 5, "sae-a"
02                                 #   slave count 2
05 7361652d62                      #   slave 0: length 5, "sae-b"
05 7361652d63                      #   slave 1: length 5, "sae-c"
0001                               #   key count 1
00112233445566778899aabbccddeeff   #   key ID
`},
	{"SAE_ASSIGN_ACK", SAEAssignAck{Results: []SAEAssignResult{{RequestID: 7, OK: true}, {RequestID: 8, Msg: "no slave SAE named"}}}, `
01                                 # version 1
0002                               # count 2
0000000000000007 00 0000           # entry 0: request ID 7, status 0 (OK), message length 0
0000000000000008 01 0012           # entry 1: request ID 8, status 1 (REFUSED), message length 18
6e6f20736c61766520534145206e616d6564  #   "no slave SAE named"
`},
	{"SAE_ASSIGN_CANCEL", SAEAssignCancel{Keys: []ringstore.KeyID{goldenKeyID}}, `
01                                 # version 1
0001                               # count 1
00112233445566778899aabbccddeeff   # key 0 ID
`},
	{"SAE_ASSIGN_CANCEL_ACK", SAEAssignCancelAck{First: goldenKeyID, Count: 3, Discarded: 2}, `
01                                 # version 1
00112233445566778899aabbccddeeff   # first key ID
0003                               # count 3
00                                 # status 0 (APPLIED)
0002                               # keys discarded 2
0000                               # message length 0
`},
	{"KEY_STREAM", KeyStream{Name: "wg0", Entries: []KeyStreamEntry{{Index: 5, Key: goldenKeyID}}}, `
01                                 # version 1
03 776730                          # stream name length 3, "wg0"
0001                               # count 1
0000000000000005                   # entry 0: index 5
00112233445566778899aabbccddeeff   #   key ID
`},
	{"KEY_STREAM_ACK", KeyStreamAck{Name: "wg0", Acks: []KeyStreamAckEntry{{Index: 5}, {Index: 6, Status: KeyStreamServed, Msg: "served"}}}, `
01                                 # version 1
03 776730                          # stream name length 3, "wg0"
0002                               # count 2
0000000000000005 00 0000           # entry 0: index 5, status 0 (HELD), message length 0
0000000000000006 03 0006           # entry 1: index 6, status 3 (SERVED), message length 6
736572766564                       #   "served"
`},
	{"POOL_HELLO", PoolHello{Boot: 0x0102030405060708, Durable: true, Seen: 0x1112131415161718}, `
01                                 # version 1
0102030405060708                   # boot ID
01                                 # flags: DURABLE
1112131415161718                   # boot ID seen
`},
	{"POOL_SYNC_REQ", PoolSyncReq{Round: 0x21, Boot: 0x22, Target: 0x23, Restarted: true}, `
01                                 # version 1
0000000000000021                   # round ID
0000000000000022                   # boot ID
0000000000000023                   # target boot ID
02                                 # flags: RESTARTED
`},
	{"POOL_SYNC_READY", PoolSyncReady{Round: 0x21, Durable: true, Restarted: true, OutKeys: 0x100, InKeys: 2}, `
01                                 # version 1
0000000000000021                   # round ID
00                                 # status 0 (READY)
03                                 # flags: DURABLE, RESTARTED
00000100                           # out pool keys 256
00000002                           # in pool keys 2
0000                               # message length 0
`},
	{"POOL_INV_REQ", PoolInvReq{Round: 0x21, Pool: PoolIn, Chunk: 3}, `
01                                 # version 1
0000000000000021                   # round ID
01                                 # pool 1 (IN)
00000003                           # chunk 3: keys from 6,144 on
`},
	{"POOL_INV", PoolInv{Round: 0x21, Pool: PoolOut, Chunk: 3, Keys: []ringstore.KeyState{{ID: poolKeyID, Owned: true}}}, `
01                                 # version 1
0000000000000021                   # round ID
00                                 # pool 0 (OUT)
00000003                           # chunk 3
0001                               # count 1
aa0000000000000000000000000000bb 01  # key 0: ID, state 1 (ASSIGNED)
`},
	{"POOL_DROP", PoolDrop{Round: 0x21, Chunk: 0, Chunks: 1, Drops: []PoolDropKey{{ID: poolKeyID, In: true, Reason: PoolDropUnconfirmed}}}, `
01                                 # version 1
0000000000000021                   # round ID
00000000                           # chunk 0
00000001                           # chunks 1
0001                               # count 1
aa0000000000000000000000000000bb   # key 0: ID
01 00 02                           #   pool 1 (IN), state 0 (FREE), reason 2 (UNCONFIRMED)
`},
	{"POOL_DROP_ACK", PoolDropAck{Round: 0x21, Chunk: 4, Dropped: 5, Orphans: 6}, `
01                                 # version 1
0000000000000021                   # round ID
00000004                           # chunk 4
00                                 # status 0 (APPLIED)
00000005                           # keys dropped 5
00000006                           # keys kept as orphans 6
0000                               # message length 0
`},
}

// parseMsg parses b as a message of kind k: a whole ROUTED frame for
// KindRouted, else a routed message.
func parseMsg(k Kind, b []byte) (any, error) {
	switch k {
	case KindRouted:
		return ParseRouted(b)
	case KindSAEAssign:
		return ParseSAEAssign(b)
	case KindSAEAssignAck:
		return ParseSAEAssignAck(b)
	case KindSAEAssignCancel:
		return ParseSAEAssignCancel(b)
	case KindSAEAssignCancelAck:
		return ParseSAEAssignCancelAck(b)
	case KindKeyStream:
		return ParseKeyStream(b)
	case KindKeyStreamAck:
		return ParseKeyStreamAck(b)
	case KindPoolHello:
		return ParsePoolHello(b)
	case KindPoolSyncReq:
		return ParsePoolSyncReq(b)
	case KindPoolSyncReady:
		return ParsePoolSyncReady(b)
	case KindPoolInvReq:
		return ParsePoolInvReq(b)
	case KindPoolInv:
		return ParsePoolInv(b)
	case KindPoolDrop:
		return ParsePoolDrop(b)
	case KindPoolDropAck:
		return ParsePoolDropAck(b)
	}
	panic("parseMsg: bad kind " + k.String())
}

// appendMsg appends m, a message struct (not a pointer), to dst, and
// returns the length its Len or FrameLen method gives.
func appendMsg(dst []byte, m any) ([]byte, int, error) {
	switch m := m.(type) {
	case Routed:
		b, err := AppendRouted(dst, &m)
		return b, m.FrameLen(), err
	case SAEAssign:
		b, err := AppendSAEAssign(dst, &m)
		return b, m.Len(), err
	case SAEAssignAck:
		b, err := AppendSAEAssignAck(dst, &m)
		return b, m.Len(), err
	case SAEAssignCancel:
		b, err := AppendSAEAssignCancel(dst, &m)
		return b, m.Len(), err
	case SAEAssignCancelAck:
		b, err := AppendSAEAssignCancelAck(dst, &m)
		return b, m.Len(), err
	case KeyStream:
		b, err := AppendKeyStream(dst, &m)
		return b, m.Len(), err
	case KeyStreamAck:
		b, err := AppendKeyStreamAck(dst, &m)
		return b, m.Len(), err
	case PoolHello:
		b, err := AppendPoolHello(dst, &m)
		return b, m.Len(), err
	case PoolSyncReq:
		b, err := AppendPoolSyncReq(dst, &m)
		return b, m.Len(), err
	case PoolSyncReady:
		b, err := AppendPoolSyncReady(dst, &m)
		return b, m.Len(), err
	case PoolInvReq:
		b, err := AppendPoolInvReq(dst, &m)
		return b, m.Len(), err
	case PoolInv:
		b, err := AppendPoolInv(dst, &m)
		return b, m.Len(), err
	case PoolDrop:
		b, err := AppendPoolDrop(dst, &m)
		return b, m.Len(), err
	case PoolDropAck:
		b, err := AppendPoolDropAck(dst, &m)
		return b, m.Len(), err
	}
	panic("appendMsg: bad message type")
}

// kindOfMsg returns the kind of a message struct.
func kindOfMsg(m any) Kind {
	return map[reflect.Type]Kind{
		reflect.TypeFor[Routed]():             KindRouted,
		reflect.TypeFor[SAEAssign]():          KindSAEAssign,
		reflect.TypeFor[SAEAssignAck]():       KindSAEAssignAck,
		reflect.TypeFor[SAEAssignCancel]():    KindSAEAssignCancel,
		reflect.TypeFor[SAEAssignCancelAck](): KindSAEAssignCancelAck,
		reflect.TypeFor[KeyStream]():          KindKeyStream,
		reflect.TypeFor[KeyStreamAck]():       KindKeyStreamAck,
		reflect.TypeFor[PoolHello]():          KindPoolHello,
		reflect.TypeFor[PoolSyncReq]():        KindPoolSyncReq,
		reflect.TypeFor[PoolSyncReady]():      KindPoolSyncReady,
		reflect.TypeFor[PoolInvReq]():         KindPoolInvReq,
		reflect.TypeFor[PoolInv]():            KindPoolInv,
		reflect.TypeFor[PoolDrop]():           KindPoolDrop,
		reflect.TypeFor[PoolDropAck]():        KindPoolDropAck,
	}[reflect.TypeOf(m)]
}

// sameMsg reports whether two message structs are equal, an empty slice
// being equal to a nil one.
func sameMsg(a, b any) bool {
	return reflect.DeepEqual(normMsg(a), normMsg(b))
}

func normMsg(m any) any {
	v := reflect.New(reflect.TypeOf(m)).Elem()
	v.Set(reflect.ValueOf(m))
	normValue(v)
	return v.Interface()
}

// normValue sets every empty slice in v to nil.
func normValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			normValue(v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.SetZero()
			return
		}
		if v.Type().Elem().Kind() == reflect.Struct {
			c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			reflect.Copy(c, v)
			for i := range c.Len() {
				normValue(c.Index(i))
			}
			v.Set(c)
		}
	}
}

func TestMessageGolden(t *testing.T) {
	for _, g := range goldenMessages {
		t.Run(g.name, func(t *testing.T) {
			want := unhexDump(t, g.dump)
			k := kindOfMsg(g.msg)
			if k.String() != g.name {
				t.Fatalf("kind %v, want %s", k, g.name)
			}
			got, n, err := appendMsg(nil, g.msg)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("append:\n got %x\nwant %x", got, want)
			}
			if n != len(want) {
				t.Errorf("length method = %d, want %d", n, len(want))
			}
			m, err := parseMsg(k, want)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !sameMsg(m, g.msg) {
				t.Errorf("parse:\n got %+v\nwant %+v", m, g.msg)
			}
		})
	}
}

// TestDocMessageTables checks the byte table of ROUTED and of each routed
// message in docs/kmlink.md against the offsets and field names the code
// uses (see checkDocTable), the table of kinds against kinds.go, and the
// tables of statuses and reasons against the code's values.
func TestDocMessageTables(t *testing.T) {
	raw, err := os.ReadFile("../../docs/kmlink.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	const variable = -1
	header := map[int]string{saeOffVersion: "version", saeOffCount: "count", saeOffEntries: "N"}
	streamHeader := map[int]string{keyStreamOffVersion: "version", keyStreamOffNameLen: "stream name length", keyStreamOffName: "stream name"}
	tables := []struct {
		kind     Kind
		start    int
		fields   map[int]string
		fixedEnd int
	}{
		{KindRouted, controlOffKind, map[int]string{controlOffKind: "kind", routedOffHopLimit: "hop limit", routedOffKind: "inner kind",
			routedOffSrcLen: "src node ID length", routedOffSrc: "src node ID"}, variable},
		{KindSAEAssign, 0, header, variable},
		{KindSAEAssignAck, 0, header, variable},
		{KindSAEAssignCancel, 0, header, variable},
		{KindSAEAssignCancelAck, 0, map[int]string{0: "version", 1: "first key ID", saeCancelAckOffCount: "count", saeCancelAckOffStatus: "status",
			20: "keys discarded", saeCancelAckOffMsg: "message length", saeCancelAckFixed: "message"}, variable},
		{KindKeyStream, 0, streamHeader, variable},
		{KindKeyStreamAck, 0, streamHeader, variable},
		{KindPoolHello, 0, map[int]string{0: "version", 1: "boot ID", 9: "flags", 10: "boot ID seen"}, poolHelloLen},
		{KindPoolSyncReq, 0, map[int]string{0: "version", 1: "round ID", 9: "boot ID", 17: "target boot ID", 25: "flags"}, poolSyncReqLen},
		{KindPoolSyncReady, 0, map[int]string{0: "version", 1: "round ID", 9: "status", 10: "flags", 11: "out pool keys",
			15: "in pool keys", poolReadyOffMsg: "message length", poolReadyFixed: "message"}, variable},
		{KindPoolInvReq, 0, map[int]string{0: "version", 1: "round ID", 9: "pool", 10: "chunk"}, poolInvReqLen},
		{KindPoolInv, 0, map[int]string{0: "version", 1: "round ID", 9: "pool", 10: "chunk", poolInvOffCount: "count", poolInvFixed: "N keys"}, variable},
		{KindPoolDrop, 0, map[int]string{0: "version", 1: "round ID", poolDropOffChunk: "chunk", 13: "chunks", poolDropOffCount: "count", poolDropFixed: "N keys"}, variable},
		{KindPoolDropAck, 0, map[int]string{0: "version", 1: "round ID", 9: "chunk", poolDropAckOffStat: "status", 14: "keys dropped",
			18: "keys kept as orphans", 22: "message length", poolDropAckFixed: "message"}, variable},
	}
	sections := strings.Split(doc, "\n### ")
	for _, tb := range tables {
		checkDocTable(t, sections, fmt.Sprintf("%s (kind %d)", tb.kind, tb.kind), tb.start, tb.fields, tb.fixedEnd)
	}
	for k, name := range kindNames {
		if row := fmt.Sprintf("\n| %d | %s | ", k, name); !strings.Contains(doc, row) {
			t.Errorf("docs/kmlink.md has no kind row %q", row[1:])
		}
	}
	rows := map[string]int{
		"APPLIED": SAECancelApplied, "REFUSED": SAECancelRefused,
		"HELD": KeyStreamHeld, "KEY_REFUSED": KeyStreamKeyRefused, "UNKNOWN_STREAM": KeyStreamUnknown, "SERVED": KeyStreamServed,
	}
	for r := PoolDropMissing; r <= PoolDropOrphan; r++ {
		rows[strings.ToUpper(r.String())] = int(r)
	}
	for name, v := range rows {
		if row := fmt.Sprintf("\n| %d | %s | ", v, name); !strings.Contains(doc, row) {
			t.Errorf("docs/kmlink.md has no row %q", row[1:])
		}
	}
}
