package supply

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore"
)

// syncSample is one POOL_SYNC message of each kind, from the encoders.
type syncSample struct {
	name string
	kind uint16
	b    []byte
}

func syncSamples() []syncSample {
	ids := make([]ringstore.KeyID, 3)
	for i := range ids {
		ids[i] = ringstore.DeriveKeyID("a", "b", 7, uint64(i))
	}
	slices.SortFunc(ids, ringstore.CompareKeyIDs)
	inv := []ringstore.KeyState{{ID: ids[0]}, {ID: ids[1], Assigned: true}, {ID: ids[2]}}
	drops := []poolDrop{
		{id: ids[0], reason: reasonMissing},
		{id: ids[1], in: true, reason: reasonUnconfirmed},
		{id: ids[1], assigned: true, reason: reasonReserved},
		{id: ids[2], in: true, assigned: true, reason: reasonOrphan},
		{id: ids[2], in: true, assigned: true, reason: reasonStale},
	}
	return []syncSample{
		{"hello", kindPoolHello, appendHello(nil, poolHello{boot: 0x0123456789abcdef, durable: true, seen: 0xfedcba9876543210})},
		{"hello_first", kindPoolHello, appendHello(nil, poolHello{boot: 1})},
		{"sync_req", kindPoolSyncReq, appendSyncReq(nil, syncReq{round: 5, boot: 6, target: 7, durable: true, restarted: true})},
		{"ready", kindPoolReady, appendReady(nil, syncReady{round: 5, restarted: true, outKeys: 4096, inKeys: 3})},
		{"ready_refused", kindPoolReady, appendReady(nil, syncReady{round: 5, status: readyRefused, durable: true, msg: "this node's boot ID is 0000000000000009"})},
		{"inv_req", kindPoolInvReq, appendInvReq(nil, invReq{round: 5, pool: 1, chunk: 2})},
		{"inv", kindPoolInv, appendInv(nil, invChunk{round: 5, pool: 0, chunk: 1, keys: inv})},
		{"inv_empty", kindPoolInv, appendInv(nil, invChunk{round: 5, pool: 1})},
		{"drop", kindPoolDrop, appendDrop(nil, dropChunk{round: 5, chunk: 1, chunks: 3, drops: drops})},
		{"drop_none", kindPoolDrop, appendDrop(nil, dropChunk{round: 5, chunks: 1})},
		{"drop_ack", kindPoolDropAck, appendDropAck(nil, dropAck{round: 5, chunk: 1, dropped: 3, orphans: 1})},
		{"drop_ack_failed", kindPoolDropAck, appendDropAck(nil, dropAck{round: 5, chunk: 2, status: dropFailed, msg: "pool closed"})},
	}
}

// parseSync parses b as a message of kind and encodes it again.
func parseSync(kind uint16, b []byte) ([]byte, error) {
	switch kind {
	case kindPoolHello:
		m, err := parseHello(b)
		return appendHello(nil, m), err
	case kindPoolSyncReq:
		m, err := parseSyncReq(b)
		return appendSyncReq(nil, m), err
	case kindPoolReady:
		m, err := parseReady(b)
		return appendReady(nil, m), err
	case kindPoolInvReq:
		m, err := parseInvReq(b)
		return appendInvReq(nil, m), err
	case kindPoolInv:
		m, err := parseInv(b)
		return appendInv(nil, m), err
	case kindPoolDrop:
		m, err := parseDrop(b)
		return appendDrop(nil, m), err
	case kindPoolDropAck:
		m, err := parseDropAck(b)
		return appendDropAck(nil, m), err
	}
	return nil, fmt.Errorf("kind %d is not a POOL_SYNC message", kind)
}

