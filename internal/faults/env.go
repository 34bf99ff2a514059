//go:build faults

package faults

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// QRELAY_FAULTS is a comma-separated list of "point" or "point@n": the
// process kills itself with SIGKILL the first time (or the n-th time) it
// reaches the point. Only binaries built with -tags faults read it.
func init() {
	spec := os.Getenv("QRELAY_FAULTS")
	if spec == "" {
		return
	}
	want := map[string]*atomic.Int64{}
	for _, f := range strings.Split(spec, ",") {
		name, nth, found := strings.Cut(strings.TrimSpace(f), "@")
		n := int64(1)
		if found {
			v, err := strconv.ParseInt(nth, 10, 64)
			if err != nil || v < 1 {
				fmt.Fprintf(os.Stderr, "QRELAY_FAULTS: %q: want point or point@n with n >= 1\n", f)
				os.Exit(2)
			}
			n = v
		}
		c := new(atomic.Int64)
		c.Store(n)
		want[name] = c
	}
	Set(func(name, node string) bool {
		if c := want[name]; c != nil && c.Add(-1) == 0 {
			fmt.Fprintf(os.Stderr, "QRELAY_FAULTS: node %s killed at %s\n", node, name)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL cannot be caught; this never returns
		}
		return false
	})
}
