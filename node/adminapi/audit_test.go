package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/pki"
)

// Audit serves the fake's records, whatever the query, and keeps the
// query; a limit of 13 is one the log refuses.
func (f *fakeBackend) Audit(_ context.Context, q audit.Query) ([]audit.Record, error) {
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	if q.Limit == 13 {
		return nil, fmt.Errorf("audit: limit 13 is unlucky: %w", ErrBadRequest)
	}
	return f.records, f.fail["Audit"]
}

var testRecords = []audit.Record{
	{Time: t0, Kind: audit.KindPadUsed, Peer: "node-b", Dir: audit.DirMasterToSlave, Side: audit.SideTx, From: 0, To: 4096},
	{Time: t0.Add(time.Second), Kind: audit.KindPadAppended, Peer: "node-b", Dir: audit.DirSlaveToMaster, From: 4096, To: 8192, Block: "blk-1"},
	{Time: t0.Add(2 * time.Second), Kind: audit.KindPadBurnt, Peer: "node-b", Dir: audit.DirMasterToSlave, Side: audit.SideRx, From: 8192, To: 9000, Reason: audit.ReasonSync},
	{Time: t0.Add(3 * time.Second), Kind: audit.KindKeys, Remote: "node-d", SAE: "sae-1", Role: audit.RoleMaster,
		KeyIDs: []string{"e18ba9a8-8d35-5c2c-9b2b-48ebbcfafd0c", "26f7603b-464e-5118-a8ee-4d49d6a5d9aa"}},
}

// TestAudit: GET /v1/audit passes the query to the backend, parsed and
// checked, and returns its records with the names scripts rely on.
func TestAudit(t *testing.T) {
	f := newFixture(t)
	f.back.records = testRecords
	c := f.client(t, pki.Operator, "admin")
	ctx := context.Background()
	since := t0.Add(1500 * time.Millisecond)
	q := audit.Query{Kind: audit.KindPadUsed, Peer: "node-b", Since: since, Limit: 500}
	got, err := c.Audit(ctx, q)
	if err != nil || !reflect.DeepEqual(got, testRecords) {
		t.Fatalf("Audit = %+v, %v", got, err)
	}
	if _, err := c.Audit(ctx, audit.Query{}); err != nil {
		t.Fatal(err)
	}
	want := []audit.Query{q, {}}
	if !reflect.DeepEqual(f.back.queries, want) || !f.back.queries[0].Since.Equal(since) {
		t.Errorf("the backend got %+v; want %+v", f.back.queries, want)
	}

	code, hd, body := f.raw(t, http.MethodGet, "/v1/audit?kind=keys&limit=2", "")
	if code != http.StatusOK || hd.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/audit: %d: %s", code, body)
	}
	for _, w := range []string{
		`{"time":"2025-06-01T12:00:00Z","kind":"pad-used","peer":"node-b","dir":"MASTER_TO_SLAVE","side":"tx","from":0,"to":4096}`,
		`"kind":"pad-appended","peer":"node-b","dir":"SLAVE_TO_MASTER","from":4096,"to":8192,"block":"blk-1"}`,
		`"side":"rx","from":8192,"to":9000,"reason":"sync"}`,
		`{"time":"2025-06-01T12:00:03Z","kind":"keys","remote":"node-d","sae":"sae-1","role":"master","key_ids":["e18ba9a8-8d35-5c2c-9b2b-48ebbcfafd0c","26f7603b-464e-5118-a8ee-4d49d6a5d9aa"]}`,
	} {
		if !strings.Contains(string(body), w) {
			t.Errorf("GET /v1/audit = %s\nwant it to contain %s", body, w)
		}
	}
	var raw []map[string]any
	if err := json.Unmarshal(body, &raw); err != nil || len(raw) != 4 {
		t.Fatalf("not 4 records: %s", body)
	}
	if _, ok := raw[3]["from"]; ok {
		t.Errorf("a keys record shows pad positions: %v", raw[3])
	}

	f.back.records = nil
	if _, _, body := f.raw(t, http.MethodGet, "/v1/audit", ""); string(body) != "[]\n" {
		t.Errorf("no records: %q; want []", body)
	}
	f.back.fail["Audit"] = errors.New("audit: reading records: badger: value log truncated")
	if _, err := c.Audit(ctx, audit.Query{}); !strings.Contains(fmt.Sprint(err), "500 Internal Server Error: audit: reading records: badger") {
		t.Errorf("a failing backend: %v; want a 500 with its message", err)
	}
	if _, err := c.Audit(ctx, audit.Query{Limit: 13}); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "unlucky") {
		t.Errorf("a query the log refuses: %v; want a 400", err)
	}
	if _, err := f.client(t, pki.SAE, "sae-1").Audit(ctx, audit.Query{}); !strings.Contains(fmt.Sprint(err), "403 Forbidden") {
		t.Errorf("an SAE's certificate: %v; want a 403", err)
	}
}

func TestAuditBadQueries(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		query, inMessage string
	}{
		{"kind=pads", `parameter kind: unknown record kind "pads": want one of pad-appended, pad-used, pad-burnt, keys`},
		{"peer=node%20b", `parameter peer: "node b" is not a node ID`},
		{"since=yesterday", `parameter since: "yesterday" is not an RFC 3339 time`},
		{"since=2026-03-01", `parameter since: "2026-03-01" is not an RFC 3339 time`},
		{"limit=0", `parameter limit: "0": want a number of records from 1 to 100000`},
		{"limit=100001", `parameter limit: "100001"`},
		{"limit=ten", `parameter limit: "ten"`},
		{"kind=keys&kind=pad-used", `parameter "kind" given 2 times`},
		{"peers=node-b", `unknown parameter "peers"`},
		{"kind=%zz", "bad query: invalid URL escape"},
	}
	for _, c := range cases {
		code, _, body := f.raw(t, http.MethodGet, "/v1/audit?"+c.query, "")
		var eb ErrorBody
		err := json.Unmarshal(body, &eb)
		if code != http.StatusBadRequest || err != nil || !strings.Contains(eb.Message, c.inMessage) ||
			len(eb.Details) != 1 || !strings.Contains(eb.Details[0], "GET /v1/audit takes kind") {
			t.Errorf("GET /v1/audit?%s: %d %s; want 400 with %q and the parameters", c.query, code, body, c.inMessage)
		}
	}
	if len(f.back.queries) != 0 {
		t.Errorf("refused queries reached the backend: %+v", f.back.queries)
	}
	// Empty values are left out, and a time with a zone is taken.
	if code, _, body := f.raw(t, http.MethodGet, "/v1/audit?kind=&peer=&limit=&since=2026-03-01T13:00:00.5%2B01:00", ""); code != http.StatusOK {
		t.Fatalf("empty parameters: %d %s", code, body)
	}
	if q := f.back.queries[0]; q.Kind != "" || q.Peer != "" || q.Limit != 0 || !q.Since.Equal(time.Date(2026, 3, 1, 12, 0, 0, 5e8, time.UTC)) {
		t.Errorf("the backend got %+v", q)
	}
	if code, hd, _ := f.raw(t, http.MethodPost, "/v1/audit", "{}"); code != http.StatusMethodNotAllowed || hd.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /v1/audit: %d, Allow %q", code, hd.Get("Allow"))
	}
}
