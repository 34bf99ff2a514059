package supply

import (
	"bytes"
	"testing"
)

// FuzzParseRouted feeds arbitrary payloads to the parsers of the routed
// control messages a node accepts from other nodes (ASSIGN, ASSIGN_ACK,
// STREAM, STREAM_ACK, ASSIGN_CANCEL): none may panic, and whatever one accepts encodes
// back to the same bytes, so no two payloads mean the same thing. The seed
// corpus is in testdata/fuzz/FuzzParseRouted.
func FuzzParseRouted(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		var again []byte
		switch kind % 5 {
		case 0:
			as, err := parseAssignments(b)
			if err != nil {
				return
			}
			again = appendAssignments(nil, as)
		case 1:
			acks, err := parseAcks(b)
			if err != nil {
				return
			}
			for _, a := range acks {
				if len(a.msg) > 1024 {
					return // the encoder cuts messages: not canonical above
				}
			}
			again = appendAcks(nil, acks)
		case 2:
			name, es, err := parseStream(b)
			if err != nil {
				return
			}
			again = appendStream(nil, name, es)
		case 3:
			name, acks, err := parseStreamAcks(b)
			if err != nil {
				return
			}
			for _, a := range acks {
				if len(a.msg) > 256 {
					return
				}
			}
			again = appendStreamAcks(nil, name, acks)
		case 4:
			ids, err := parseCancel(b)
			if err != nil {
				return
			}
			again = appendCancel(nil, ids)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("kind %d: accepted %x, encodes back as %x", kind%5, b, again)
		}
	})
}
