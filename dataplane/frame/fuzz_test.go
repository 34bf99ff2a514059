package frame

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var writeCorpus = flag.Bool("write-corpus", false, "write the seed corpus of the fuzz targets to testdata/fuzz")

// checkParse parses b as a frame of type typ. Whatever b is, parsing must not
// panic, must fail only with a well-formed *Error, and must give a frame that
// encodes back to b exactly.
func checkParse(t *testing.T, typ Type, b []byte) {
	t.Helper()
	f, err := parseAny(typ, b)
	if err != nil {
		var fe *Error
		if !errors.As(err, &fe) {
			t.Fatalf("parse %v: error %T %v, want *Error", typ, err, err)
		}
		if fe.Type != typ || fe.Field == "" || fe.Reason == "" || fe.Offset < 0 || fe.Offset > len(b) {
			t.Fatalf("parse %v of %d bytes: bad error %#v", typ, len(b), fe)
		}
		return
	}
	out, err := appendAny(nil, f)
	if err != nil {
		t.Fatalf("parse %v gave %+v, which does not encode: %v", typ, f, err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("parse %v then append:\n got %x\nwant %x", typ, out, b)
	}
	if frameLen(f) != len(b) {
		t.Fatalf("FrameLen %d for %d bytes", frameLen(f), len(b))
	}
	if r, ok := f.(Relay); ok {
		h, err := AppendRelayHeader(nil, &r)
		if err != nil || !bytes.Equal(h, b[:r.HeaderLen()]) {
			t.Fatalf("AppendRelayHeader differs from the parsed header (%v)", err)
		}
	}
}

// seeds returns the seed corpus of the parser of type typ: every golden
// frame, the small boundary frames of typ, and broken variants of typ's
// golden frame.
func seeds(tb testing.TB, typ Type) map[string][]byte {
	s := map[string][]byte{}
	var own []byte
	for _, g := range golden {
		b := unhexDump(tb, g.dump)
		s["valid-"+g.name] = b
		if typeOf(g.frame) == typ {
			own = b
		}
	}
	for _, tc := range boundaryFrames(false) {
		if typeOf(tc.frame) != typ {
			continue
		}
		b, err := appendAny(nil, tc.frame)
		if err != nil {
			tb.Fatal(err)
		}
		s["valid-"+sanitize(tc.name)] = b
	}
	edit := func(name string, f func(b []byte) []byte) {
		s["broken-"+name] = f(bytes.Clone(own))
	}
	edit("truncated", func(b []byte) []byte { return b[:len(b)-1] })
	edit("trailing", func(b []byte) []byte { return append(b, 0) })
	edit("version1", func(b []byte) []byte { b[0] = 1; return b })
	edit("flags", func(b []byte) []byte { b[3] |= 0x80; return b })
	edit("prefix-only", func(b []byte) []byte { return b[:PrefixLen] })
	switch typ {
	case TypeRelay:
		edit("count0", func(b []byte) []byte { copy(b[relayOffCount:], []byte{0, 0, 0, 0}); return b })
		edit("node-id", func(b []byte) []byte { b[relayOffSrc] = '/'; return b })
	case TypeCompletion:
		edit("status0", func(b []byte) []byte { b[complOffStatus] = 0; return b })
		edit("reason-utf8", func(b []byte) []byte { b[len(b)-1] = 0xff; return b })
	case TypeAssign:
		edit("blocks-short", func(b []byte) []byte { b[assignOffBlockCount+1] = 3; return b })
		edit("pad-position", func(b []byte) []byte { copy(b[assignOffPadPos:], bytes.Repeat([]byte{0xff}, 8)); return b })
	case TypeAssignAck:
		edit("status2", func(b []byte) []byte { b[ackOffStatus] = 2; return b })
	case TypeDiscard:
		edit("dst-len", func(b []byte) []byte { b[discardOffDstLen] = 2; return b })
	case TypeControl:
		edit("length1", func(b []byte) []byte { b[7] = 1; return b[:9] })
	case TypeSync:
		edit("used-above-head", func(b []byte) []byte { b[positionsOffLow] = 0xff; return b })
		edit("length40", func(b []byte) []byte { b[7] = 40; return append(b, make([]byte, 8)...) })
	case TypeSyncAgree:
		edit("from-above-to", func(b []byte) []byte { b[positionsOffLow+positionsDirLen] = 0xff; return b })
	}
	s["broken-empty"] = []byte{}
	return s
}

// fuzzName returns the part of a fuzz target's name after "FuzzParse".
func fuzzName(t Type) string {
	return map[Type]string{TypeRelay: "Relay", TypeCompletion: "Completion", TypeAssign: "Assign",
		TypeAssignAck: "AssignAck", TypeDiscard: "Discard", TypeControl: "Control",
		TypeSync: "Sync", TypeSyncAgree: "SyncAgree"}[t]
}

func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if c == ' ' {
			b[i] = '-'
		}
	}
	return string(b)
}