// TestPoolSyncGolden checks the byte layout of pool_sync.go's tables on
// one message of each kind.
func TestPoolSyncGolden(t *testing.T) {
	id := ringstore.KeyID{0: 0xaa, 15: 0xbb}
	for _, c := range []struct {
		name string
		b    []byte
		hex  string
	}{
		{"POOL_HELLO", appendHello(nil, poolHello{boot: 0x0102030405060708, durable: true, seen: 0x1112131415161718}),
			"01 0102030405060708 01 1112131415161718"},
		{"POOL_SYNC_REQ", appendSyncReq(nil, syncReq{round: 0x21, boot: 0x22, target: 0x23, restarted: true}),
			"01 0000000000000021 0000000000000022 0000000000000023 02"},
		{"POOL_SYNC_READY", appendReady(nil, syncReady{round: 0x21, durable: true, restarted: true, outKeys: 0x100, inKeys: 2}),
			"01 0000000000000021 00 03 00000100 00000002 0000"},
		{"POOL_SYNC_READY refused", appendReady(nil, syncReady{round: 0x21, status: readyRefused, msg: "no"}),
			"01 0000000000000021 01 00 00000000 00000000 0002 6e6f"},
		{"POOL_INV_REQ", appendInvReq(nil, invReq{round: 0x21, pool: 1, chunk: 3}),
			"01 0000000000000021 01 00000003"},
		{"POOL_INV", appendInv(nil, invChunk{round: 0x21, pool: 0, chunk: 3, keys: []ringstore.KeyState{{ID: id, Assigned: true}}}),
			"01 0000000000000021 00 00000003 0001 aa0000000000000000000000000000bb 01"},
		{"POOL_DROP", appendDrop(nil, dropChunk{round: 0x21, chunk: 0, chunks: 1, drops: []poolDrop{{id: id, in: true, reason: reasonUnconfirmed}}}),
			"01 0000000000000021 00000000 00000001 0001 aa0000000000000000000000000000bb 01 00 02"},
		{"POOL_DROP_ACK", appendDropAck(nil, dropAck{round: 0x21, chunk: 4, dropped: 5, orphans: 6}),
			"01 0000000000000021 00000004 00 00000005 00000006 0000"},
	} {
		want, err := hex.DecodeString(strings.ReplaceAll(c.hex, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.b, want) {
			t.Errorf("%s: % x\nwant % x", c.name, c.b, want)
		}
	}
}

// TestPoolSyncParse: every sample parses and encodes back to itself;
// every truncation, a byte more, and another version are refused.
func TestPoolSyncParse(t *testing.T) {
	for _, s := range syncSamples() {
		again, err := parseSync(s.kind, s.b)
		if err != nil || !bytes.Equal(again, s.b) {
			t.Errorf("%s: %v; encodes back as % x, want % x", s.name, err, again, s.b)
		}
		for i := range s.b {
			if _, err := parseSync(s.kind, s.b[:i]); err == nil {
				t.Errorf("%s cut to %d of %d bytes: accepted", s.name, i, len(s.b))
			}
		}
		if _, err := parseSync(s.kind, append(slices.Clone(s.b), 0)); err == nil {
			t.Errorf("%s with a byte more: accepted", s.name)
		}
		v2 := slices.Clone(s.b)
		v2[0] = 2
		if _, err := parseSync(s.kind, v2); err == nil || !strings.Contains(err.Error(), "version 2: want 1") {
			t.Errorf("%s of version 2: %v, want a refusal naming the versions", s.name, err)
		}
	}
}

// TestPoolSyncParseRefuses: values the format does not define.
func TestPoolSyncParseRefuses(t *testing.T) {
	id := func(i byte) ringstore.KeyID { return ringstore.KeyID{0: i} }
	set := func(b []byte, off int, v ...byte) []byte {
		b = slices.Clone(b)
		copy(b[off:], v)
		return b
	}
	hello := appendHello(nil, poolHello{boot: 1})
	req := appendSyncReq(nil, syncReq{round: 1, boot: 2, target: 3})
	ready := appendReady(nil, syncReady{round: 1})
	for _, c := range []struct {
		name string
		kind uint16
		b    []byte
		msg  string
	}{
		{"hello boot 0", kindPoolHello, set(hello, 1, 0, 0, 0, 0, 0, 0, 0, 0), "boot ID at offset 1 is 0"},
		{"hello restarted flag", kindPoolHello, set(hello, 9, flagRestarted), "undefined bits 0x02"},
		{"req round 0", kindPoolSyncReq, set(req, 1, 0, 0, 0, 0, 0, 0, 0, 0), "round ID at offset 1 is 0"},
		{"req target 0", kindPoolSyncReq, set(req, 17, 0, 0, 0, 0, 0, 0, 0, 0), "target boot ID at offset 17 is 0"},
		{"req flag bit 7", kindPoolSyncReq, set(req, 25, 0x80), "undefined bits 0x80"},
		{"ready status 3", kindPoolReady, set(ready, 9, 3), "status at offset 9 is 3: at most 2"},
		{"ready refused with counts", kindPoolReady, set(ready, 9, readyRefused, 0, 0, 0, 0, 1), "status 1 with key counts 1 and 0"},
		{"ready ok with a message", kindPoolReady, appendReady(nil, syncReady{round: 1, msg: "x"}), "status 0 with a message"},
		{"ready long message", kindPoolReady, append(set(ready, 9, readyFailed, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1), make([]byte, 257)...), "message length at offset 19 is 257"},
		{"inv_req pool 2", kindPoolInvReq, appendInvReq(nil, invReq{round: 1, pool: 2}), "pool at offset 9 is 2"},
		{"inv unsorted", kindPoolInv, appendInv(nil, invChunk{round: 1, keys: []ringstore.KeyState{{ID: id(2)}, {ID: id(1)}}}), "does not follow key 0"},
		{"inv twice", kindPoolInv, appendInv(nil, invChunk{round: 1, keys: []ringstore.KeyState{{ID: id(2)}, {ID: id(2)}}}), "does not follow key 0"},
		{"inv state 2", kindPoolInv, set(appendInv(nil, invChunk{round: 1, keys: []ringstore.KeyState{{ID: id(2)}}}), 32, 2), "state at offset 32 is 2"},
		{"inv count 2049", kindPoolInv, set(appendInv(nil, invChunk{round: 1}), 14, 0x08, 0x01), "count at offset 14 is 2049"},
		{"drop chunk 1 of 1", kindPoolDrop, appendDrop(nil, dropChunk{round: 1, chunk: 1, chunks: 1}), "chunk 1 of 1"},
		{"drop no chunks", kindPoolDrop, appendDrop(nil, dropChunk{round: 1}), "chunk 0 of 0"},
		{"drop reason 0", kindPoolDrop, appendDrop(nil, dropChunk{round: 1, chunks: 1, drops: []poolDrop{{id: id(1)}}}), "reason 0 (unknown) does not apply"},
		{"drop reason 6", kindPoolDrop, appendDrop(nil, dropChunk{round: 1, chunks: 1, drops: []poolDrop{{id: id(1), reason: 6}}}), "reason at offset 37 is 6"},
		{"drop missing at in", kindPoolDrop, appendDrop(nil, dropChunk{round: 1, chunks: 1, drops: []poolDrop{{id: id(1), in: true, reason: reasonMissing}}}), "reason 1 (missing_at_other_end) does not apply to a key free in the in pool"},
		{"drop unconfirmed assigned", kindPoolDrop, appendDrop(nil, dropChunk{round: 1, chunks: 1, drops: []poolDrop{{id: id(1), in: true, assigned: true, reason: reasonUnconfirmed}}}), "does not apply to a key assigned in the in pool"},
		{"drop reserved free at out", kindPoolDrop, appendDrop(nil, dropChunk{round: 1, chunks: 1, drops: []poolDrop{{id: id(1), reason: reasonReserved}}}), "reason 3 (reservation_lost)"},
		{"drop orphan at out", kindPoolDrop, appendDrop(nil, dropChunk{round: 1, chunks: 1, drops: []poolDrop{{id: id(1), assigned: true, reason: reasonOrphan}}}), "reason 5 (orphan)"},
		{"drop_ack status 2", kindPoolDropAck, set(appendDropAck(nil, dropAck{round: 1}), 13, 2), "status at offset 13 is 2"},
	} {
		_, err := parseSync(c.kind, c.b)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.msg)
		}
	}
}

var updateSyncSeeds = flag.Bool("update-sync-seeds", false, "rewrite testdata/fuzz/FuzzParsePoolSync from the encoders")

// TestPoolSyncFuzzSeeds keeps the committed seeds in step with the
// encoders: with -update-sync-seeds it rewrites them, otherwise it
// checks that each is there with the encoder's bytes.
func TestPoolSyncFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParsePoolSync")
	for _, s := range syncSamples() {
		body := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", s.kind-kindPoolHello, s.b)
		path := filepath.Join(dir, s.name)
		if *updateSyncSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != body {
			t.Errorf("seed %s missing or out of date (run with -update-sync-seeds): %v", s.name, err)
		}
	}
}

// FuzzParsePoolSync feeds arbitrary payloads to the parsers of the
// POOL_SYNC messages (kind 37 + kind%7): none may panic, and whatever
// one accepts encodes back to the same bytes, so no two payloads mean the
// same thing. The seeds are in testdata/fuzz/FuzzParsePoolSync.
func FuzzParsePoolSync(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		k := kindPoolHello + uint16(kind%7)
		again, err := parseSync(k, b)
		if err != nil {
			return
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("kind %d: accepted %x, encodes back as %x", k, b, again)
		}
	})
}
