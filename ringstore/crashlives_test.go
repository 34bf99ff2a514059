//go:build linux

package ringstore

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// crashLives runs test (a test of this binary that, in the child, works
// until it is killed) as a child process once per life: with env(life)
// added to its environment, it waits for the child's first line on stdout
// (the child prints it once its store is open), waits delay(), kills it
// with SIGKILL and checks that the kill, not the child, ended it. after is
// called with each life's first line and its stderr.
//
// The delay only picks the moment of the kill; no test's correctness
// depends on it.
func crashLives(t *testing.T, test string, lives int, env func(life int) []string, delay func() time.Duration, after func(life int, ready, stderr string)) {
	t.Helper()
	for life := range lives {
		cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v=false")
		cmd.Env = append(os.Environ(), env(life)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out := bufio.NewReader(stdout)
		line, err := out.ReadString('\n')
		if err != nil {
			rest, _ := io.ReadAll(out)
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("life %d: child did not get ready: %v\n%s%s\n%s", life, err, line, rest, stderr.String())
		}
		time.Sleep(delay())
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
			rest, _ := io.ReadAll(out)
			t.Fatalf("life %d: child ended by itself (%v), not by SIGKILL:\n%s%s", life, err, rest, stderr.String())
		}
		after(life, line, stderr.String())
	}
}
