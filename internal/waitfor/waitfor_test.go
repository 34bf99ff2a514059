package waitfor

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestUntil checks that Until returns as soon as the condition holds, and
// on a deadline returns the last non-empty reason.
func TestUntil(t *testing.T) {
	n := 0
	ok, seen := Until(time.Now().Add(time.Minute), time.Millisecond, func() (bool, string) {
		n++
		return n == 3, fmt.Sprint("n=", n)
	})
	if !ok || seen != "" || n != 3 {
		t.Errorf("holding at the third call: ok %v, seen %q, %d calls", ok, seen, n)
	}
	n = 0
	ok, seen = Until(time.Now().Add(20*time.Millisecond), time.Millisecond, func() (bool, string) {
		n++
		if n > 1 {
			return false, ""
		}
		return false, "first look"
	})
	if ok || seen != "first look" {
		t.Errorf("never holding: ok %v, seen %q; want false and the last non-empty reason", ok, seen)
	}
}

// fatalTB records Fatalf instead of stopping the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

// TestCond checks the failure message: what, the timeout, what was seen.
func TestCond(t *testing.T) {
	f := &fatalTB{TB: t}
	Cond(f, "the route a→c", 20*time.Millisecond, func() (bool, string) { return false, "no route" })
	if !strings.Contains(f.msg, "the route a→c did not happen") || !strings.Contains(f.msg, "20ms") || !strings.Contains(f.msg, "last seen: no route") {
		t.Errorf("message %q", f.msg)
	}
	f.msg = ""
	Bool(f, "a flush", 10*time.Millisecond, func() bool { return false })
	if f.msg != "after 10ms: a flush did not happen" {
		t.Errorf("message %q", f.msg)
	}
	f.msg = ""
	Bool(f, "nothing", time.Second, func() bool { return true })
	if f.msg != "" {
		t.Errorf("a holding condition failed: %q", f.msg)
	}
}
