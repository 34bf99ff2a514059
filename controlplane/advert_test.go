package controlplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sampleAdverts() []*advert {
	return []*advert{
		{Origin: "alice", Seq: 1 << 60, Lifetime: 120000, Links: []advLink{
			{Peer: "bob", Flags: flagUp | flagQKDUp | flagUsable, State: InService, Cost: 10,
				TxStock: 64 << 20, RxStock: 63 << 20, FillRate: 1.25e5, ConsumeRate: 3e4, QBER: 0.021, SecretRate: 1e6},
			{Peer: "carol.lab-1", Flags: flagUp, State: Standby, TxStock: 100, RxStock: 0, QBER: 0.5},
			{Peer: "dave_2", Flags: flagUp | flagQKDUp | flagUsable, State: Standby, Cost: 50, TxStock: 1 << 20, RxStock: 2 << 20},
			{Peer: "erin", Flags: 0, State: Reserved},
		}},
		{Origin: "bob", Seq: 7, Lifetime: 1},
		{Origin: "zed", Seq: 8, Lifetime: 0}, // flush
	}
}

func TestAdvertRoundTrip(t *testing.T) {
	advs := sampleAdverts()
	msg := appendMessage(nil, advs)
	n := msgHeaderLen
	for _, a := range advs {
		n += a.encodedLen()
	}
	if len(msg) != n {
		t.Errorf("message is %d bytes, encodedLen sums to %d", len(msg), n)
	}
	got, err := parseMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, advs) {
		t.Errorf("parsed %+v, want %+v", got, advs)
	}
	// The layout of doc.go: origin at 5, seq, lifetime, link count, then
	// the first link's peer, flags, state, cost.
	if msg[4] != 5 || string(msg[5:10]) != "alice" || binary.BigEndian.Uint64(msg[10:]) != 1<<60 ||
		binary.BigEndian.Uint32(msg[18:]) != 120000 || binary.BigEndian.Uint16(msg[22:]) != 4 ||
		msg[24] != 3 || string(msg[25:28]) != "bob" || msg[28] != 7 || msg[29] != 0 || binary.BigEndian.Uint32(msg[30:]) != 10 {
		t.Errorf("layout differs from doc.go: % x", msg[:40])
	}
	// Every truncation is an error naming a field, never a panic.
	for i := range len(msg) {
		_, err := parseMessage(msg[:i])
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("parse of %d of %d bytes: %v, want a *ParseError", i, len(msg), err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	one := func(f func(a *advert)) []byte {
		a := *sampleAdverts()[0]
		a.Links = append([]advLink(nil), a.Links...)
		f(&a)
		return appendMessage(nil, []*advert{&a})
	}
	good := one(func(*advert) {})
	patch := func(off int, b ...byte) []byte {
		m := bytes.Clone(good)
		copy(m[off:], b)
		return m
	}
	// Offsets in good: origin length 4, origin 5, seq 10, lifetime 18,
	// link count 22, link[0] peer length 24, peer 25, flags 28, state 29,
	// cost 30, tx 34, rx 42, fill 50, consume 58, qber 66, skr 74; link[1]
	// at 82.
	for _, tc := range []struct {
		name  string
		msg   []byte
		field string
		off   int
	}{
		{"too long", make([]byte, MaxMessageLen+1), "message", 0},
		{"count 0", []byte{1, 1, 0, 0}, "advert count", 2},
		{"origin length 0", patch(4, 0), "advert[0].origin length", 4},
		{"origin length 65", patch(4, 65), "advert[0].origin length", 4},
		{"origin byte", patch(6, ' '), "advert[0].origin", 6},
		{"lifetime", patch(18, 0xff, 0xff, 0xff, 0xff), "advert[0].lifetime", 18},
		{"links in flush", patch(18, 0, 0, 0, 0), "advert[0].link count", 22},
		{"link count", patch(22, 1, 1), "advert[0].link count", 22},
		{"flags", patch(28, 0x0f), "advert[0].link[0].flags", 28},
		{"usable down", patch(28, flagQKDUp|flagUsable), "advert[0].link[0].flags", 28},
		{"state", patch(29, 4), "advert[0].link[0].state", 29},
		{"usable out of service", patch(29, byte(OutOfService)), "advert[0].link[0].flags", 28},
		{"cost 0", patch(30, 0, 0, 0, 0), "advert[0].link[0].cost", 30},
		{"cost too high", patch(30, 0, 1, 0, 0), "advert[0].link[0].cost", 30},
		{"cost unusable", one(func(a *advert) { a.Links[1].Cost = 3 }), "advert[0].link[1].cost", 82 + 1 + 11 + 2},
		{"fill NaN", patch(50, 0x7f, 0xf8), "advert[0].link[0].fill rate", 50},
		{"consume negative", patch(58, 0xbf, 0xf0), "advert[0].link[0].consume rate", 58},
		{"minus zero", patch(74, 0x80, 0, 0, 0, 0, 0, 0, 0), "advert[0].link[0].secret rate", 74},
		{"qber > 1", one(func(a *advert) { a.Links[0].QBER = 1.5 }), "advert[0].link[0].qber", 66},
		{"skr inf", one(func(a *advert) { a.Links[0].SecretRate = math.Inf(1) }), "advert[0].link[0].secret rate", 74},
		{"peer is origin", one(func(a *advert) { a.Links[0].Peer = "alice" }), "advert[0].link[0].peer", 25},
		{"peer order", one(func(a *advert) { a.Links[1].Peer = "bob" }), "advert[0].link[1].peer", 83},
		{"trailing", append(bytes.Clone(good), 1), "message", len(good)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseMessage(tc.msg)
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Field != tc.field || pe.Offset != tc.off {
				t.Errorf("parse = %v, want field %q at offset %d", err, tc.field, tc.off)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q at offset %d", tc.field, tc.off)) {
				t.Errorf("error text %q", err)
			}
		})
	}
}

