package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/internal/pki"
)

// The fake backend relays by echoing the request, and knows one pool.
func (f *fakeBackend) Relay(_ context.Context, req RelayRequest) (RelayResult, error) {
	if req.Dst == "node-z" {
		return RelayResult{}, fmt.Errorf("no route to node-z: %w", ErrBadRequest)
	}
	return RelayResult{Dst: req.Dst, Keys: req.Keys, Delivered: req.Keys - 1, Errors: []string{"1 key lost"}}, nil
}

func (f *fakeBackend) PoolDigest(_ context.Context, remote string) (PoolDigest, error) {
	if remote != "node-d" {
		return PoolDigest{}, fmt.Errorf("no pool for %s: %w", remote, ErrNotFound)
	}
	return PoolDigest{Remote: remote, Keys: 3, Digest: "00ff"}, nil
}

func TestRelayRoute(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, pki.Operator, "admin")
	ctx := context.Background()
	res, err := c.Relay(ctx, RelayRequest{Dst: "node-d", Keys: 100, KeySize: 32})
	if err != nil || res.Dst != "node-d" || res.Keys != 100 || res.Delivered != 99 || len(res.Errors) != 1 {
		t.Fatalf("Relay = %+v, %v", res, err)
	}
	if _, err := c.Relay(ctx, RelayRequest{Dst: "node-z", Keys: 1, KeySize: 32}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("relay to an unroutable node: %v, want a 400", err)
	}
	d, err := c.PoolDigest(ctx, "node-d")
	if err != nil || d != (PoolDigest{Remote: "node-d", Keys: 3, Digest: "00ff"}) {
		t.Fatalf("PoolDigest = %+v, %v", d, err)
	}
	if _, err := c.PoolDigest(ctx, "node-q"); !errors.Is(err, ErrNotFound) {
		t.Errorf("digest of a missing pool: %v, want a 404", err)
	}
	for _, tc := range []struct{ body, want string }{
		{``, "empty body"},
		{`{"dst":"node-d","keys":1,"key_size":32,"colour":1}`, `unknown field "colour"`},
		{`{"dst":"node-d","keys":0,"key_size":32}`, `"keys": 0`},
		{`{"dst":"node-d","keys":1,"key_size":9000}`, `"key_size": 9000`},
		{`{"dst":"no/de","keys":1,"key_size":32}`, `"dst"`},
		{`{"dst":"node-d","keys":1,"key_size":32} {}`, "data after"},
		{`{"dst":"node-d","keys":"1","key_size":32}`, "keys"},
	} {
		code, _, body := f.raw(t, "POST", "/v1/relay", tc.body)
		var eb ErrorBody
		if code != 400 || json.Unmarshal(body, &eb) != nil || !strings.Contains(eb.Message, tc.want) {
			t.Errorf("POST /v1/relay %s: %d %s; want 400 mentioning %s", tc.body, code, body, tc.want)
		}
	}
	if code, h, _ := f.raw(t, "GET", "/v1/relay", ""); code != 405 || h.Get("Allow") != "POST" {
		t.Errorf("GET /v1/relay: %d, Allow %q", code, h.Get("Allow"))
	}
}

func FuzzRelayBody(f *testing.F) {
	f.Add([]byte(`{"dst":"node-d","keys":1,"key_size":32}`))
	f.Add([]byte(`{"dst":"","keys":-1,"key_size":0}`))
	f.Add([]byte(`{"dst":"a","keys":1e9}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeRelayBody(data)
		if err != nil {
			return
		}
		if pki.ValidID(req.Dst) != nil || req.Keys < 1 || req.Keys > MaxRelayKeys || req.KeySize < 1 || req.KeySize > 8192 {
			t.Fatalf("accepted %q as %+v", data, req)
		}
	})
}
