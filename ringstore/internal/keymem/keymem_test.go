//go:build linux

package keymem

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

const unlockedChildEnv = "QRELAY_KEYMEM_UNLOCKED_CHILD"

// TestUnlockedWarnsOnce checks the path where the process may not lock key
// memory: the mapping still works, Locked reports false, and exactly one
// warning says what to do. As root, it runs itself as nobody with a tiny
// RLIMIT_MEMLOCK (root's CAP_IPC_LOCK would ignore the limit).
func TestUnlockedWarnsOnce(t *testing.T) {
	if os.Getenv(unlockedChildEnv) != "" {
		for i := range 2 {
			r, err := Anonymous(fmt.Sprintf("child%d", i), 16*PageSize, true)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("locked=%v\n", r.Locked())
			r.Close()
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another user with a lowered RLIMIT_MEMLOCK")
	}
	// The test binary must be executable by nobody.
	// (t.TempDir's parent is private to root.)
	dir, err := os.MkdirTemp("", "keymem-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "keymem.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	cmd := exec.Command("prlimit", "--memlock=4096:4096", bin, "-test.run=^TestUnlockedWarnsOnce$", "-test.count=1")
	cmd.Env = append(os.Environ(), unlockedChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "locked=false"); got != 2 {
		t.Fatalf("want two unlocked regions, child printed:\n%s", out)
	}
	if got := strings.Count(string(out), "key memory is not locked in RAM"); got != 1 {
		t.Fatalf("want exactly one warning, got %d:\n%s", got, out)
	}
	if !strings.Contains(string(out), "RLIMIT_MEMLOCK") {
		t.Fatalf("the warning does not say what to do:\n%s", out)
	}
}
