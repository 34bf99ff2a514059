package qkdsim

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary values to the durable record decoder:
// it must never panic, and whatever it accepts must be exactly the
// encoding of what it returns. The seed corpus is in
// testdata/fuzz/FuzzDecodeRecord.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(record{master: true, blockSize: 4096, high: 1772366400000000000}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			if r != (record{}) {
				t.Fatalf("error %v with record %+v", err, r)
			}
			return
		}
		if again := r.encode(); !bytes.Equal(again, b) {
			t.Fatalf("accepted %x as %+v, which encodes as %x", b, r, again)
		}
		if r.blockSize < 8 || r.blockSize%8 != 0 || r.blockSize > maxBlockSize {
			t.Fatalf("accepted block size %d", r.blockSize)
		}
	})
}
