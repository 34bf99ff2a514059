//go:build linux

package ringstore

import (
	"bytes"
	"strings"
	"testing"
)

// TestPoolEntryFormats: an index entry reads back as written, and entries
// of format 1 (before owner tags were opaque) read as the same keys: four
// zero bytes are no owner, anything else is the owner tag as it stands.
func TestPoolEntryFormats(t *testing.T) {
	e := slot{n: 32, seq: 7, expiry: 1234, owner: Owner("\x00\x05sae-a\x00\x00")}
	b := appendEntry(nil, 5, &e)
	if b[0] != poolFormat {
		t.Fatalf("entry format %d, want %d", b[0], poolFormat)
	}
	s, got, err := decodeEntry(b)
	if err != nil || s != 5 || got.n != 32 || got.seq != 7 || got.expiry != 1234 || got.owner != e.owner {
		t.Fatalf("read back slot %d %+v, %v", s, got, err)
	}
	free := slot{n: 16, seq: 8}
	if _, got, err := decodeEntry(appendEntry(nil, 6, &free)); err != nil || got.owner != "" {
		t.Fatalf("entry without owner: %+v, %v", got, err)
	}

	v1 := func(tail string) []byte {
		b := appendEntry(nil, 5, &slot{n: 32, seq: 7, expiry: 1234})
		b[0] = poolFormatV1
		return append(b, tail...)
	}
	if _, got, err := decodeEntry(v1("\x00\x00\x00\x00")); err != nil || got.owner != "" || got.n != 32 {
		t.Fatalf("format 1 entry without assignment: %+v, %v", got, err)
	}
	tag := "\x00\x05sae-a\x00\x01\x00\x05sae-b"
	if _, got, err := decodeEntry(v1(tag)); err != nil || got.owner != Owner(tag) {
		t.Fatalf("format 1 entry with an assignment: owner %q, %v; want %q", got.owner, err, tag)
	}
	for _, tc := range []struct {
		v   []byte
		err string
	}{
		{v1("\x00\x00"), "format 1 entry is 27 bytes, want at least 29"},
		{b[:poolEntryFixed-1], "entry is 24 bytes, want at least 25"},
		{append([]byte{3}, b[1:]...), "entry format 3, want 1 or 2"},
		{append(bytes.Clone(b[:poolEntryFixed]), strings.Repeat("o", MaxOwnerLen+1)...), "owner tag is 17409 bytes"},
	} {
		if _, _, err := decodeEntry(tc.v); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%d bytes: %v, want an error saying %q", len(tc.v), err, tc.err)
		}
	}
}
