package frame

import (
	"bytes"
	"testing"
)

// benchRelay is a typical RELAY: 2,048 keys of 32 bytes.
func benchRelay() Relay {
	return Relay{Flow: 7, FirstSeq: 1 << 20, PadPos: 1 << 30, Count: 2048, KeySize: 32, HopLimit: 8,
		Src: "node-frankfurt-01", Dst: "node-paris-02", Payload: seq(2048 * 32)}
}

func BenchmarkParseRelay(b *testing.B) {
	r := benchRelay()
	frame, err := AppendRelay(nil, &r)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := ParseRelay(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRelayHeader(b *testing.B) {
	r := benchRelay()
	buf := make([]byte, 0, r.FrameLen())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendRelayHeader(buf, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReaderNext(b *testing.B) {
	r := benchRelay()
	frame, err := AppendRelay(nil, &r)
	if err != nil {
		b.Fatal(err)
	}
	fr := NewReader(&loopReader{data: bytes.Repeat(frame, 4)})
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, _, err := fr.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