// TestPack: database sync splits a large LSDB into messages of at most
// MaxMessageLen, losing nothing.
func TestPack(t *testing.T) {
	n := newMemnet(t)
	r := n.add("a", nil)
	links := make([]advLink, MaxLinks)
	for i := range links {
		links[i] = advLink{Peer: fmt.Sprintf("%064d", i), Flags: flagUp}
	}
	var advs []*advert
	r.mu.Lock()
	now := n.clock.Now()
	for i := range 10 {
		a := &advert{Origin: fmt.Sprintf("n%d", i), Seq: 1, Lifetime: 60000, Links: links}
		r.installLocked(a, now)
		advs = append(advs, a)
	}
	msgs := r.packLocked(advs, now)
	r.mu.Unlock()
	total := 0
	for _, m := range msgs {
		if len(m.msg) > MaxMessageLen {
			t.Errorf("message of %d bytes", len(m.msg))
		}
		got, err := parseMessage(m.msg)
		if err != nil || len(got) != m.n {
			t.Fatalf("parse: %v, %d adverts, want %d", err, len(got), m.n)
		}
		total += len(got)
	}
	if total != len(advs) || len(msgs) < 2 {
		t.Errorf("%d adverts in %d messages, want %d in several", total, len(msgs), len(advs))
	}
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzParseAdvert from real encodings")

// TestFuzzSeeds keeps the committed seed corpus in step with the encoder:
// with -update-seeds it rewrites it, otherwise it checks that each seed
// still parses.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseAdvert")
	seeds := map[string][]byte{}
	advs := sampleAdverts()
	for i, a := range advs {
		seeds[fmt.Sprintf("advert%d", i)] = appendMessage(nil, []*advert{a})
	}
	seeds["batch"] = appendMessage(nil, advs)
	if *updateSeeds {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name := range seeds {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("seed %s missing (run with -update-seeds): %v", name, err)
		}
	}
}

// FuzzParseAdvert: the parser never panics, and whatever it accepts
// re-encodes to exactly the same bytes (the encoding is canonical) and
// parses again to the same adverts.
func FuzzParseAdvert(f *testing.F) {
	for _, a := range sampleAdverts() {
		f.Add(appendMessage(nil, []*advert{a}))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		advs, err := parseMessage(b)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		re := appendMessage(nil, advs)
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, re)
		}
		again, err := parseMessage(re)
		if err != nil || !reflect.DeepEqual(again, advs) {
			t.Fatalf("re-parse: %v, %+v != %+v", err, again, advs)
		}
	})
}
