package relay

import (
	"bytes"
	"testing"
)

func TestFillKeys(t *testing.T) {
	for _, src := range []KeySource{KeysAESCTR, KeysCryptoRand} {
		a, b := make([]byte, 3<<20), make([]byte, 3<<20) // zero, as fillKeys requires
		if err := fillKeys(src, a); err != nil {
			t.Fatalf("%v: %v", src, err)
		}
		if err := fillKeys(src, b); err != nil {
			t.Fatalf("%v: %v", src, err)
		}
		if bytes.Equal(a, b) {
			t.Fatalf("%v: two draws are equal", src)
		}
		// A crude check that the generator is not stuck: every 1 MiB
		// stretch (across a rekey for aes-ctr) has close to 50% ones.
		for off := 0; off < len(a); off += 1 << 20 {
			ones := 0
			for _, c := range a[off : off+1<<20] {
				for ; c != 0; c &= c - 1 {
					ones++
				}
			}
			if frac := float64(ones) / float64(8<<20); frac < 0.499 || frac > 0.501 {
				t.Fatalf("%v: bytes %d.. have %.4f ones", src, off, frac)
			}
		}
	}
	if KeysAESCTR.String() != "aes-ctr" || KeysCryptoRand.String() != "crypto/rand" {
		t.Fatal("KeySource names changed")
	}
}

func TestKeyBufPool(t *testing.T) {
	b := getKeyBuf(100)
	for i := range b {
		b[i] = 0xff
	}
	putKeyBuf(b)
	if !bytes.Equal(b, make([]byte, 100)) {
		t.Fatal("putKeyBuf did not zeroise the keys")
	}
	if got := getKeyBuf(keyBufs.size + 1); len(got) != keyBufs.size+1 {
		t.Fatalf("large buffer has length %d", len(got))
	}
}
