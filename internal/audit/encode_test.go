package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/ringstore"
)

var writeCorpus = flag.Bool("write-corpus", false, "write the seed corpus of FuzzParseRecord to testdata/fuzz")

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

// golden holds one record of each kind as docs/audit.md shows it
// (TestDocGolden).
var golden = []struct {
	name string
	rec  rec
	dump string
}{
	{"pad-used", rec{time: t0.UnixNano(), kind: kindUsed, tx: true, peer: "b", from: 4096, to: 5184}, `
01 02 01 00 1898b5d9b3d68000 01 62 0000000000001000 0000000000001440 0704eb9b`},
	{"pad-appended", rec{time: t0.UnixNano(), kind: kindAppended, dir: 1, peer: "b", from: 1 << 20, to: 1<<20 + 1<<16, s1: "blk-7"}, `
01 01 00 01 1898b5d9b3d68000 01 62 0000000000100000 0000000000110000 05 626c6b2d37 a22b6bae`},
	{"pad-burnt", rec{time: t0.UnixNano(), kind: kindBurnt, peer: "b", from: 0, to: 5000000, s1: "sync"}, `
01 03 00 00 1898b5d9b3d68000 01 62 0000000000000000 00000000004c4b40 04 73796e63 21db7779`},
	{"keys", rec{time: t0.UnixNano(), kind: kindKeys, peer: "d", s1: "sae-1", s2: "master",
		ids: []ringstore.KeyID{ringstore.DeriveKeyID("a", "d", 7, 0), ringstore.DeriveKeyID("a", "d", 7, 1)}}, `
01 04 00 00 1898b5d9b3d68000 01 64 05 7361652d31 06 6d6173746572 00000002
e18ba9a88d355c2c9b2b48ebbcfafd0c 26f7603b464e5118a8ee4d49d6a5d9aa d6df3ebd`},
}

func TestGolden(t *testing.T) {
	for _, g := range golden {
		want := unhexDump(t, g.dump)
		got := appendRec(nil, &g.rec)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoded\n %x\nwant %x", g.name, got, want)
		}
		if n := encodedLen(&g.rec); n != len(want) {
			t.Errorf("%s: encodedLen %d, want %d", g.name, n, len(want))
		}
		e, err := parseRec(want)
		if err != nil || !reflect.DeepEqual(e, g.rec) {
			t.Errorf("%s: parsed %+v, %v\nwant %+v", g.name, e, err, g.rec)
		}
		// Every truncation and one trailing byte fail cleanly.
		for i := range len(want) {
			if _, err := parseRec(want[:i]); err == nil {
				t.Errorf("%s: %d of %d bytes parsed", g.name, i, len(want))
			}
		}
		if _, err := parseRec(append(bytes.Clone(want), 0)); err == nil {
			t.Errorf("%s: a trailing byte parsed", g.name)
		}
	}
	if k := string(recKey(nil, t0.UnixNano(), 1)); k != "audit/1898b5d9b3d6800000000001" || len(k) != keyLen {
		t.Errorf("key %q", k)
	}
	if tm, ok := keyTime("audit/1898b5d9b3d6800000000001"); !ok || tm != t0.UnixNano() {
		t.Errorf("keyTime = %d, %v", tm, ok)
	}
	for _, k := range []string{"audit/1898b5d9b3d68000", "audit/x898b5d9b3d6800000000001", "audit/f898b5d9b3d6800000000001", "pads/1898b5d9b3d6800000000001"} {
		if _, ok := keyTime(k); ok {
			t.Errorf("keyTime(%q) accepted", k)
		}
	}
}