// streamSeeds returns the seed corpus of FuzzReader.
func streamSeeds(tb testing.TB) map[string][]byte {
	_, all := stream(tb, false)
	relay, control := goldenBytes(tb, "RELAY"), goldenBytes(tb, "CONTROL")
	return map[string][]byte{
		"stream-golden":        all,
		"stream-cut":           all[:len(all)-3],
		"stream-bad-version":   append(bytes.Clone(all[:len(relay)]), append([]byte{9}, all[len(relay)+1:]...)...),
		"stream-claims-8MiB":   {Version, 1, 0, 0, 0, 0x80, 0, 0xc0, 1, 2, 3},
		"stream-relay-control": append(relay, control...),
	}
}

func addSeeds(f *testing.F, s map[string][]byte) {
	for _, b := range s {
		f.Add(b)
	}
}

func fuzzParse(f *testing.F, typ Type) {
	addSeeds(f, seeds(f, typ))
	f.Fuzz(func(t *testing.T, b []byte) { checkParse(t, typ, b) })
}

func FuzzParseRelay(f *testing.F)      { fuzzParse(f, TypeRelay) }
func FuzzParseCompletion(f *testing.F) { fuzzParse(f, TypeCompletion) }
func FuzzParseAssign(f *testing.F)     { fuzzParse(f, TypeAssign) }
func FuzzParseAssignAck(f *testing.F)  { fuzzParse(f, TypeAssignAck) }
func FuzzParseDiscard(f *testing.F)    { fuzzParse(f, TypeDiscard) }
func FuzzParseControl(f *testing.F)    { fuzzParse(f, TypeControl) }
func FuzzParseSync(f *testing.F)       { fuzzParse(f, TypeSync) }
func FuzzParseSyncAgree(f *testing.F)  { fuzzParse(f, TypeSyncAgree) }

// FuzzReader checks that a Reader splits any stream the same way whether it
// arrives at once or a byte at a time, returns only bytes of the stream, in
// order, with valid prefixes, and that each frame parses or fails cleanly.
func FuzzReader(f *testing.F) {
	addSeeds(f, streamSeeds(f))
	for typ := TypeRelay; typ <= lastType; typ++ {
		addSeeds(f, seeds(f, typ))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, errWhole := readAll(t, NewReader(bytes.NewReader(data)))
		bytewise, errBytes := readAll(t, NewReader(iotest.OneByteReader(bytes.NewReader(data))))
		sameFrames(t, bytewise, whole)
		if fmt.Sprint(errWhole) != fmt.Sprint(errBytes) {
			t.Fatalf("errors differ: %v, one byte at a time %v", errWhole, errBytes)
		}
		off := 0
		for _, b := range whole {
			if !bytes.Equal(b, data[off:off+len(b)]) {
				t.Fatalf("frame at %d is not the stream's bytes", off)
			}
			off += len(b)
			p, err := ParsePrefix(b)
			if err != nil || p.FrameLen() != len(b) {
				t.Fatalf("Reader returned a frame with prefix %+v, %v for %d bytes", p, err, len(b))
			}
			checkParse(t, p.Type, b)
		}
		switch {
		case errWhole == io.EOF:
			if off != len(data) {
				t.Fatalf("io.EOF with %d bytes left", len(data)-off)
			}
		case errWhole == io.ErrUnexpectedEOF:
			if off == len(data) {
				t.Fatal("io.ErrUnexpectedEOF at a frame boundary")
			}
		default:
			var fe *Error
			if !errors.As(errWhole, &fe) {
				t.Fatalf("error %T %v, want io.EOF, io.ErrUnexpectedEOF or *Error", errWhole, errWhole)
			}
		}
	})
}

