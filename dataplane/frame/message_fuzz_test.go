package frame

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// msgTargets are the fuzz targets of the routed messages and the kinds
// each parses; a target of more than one kind takes the kind's index in
// the list as its first argument.
var msgTargets = map[string][]Kind{
	"FuzzParseRouted":    {KindRouted},
	"FuzzParseSAEAssign": {KindSAEAssign, KindSAEAssignAck, KindSAEAssignCancel, KindSAEAssignCancelAck},
	"FuzzParseKeyStream": {KindKeyStream, KindKeyStreamAck},
	"FuzzParsePoolSync":  {KindPoolHello, KindPoolSyncReq, KindPoolSyncReady, KindPoolInvReq, KindPoolInv, KindPoolDrop, KindPoolDropAck},
}

// msgSeed is one seed of a message fuzz target.
type msgSeed struct {
	kind uint8 // index into the target's kinds
	b    []byte
}

// msgSeeds returns the seed corpus of a message fuzz target: every sample
// message of its kinds, and broken variants of each.
func msgSeeds(tb testing.TB, target string) map[string]msgSeed {
	kinds := msgTargets[target]
	s := map[string]msgSeed{}
	for _, m := range sampleMessages() {
		i := slices.Index(kinds, kindOfMsg(m.msg))
		if i < 0 {
			continue
		}
		b := encodeMsg(tb, m.msg)
		name := sanitize(m.name)
		s["valid-"+name] = msgSeed{uint8(i), b}
		s["broken-"+name+"-truncated"] = msgSeed{uint8(i), b[:len(b)-1]}
		s["broken-"+name+"-trailing"] = msgSeed{uint8(i), append(slices.Clone(b), 0)}
		if kinds[0] != KindRouted {
			v := slices.Clone(b)
			v[0] = 2
			s["broken-"+name+"-version2"] = msgSeed{uint8(i), v}
		}
	}
	for i := range kinds {
		s[fmt.Sprintf("broken-empty-%d", i)] = msgSeed{uint8(i), []byte{}}
	}
	return s
}

// msgCorpusFile returns the contents of a seed corpus file of target.
func msgCorpusFile(target string, s msgSeed) []byte {
	if len(msgTargets[target]) == 1 {
		return corpusFile(s.b)
	}
	return fmt.Appendf(nil, "go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", s.kind, s.b)
}

func fuzzMsg(f *testing.F, target string) {
	kinds := msgTargets[target]
	for _, s := range msgSeeds(f, target) {
		if len(kinds) == 1 {
			f.Add(s.b)
		} else {
			f.Add(s.kind, s.b)
		}
	}
	if len(kinds) == 1 {
		f.Fuzz(func(t *testing.T, b []byte) { checkMsg(t, kinds[0], b) })
		return
	}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) { checkMsg(t, kinds[int(kind)%len(kinds)], b) })
}

// The fuzz targets: whatever the bytes, parsing does not panic, fails only
// with an *Error naming a field, and what it accepts encodes back to the
// same bytes.
func FuzzParseRouted(f *testing.F)    { fuzzMsg(f, "FuzzParseRouted") }
func FuzzParseSAEAssign(f *testing.F) { fuzzMsg(f, "FuzzParseSAEAssign") }
func FuzzParseKeyStream(f *testing.F) { fuzzMsg(f, "FuzzParseKeyStream") }
func FuzzParsePoolSync(f *testing.F)  { fuzzMsg(f, "FuzzParsePoolSync") }

// TestMsgSeeds checks that the seeds are what their names say.
func TestMsgSeeds(t *testing.T) {
	for target, kinds := range msgTargets {
		for name, s := range msgSeeds(t, target) {
			_, err := parseMsg(kinds[s.kind], s.b)
			switch {
			case bytes.HasPrefix([]byte(name), []byte("broken-")) && err == nil:
				t.Errorf("%s seed %s parses", target, name)
			case bytes.HasPrefix([]byte(name), []byte("valid-")) && err != nil:
				t.Errorf("%s seed %s: %v", target, name, err)
			}
		}
	}
}
