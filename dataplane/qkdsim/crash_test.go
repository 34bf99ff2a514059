//go:build linux

package qkdsim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// crashDirEnv names the metadata directory of the child of
// TestDurableCrashAfterGet.
const crashDirEnv = "QKDSIM_CRASH_DIR"

// TestDurableCrashAfterGet runs a child process that opens a durable
// master and slave, fetches and gets blocks, prints their IDs once Get has
// returned, and is SIGKILLed at once. The parent reopens the store: the
// slave refuses every block the child delivered, takes new ones, and the
// master numbers above the child's blocks. Three lives, one store.
func TestDurableCrashAfterGet(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		crashChild(t)
		return
	}
	dir := t.TempDir()
	for life := range 3 {
		line, stderr := runKilled(t, dir)
		got := strings.Fields(strings.TrimPrefix(line, "got "))
		if !strings.HasPrefix(line, "got ") || len(got) == 0 {
			t.Fatalf("life %d: child printed %q\n%s", life, line, stderr)
		}
		meta := openMeta(t, dir)
		s := durable(t, meta, false, 0, nil, nil)
		for _, id := range got {
			if _, err := s.Get(t.Context(), []string{id}); err == nil || !strings.Contains(err.Error(), "block "+id+" was delivered before this node restarted") {
				t.Fatalf("life %d: Get(%s), delivered by the killed child: %v", life, id, err)
			}
		}
		m := durable(t, meta, true, 0, nil, nil)
		next, err := m.Fetch(t.Context(), 4*bs)
		if err != nil {
			t.Fatal(err)
		}
		if last := index(t, got[len(got)-1]); index(t, next[0].ID) <= last {
			t.Fatalf("life %d: master's first block after the crash %s, not above the child's %d", life, next[0].ID, last)
		}
		if _, err := s.Get(t.Context(), ids(next)); err != nil {
			t.Fatalf("life %d: Get of new blocks after the crash: %v", life, err)
		}
		s.Close()
		m.Close()
		meta.Close()
	}
}

// crashChild is the child's part: it never returns before the kill.
func crashChild(t *testing.T) {
	meta := openMeta(t, os.Getenv(crashDirEnv))
	m := durable(t, meta, true, 0, nil, nil)
	s := durable(t, meta, false, 0, nil, nil)
	b, err := m.Fetch(t.Context(), 8*bs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), ids(b)); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("got %s\n", strings.Join(ids(b), " "))
	select {} // wait for SIGKILL
}

// runKilled starts the child on dir, waits for its line, kills it with
// SIGKILL at once and checks that the kill ended it.
func runKilled(t *testing.T, dir string) (line, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableCrashAfterGet$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	line, err = out.ReadString('\n')
	if err != nil {
		rest, _ := io.ReadAll(out)
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not get its blocks: %v\n%s%s\n%s", err, line, rest, errBuf.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("child ended by itself (%v), not by SIGKILL:\n%s", err, errBuf.String())
	}
	return strings.TrimSpace(line), errBuf.String()
}
