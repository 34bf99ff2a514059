package otp

import (
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test vector: %v", err)
	}
	return b
}

// ietfText is the message of RFC 8439 appendix A.3 test vectors 2 and 3.
const ietfText = "Any submission to the IETF intended by the Contributor for publication as all or part of an IETF Internet-Draft or RFC and any statement made within the context of an IETF activity is considered an \"IETF Contribution\". Such statements include oral statements in IETF sessions, as well as written and electronic communications made at any time or place, which are addressed to"

const jabberwocky = "'Twas brillig, and the slithy toves\nDid gyre and gimble in the wabe:\nAll mimsy were the borogoves,\nAnd the mome raths outgrabe."

// TestTagRFC8439 checks Tag and Verify against RFC 8439: the example of
// section 2.5.2 and the Poly1305 vectors of appendix A.3.
func TestTagRFC8439(t *testing.T) {
	zero16 := strings.Repeat("00", 16)
	vectors := []struct {
		name          string
		key, msg, tag string // hex, except msg when text is set
		text          string
	}{
		{"2.5.2", "85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b", "", "a8061dc1305136c6c22b8baf0c0127a9", "Cryptographic Forum Research Group"},
		{"A.3 #1", strings.Repeat("00", 32), strings.Repeat("00", 64), zero16, ""},
		{"A.3 #2", zero16 + "36e5f6b5c5e06070f0efca96227a863e", "", "36e5f6b5c5e06070f0efca96227a863e", ietfText},
		{"A.3 #3", "36e5f6b5c5e06070f0efca96227a863e" + zero16, "", "f3477e7cd95417af89a6b8794c310cf0", ietfText},
		{"A.3 #4", "1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0", "", "4541669a7eaaee61e708dc7cbcc5eb62", jabberwocky},
		{"A.3 #5", "02" + strings.Repeat("00", 31), strings.Repeat("ff", 16), "03" + strings.Repeat("00", 15), ""},
		{"A.3 #6", "02" + strings.Repeat("00", 15) + strings.Repeat("ff", 16), "02" + strings.Repeat("00", 15), "03" + strings.Repeat("00", 15), ""},
		{"A.3 #7", "01" + strings.Repeat("00", 31), strings.Repeat("ff", 16) + "f0" + strings.Repeat("ff", 15) + "11" + strings.Repeat("00", 15), "05" + strings.Repeat("00", 15), ""},
		{"A.3 #8", "01" + strings.Repeat("00", 31), strings.Repeat("ff", 16) + "fb" + strings.Repeat("fe", 15) + strings.Repeat("01", 16), zero16, ""},
		{"A.3 #9", "02" + strings.Repeat("00", 31), "fd" + strings.Repeat("ff", 15), "fa" + strings.Repeat("ff", 15), ""},
		{"A.3 #10", "0100000000000000040000000000000000000000000000000000000000000000",
			"e33594d7505e43b900000000000000003394d7505e4379cd01000000000000000000000000000000000000000000000001000000000000000000000000000000",
			"14000000000000005500000000000000", ""},
		{"A.3 #11", "0100000000000000040000000000000000000000000000000000000000000000",
			"e33594d7505e43b900000000000000003394d7505e4379cd010000000000000000000000000000000000000000000000",
			"13000000000000000000000000000000", ""},
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			key := (*[MACKeySize]byte)(unhex(t, v.key))
			msg := []byte(v.text)
			if v.text == "" {
				msg = unhex(t, v.msg)
			}
			want := [TagSize]byte(unhex(t, v.tag))
			if got := Tag(key, msg); got != want {
				t.Fatalf("Tag = %x, want %x", got, want)
			}
			if !Verify(key, msg, want) {
				t.Fatal("Verify rejects the RFC's tag")
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	var key [MACKeySize]byte
	for i := range key {
		key[i] = byte(i * 7)
	}
	msg := []byte("a relay frame: header and encrypted keys")
	tag := Tag(&key, msg)
	for bit := range TagSize * 8 {
		bad := tag
		bad[bit/8] ^= 1 << (bit % 8)
		if Verify(&key, msg, bad) {
			t.Fatalf("Verify accepts the tag with bit %d flipped", bit)
		}
	}
	for i := range msg {
		bad := append([]byte(nil), msg...)
		bad[i] ^= 0x01
		if Verify(&key, bad, tag) {
			t.Fatalf("Verify accepts the message with byte %d changed", i)
		}
	}
	if Verify(&key, msg[:len(msg)-1], tag) {
		t.Fatal("Verify accepts a truncated message")
	}
	key[0] ^= 1
	if Verify(&key, msg, tag) {
		t.Fatal("Verify accepts the tag under another key")
	}
}