// TestDocGolden: docs/audit.md shows the golden records byte for byte.
func TestDocGolden(t *testing.T) {
	doc, err := os.ReadFile("../../docs/audit.md")
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
			t.Fatalf("docs/audit.md line %d: golden %s is not followed by a fenced block", i+1, name)
		}
		var body strings.Builder
		for i += 2; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body.WriteString(lines[i] + "\n")
		}
		blocks[name] = body.String()
	}
	for _, g := range golden {
		d, ok := blocks[g.name]
		if !ok {
			t.Errorf("docs/audit.md has no golden %s", g.name)
			continue
		}
		if got, want := unhexDump(t, d), unhexDump(t, g.dump); !bytes.Equal(got, want) {
			t.Errorf("docs/audit.md golden %s:\n got %x\nwant %x", g.name, got, want)
		}
		delete(blocks, g.name)
	}
	for name := range blocks {
		t.Errorf("docs/audit.md has golden %s, which the tests do not know", name)
	}
}

// withCRC replaces the CRC of value b after editing it, so that the
// edit, not the checksum, is what a parser meets.
func withCRC(b []byte) []byte {
	body := b[:len(b)-crcLen]
	return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
}

// broken are values each breaking one rule, with the field the error
// must name.
func broken(tb testing.TB) map[string]struct {
	b     []byte
	field string
} {
	used := unhexDump(tb, golden[0].dump)
	keys := unhexDump(tb, golden[3].dump)
	edit := func(src []byte, f func(b []byte) []byte) []byte { return withCRC(f(bytes.Clone(src))) }
	type bad = struct {
		b     []byte
		field string
	}
	return map[string]bad{
		"crc":           {func() []byte { b := bytes.Clone(used); b[20] ^= 1; return b }(), "crc"},
		"version":       {edit(used, func(b []byte) []byte { b[offVersion] = 2; return b }), "version"},
		"kind0":         {edit(used, func(b []byte) []byte { b[offKind] = 0; return b }), "kind"},
		"kind5":         {edit(used, func(b []byte) []byte { b[offKind] = 5; return b }), "kind"},
		"flags":         {edit(used, func(b []byte) []byte { b[offFlags] = 3; return b }), "flags"},
		"tx-on-keys":    {edit(keys, func(b []byte) []byte { b[offFlags] = 1; return b }), "flags"},
		"dir2":          {edit(used, func(b []byte) []byte { b[offDir] = 2; return b }), "dir"},
		"dir-on-keys":   {edit(keys, func(b []byte) []byte { b[offDir] = 1; return b }), "dir"},
		"time-negative": {edit(used, func(b []byte) []byte { b[offTime] = 0x80; return b }), "time"},
		"peer-empty": {edit(used, func(b []byte) []byte {
			return append(append(b[:offPeer:offPeer], 0), b[offPeer+2:]...)
		}), "peer"},
		"peer-too-long": {edit(used, func(b []byte) []byte { b[offPeer] = 200; return b }), "peer"},
		"empty-range":   {edit(used, func(b []byte) []byte { copy(b[22:30], b[14:22]); return b }), "to"},
		"count0":        {edit(keys, func(b []byte) []byte { copy(b[27:31], []byte{0, 0, 0, 0}); return b[:31+crcLen] }), "count"},
		"count-high":    {edit(keys, func(b []byte) []byte { copy(b[27:31], []byte{0, 0, 0x10, 1}); return b }), "count"},
		"count-short":   {edit(keys, func(b []byte) []byte { b[30] = 3; return b }), "key IDs"},
		"trailing":      {edit(used, func(b []byte) []byte { return append(b, 0, 0, 0, 0, 0) }), "length"},
		"empty":         {[]byte{}, "length"},
	}
}

func TestBrokenValues(t *testing.T) {
	for name, c := range broken(t) {
		_, err := parseRec(c.b)
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != c.field || de.Offset < 0 || de.Offset > len(c.b) || de.Reason == "" {
			t.Errorf("%s: %x: %v; want a DecodeError on %s", name, c.b, err, c.field)
		}
	}
}

