package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/node/adminapi"
)

// The fake node delivers all but one key of every relay to node-d, and
// has no route elsewhere.
func (*fakeBackend) Relay(_ context.Context, req adminapi.RelayRequest) (adminapi.RelayResult, error) {
	if req.Dst != "node-d" {
		return adminapi.RelayResult{}, fmt.Errorf("no route to node %s: %w", req.Dst, adminapi.ErrBadRequest)
	}
	return adminapi.RelayResult{Dst: req.Dst, Keys: req.Keys, Delivered: req.Keys - 1, DurationS: 0.5,
		Errors: []string{"relay to node-d: keys 7..7 lost"}}, nil
}

func (*fakeBackend) PoolDigest(context.Context, string) (adminapi.PoolDigest, error) {
	return adminapi.PoolDigest{}, nil
}

func TestRelay(t *testing.T) {
	n := newTestNode(t)
	f := n.flags()
	for _, c := range []struct {
		args               []string
		code               int
		inStdout, inStderr string
	}{
		{append([]string{"relay", "node-d", "--keys", "1001", "--size", "16"}, f...), 1,
			"→ node-d: 1000 of 1001 keys of 16 bytes delivered in 500ms, 256 kbit/s of keys\n  error: relay to node-d: keys 7..7 lost", "1 of 1001 keys not delivered"},
		{append([]string{"relay", "node-d", "--json"}, f...), 1, `"delivered": 2047`, ""},
		{append([]string{"relay", "node-q"}, f...), 1, "", "no route to node node-q"},
		{append([]string{"relay", "node-d", "--keys", "0"}, f...), 2, "", "--keys 0"},
		{append([]string{"relay", "node-d", "--size", "9000"}, f...), 2, "", "--size 9000"},
		{append([]string{"relay"}, f...), 2, "", "<dst>"},
	} {
		code, out, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(out, c.inStdout) || !strings.Contains(errOut, c.inStderr) {
			t.Errorf("qrelayctl %q: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
				c.args, code, out, errOut, c.code, c.inStdout, c.inStderr)
		}
	}
}