// corpus returns the seed corpus files of every fuzz target, by target
// and file name.
func corpus(tb testing.TB) map[string]map[string][]byte {
	files := func(seeds map[string][]byte) map[string][]byte {
		m := map[string][]byte{}
		for name, b := range seeds {
			m[name] = corpusFile(b)
		}
		return m
	}
	targets := map[string]map[string][]byte{"FuzzReader": files(streamSeeds(tb))}
	for typ := TypeRelay; typ <= lastType; typ++ {
		targets["FuzzParse"+fuzzName(typ)] = files(seeds(tb, typ))
	}
	for target := range msgTargets {
		m := map[string][]byte{}
		for name, s := range msgSeeds(tb, target) {
			m[name] = msgCorpusFile(target, s)
		}
		targets[target] = m
	}
	return targets
}

// corpusFile returns the contents of a seed corpus file holding b.
func corpusFile(b []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
}

// TestWriteFuzzCorpus writes the seed corpus under testdata/fuzz when run
// with -write-corpus; the files are committed so that plain `go test` runs
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
		old, err := filepath.Glob(filepath.Join(dir, "seed-*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range old { // crashers kept as regressions have other names
			if err := os.Remove(name); err != nil {
				t.Fatal(err)
			}
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFuzzCorpus checks that the committed seed corpus is what
// TestWriteFuzzCorpus would write now: when a frame changes, its seeds
// must be written again.
func TestFuzzCorpus(t *testing.T) {
	if *writeCorpus {
		t.Skip("rewriting the corpus")
	}
	const fix = "rewrite it with go test -run TestWriteFuzzCorpus -write-corpus ./dataplane/frame"
	targets := corpus(t)
	dirs, err := filepath.Glob(filepath.Join("testdata", "fuzz", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		if _, ok := targets[filepath.Base(dir)]; !ok {
			t.Errorf("%s: no such fuzz target; remove it", dir)
		}
	}
	for target, seeds := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		files, err := filepath.Glob(filepath.Join(dir, "seed-*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if _, ok := seeds[strings.TrimPrefix(filepath.Base(file), "seed-")]; !ok {
				t.Errorf("%s is not a seed of %s any more: %s", file, target, fix)
			}
		}
		for name, b := range seeds {
			file := filepath.Join(dir, "seed-"+name)
			got, err := os.ReadFile(file)
			if err != nil {
				t.Errorf("%s: %v: %s", target, err, fix)
			} else if !bytes.Equal(got, b) {
				t.Errorf("%s is out of date: %s", file, fix)
			}
		}
	}
}

// TestSeeds checks that the seeds are what their names say.
func TestSeeds(t *testing.T) {
	for typ := TypeRelay; typ <= lastType; typ++ {
		for name, b := range seeds(t, typ) {
			_, err := parseAny(typ, b)
			own := strings.HasPrefix(name, "valid-") && (name == "valid-"+typ.String() || !isGoldenName(name[len("valid-"):]))
			switch {
			case strings.HasPrefix(name, "broken-") && err == nil:
				t.Errorf("%v seed %s parses", typ, name)
			case own && err != nil:
				t.Errorf("%v seed %s: %v", typ, name, err)
			}
		}
	}
}

func isGoldenName(name string) bool {
	for _, g := range golden {
		if g.name == name {
			return true
		}
	}
	return false
}