// checkParse: whatever b is, parsing does not panic, fails only with a
// well-formed *DecodeError, and gives a record that encodes back to b.
func checkParse(t *testing.T, b []byte) {
	e, err := parseRec(b)
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) || de.Field == "" || de.Reason == "" || de.Offset < 0 || de.Offset > len(b) {
			t.Fatalf("parse of %x: bad error %#v", b, err)
		}
		return
	}
	if out := appendRec(nil, &e); !bytes.Equal(out, b) {
		t.Fatalf("parse then append:\n got %x\nwant %x", out, b)
	}
	if encodedLen(&e) != len(b) {
		t.Fatalf("encodedLen %d for %d bytes", encodedLen(&e), len(b))
	}
	r := e.record()
	if r.Kind != e.kind.public() || (e.kind == kindKeys) != (len(r.KeyIDs) > 0) {
		t.Fatalf("record %+v of %+v", r, e)
	}
}

// seeds is the seed corpus of FuzzParseRecord.
func seeds(tb testing.TB) map[string][]byte {
	s := map[string][]byte{}
	for _, g := range golden {
		s["valid-"+g.name] = unhexDump(tb, g.dump)
	}
	long := rec{time: 1, kind: kindBurnt, dir: 1, tx: true, peer: strings.Repeat("p", maxString), from: 1<<64 - 2, to: 1<<64 - 1, s1: strings.Repeat("r", maxString)}
	s["valid-longest-strings"] = appendRec(nil, &long)
	many := rec{kind: kindKeys, peer: "d", ids: make([]ringstore.KeyID, 300)}
	s["valid-300-ids-empty-sae"] = appendRec(nil, &many)
	for name, c := range broken(tb) {
		s["broken-"+name] = c.b
	}
	return s
}

func FuzzParseRecord(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Fuzz(checkParse)
}

// FuzzParseRecordBody fuzzes what the CRC covers: the input gets a
// correct CRC appended, so that the fuzzer explores the fields rather
// than the checksum.
func FuzzParseRecordBody(f *testing.F) {
	for _, b := range bodySeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkParse(t, binary.BigEndian.AppendUint32(bytes.Clone(body), crc32.Checksum(body, castagnoli)))
	})
}

// bodySeeds are the seeds without their CRCs.
func bodySeeds(tb testing.TB) map[string][]byte {
	s := map[string][]byte{}
	for name, b := range seeds(tb) {
		if len(b) >= crcLen && name != "broken-crc" {
			s[name] = b[:len(b)-crcLen]
		}
	}
	return s
}

// corpusFile is a seed in the format of testdata/fuzz.
func corpusFile(b []byte) []byte {
	return []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n")
}

// corpus gives the seeds of each fuzz target.
func corpus(tb testing.TB) map[string]map[string][]byte {
	return map[string]map[string][]byte{"FuzzParseRecord": seeds(tb), "FuzzParseRecordBody": bodySeeds(tb)}
}

// TestWriteFuzzCorpus rewrites testdata/fuzz from the seeds when run with
// -write-corpus; the files are committed so that plain `go test` runs
// them too.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite testdata/fuzz")
	}
	for target, seeds := range corpus(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		for _, name := range old { // crashers kept as regressions have other names
			os.Remove(name)
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), corpusFile(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFuzzCorpus: the committed seeds are what TestWriteFuzzCorpus would
// write now.
func TestFuzzCorpus(t *testing.T) {
	if *writeCorpus {
		t.Skip("rewriting the corpus")
	}
	const fix = "rewrite it with go test ./internal/audit -run TestWriteFuzzCorpus -args -write-corpus"
	for target, want := range corpus(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		files, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		for _, file := range files {
			if _, ok := want[strings.TrimPrefix(filepath.Base(file), "seed-")]; !ok {
				t.Errorf("%s is not a seed any more: %s", file, fix)
			}
		}
		for name, b := range want {
			got, err := os.ReadFile(filepath.Join(dir, "seed-"+name))
			if err != nil || !bytes.Equal(got, corpusFile(b)) {
				t.Errorf("%s: seed %s is missing or stale (%v): %s", target, name, err, fix)
			}
		}
	}
}
