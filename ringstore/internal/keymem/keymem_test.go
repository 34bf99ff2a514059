//go:build linux

package keymem

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMirror(t *testing.T) {
	size := 4 * PageSize
	r, err := Anonymous("test", size, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := r.Bytes()
	if len(b) != 2*size {
		t.Fatalf("mirrored region is %d bytes, want %d", len(b), 2*size)
	}
	// A write through either view shows in the other, so a range that runs
	// past the end of the ring continues at its start.
	copy(b[size-3:size+5], "abcdefgh")
	if got := string(b[size-3:size]) + string(b[:5]); got != "abcdefgh" {
		t.Fatalf("wrapped write reads back as %q", got)
	}
	b[7] = 'x'
	if b[size+7] != 'x' {
		t.Fatal("write to the first view does not show in the second")
	}
}

func TestFileRoundTripAndSizeCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ring")
	size := 2 * PageSize
	r, err := Create(path, size, true)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.Bytes()[size-2:], "keys")
	if err := r.Sync(0, size); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[size-2:], []byte("ke")) || !bytes.Equal(data[:2], []byte("ys")) {
		t.Fatalf("file does not hold the wrapped write: %q ... %q", data[:2], data[size-2:])
	}
	if _, err := Create(path, size, false); err == nil {
		t.Fatal("Create over an existing file succeeded")
	}
	want := fmt.Sprintf("is %d bytes, want %d", size, 2*size)
	if _, err := File(path, 2*size, false); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("File with the wrong size: %v", err)
	}
	if _, err := Anonymous("x", PageSize+1, false); err == nil || !strings.Contains(err.Error(), "not a positive multiple of the page size") {
		t.Fatalf("odd size: %v", err)
	}
}
