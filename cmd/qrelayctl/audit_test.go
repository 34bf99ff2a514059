package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
)

func TestAudit(t *testing.T) {
	clearEnv(t)
	setNow(t, t0.Add(time.Hour))
	n := newTestNode(t)
	out := mustRun(t, append([]string{"audit"}, n.flags()...)...)
	at := func(s int) string { return t0.Add(time.Duration(s) * time.Second).Local().Format(auditTimeLayout) }
	want := []string{
		"TIME" + strings.Repeat(" ", len(at(0))-2) + "KIND          PEER    DIR              SIDE  FROM     TO       SIZE     DETAIL",
		at(0) + "  pad-appended  node-b  MASTER_TO_SLAVE  -     0        65536    64 KiB   blk-1",
		at(1) + "  pad-used      node-b  MASTER_TO_SLAVE  tx    0        4096     4.0 KiB  -",
		at(2) + "  pad-burnt     node-b  SLAVE_TO_MASTER  rx    1048576  3145728  2.0 MiB  sync",
		at(3) + "  keys          node-d  -                -     -        -        3 keys   master sae-1: e18ba9a8-8d35-5c2c-9b2b-48ebbcfafd0c … 0b0e5a39-0b6f-5d0c-8d2e-7a6c5f0b9a11",
		at(4) + "  keys          node-d  -                -     -        -        1 key    stream dc1-dc2: 26f7603b-464e-5118-a8ee-4d49d6a5d9aa",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("qrelayctl audit printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
	checkAligned(t, "audit", out)

	// The flags make the query; a full page says how to see more.
	out = mustRun(t, append([]string{"audit", "--kind", "keys", "--peer", "node-d", "--since", "90m", "--limit", "2"}, n.flags()...)...)
	if !strings.HasSuffix(out, "(the first 2 records; more may follow: --since 2025-06-01T12:00:01Z, or a higher --limit)\n") {
		t.Errorf("a full page:\n%s\nwant a note on how to see more", out)
	}
	mustRun(t, append([]string{"audit", "--since", "2025-06-01T12:30:00+02:00"}, n.flags()...)...)
	wantQ := []audit.Query{
		{Limit: audit.DefaultLimit},
		{Kind: audit.KindKeys, Peer: "node-d", Since: t0.Add(-30 * time.Minute), Limit: 2},
		{Since: t0.Add(-90 * time.Minute), Limit: audit.DefaultLimit},
	}
	n.back.mu.Lock()
	got := n.back.queries
	n.back.mu.Unlock()
	if len(got) != len(wantQ) {
		t.Fatalf("the node got %d queries; want %d", len(got), len(wantQ))
	}
	for i := range wantQ {
		if got[i].Kind != wantQ[i].Kind || got[i].Peer != wantQ[i].Peer || got[i].Limit != wantQ[i].Limit || !got[i].Since.Equal(wantQ[i].Since) {
			t.Errorf("query %d: %+v; want %+v", i, got[i], wantQ[i])
		}
	}

	out = mustRun(t, append([]string{"audit", "--json"}, n.flags()...)...)
	var back []audit.Record
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&back); err != nil || !reflect.DeepEqual(back, fakeRecords) {
		t.Errorf("qrelayctl audit --json printed\n%s\n(%v); want the records", out, err)
	}
	if !strings.Contains(out, `"from": 0,`) || !strings.Contains(out, `"key_ids": [`) {
		t.Errorf("--json is not the API's JSON:\n%s", out)
	}

	var b strings.Builder
	if err := showAudit(&b, nil, 10); err != nil || b.String() != "no audit records\n" {
		t.Errorf("no records: %q, %v", b.String(), err)
	}
}

func TestAuditUsageErrors(t *testing.T) {
	clearEnv(t)
	n := newTestNode(t)
	for _, c := range []struct {
		args     []string
		inStderr string
	}{
		{[]string{"audit", "--kind", "pads"}, `--kind: unknown record kind "pads": want one of pad-appended, pad-used, pad-burnt, keys`},
		{[]string{"audit", "--peer", "node b"}, `--peer "node b" is not a node ID`},
		{[]string{"audit", "--since", "yesterday"}, `--since "yesterday": want a duration ago like 10m or 2h, or an RFC 3339 time`},
		{[]string{"audit", "--since", "-5m"}, "--since -5m: want a positive duration"},
		{[]string{"audit", "--limit", "0"}, "--limit 0: want 1 to 100000 records"},
		{[]string{"audit", "--limit", "100001"}, "--limit 100001"},
		{[]string{"audit", "node-b"}, `unexpected argument "node-b"; usage: qrelayctl audit`},
	} {
		code, _, errOut := run(t, append(c.args, n.flags()...)...)
		if code != 2 || !strings.Contains(errOut, c.inStderr) {
			t.Errorf("qrelayctl %q: exit %d, stderr %q; want exit 2 and %q", c.args, code, errOut, c.inStderr)
		}
	}
	n.back.mu.Lock()
	defer n.back.mu.Unlock()
	if len(n.back.queries) != 0 {
		t.Errorf("refused commands reached the node: %+v", n.back.queries)
	}
}
