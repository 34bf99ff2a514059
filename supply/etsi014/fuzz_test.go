package etsi014

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/qrelay/qrelay/internal/etsi014wire"
	"github.com/qrelay/qrelay/supply"
)

// Seeds beyond those in testdata/fuzz come from the error table.
func addBodySeeds(f *testing.F, op string) {
	for _, tc := range errorCases {
		if strings.Contains(tc.path, op) && tc.method == "POST" && len(tc.body) < 1000 {
			f.Add([]byte(tc.body))
		}
	}
}

func checkRefusal(t *testing.T, e *supply.Error) {
	t.Helper()
	if e.Code != 400 || e.Message == "" || !utf8.ValidString(e.Message) {
		t.Fatalf("refusal %+v: want 400 with a UTF-8 message", e)
	}
	if _, err := marshalError(e.Message, e.Details); err != nil {
		t.Fatal(err)
	}
}

func blank(b []byte) bool { return len(bytes.TrimLeft(b, " \t\r\n")) == 0 }

// FuzzEncBody: parsing never panics, anything accepted is valid JSON (or
// blank), and the fast path agrees with the strict decoder.
func FuzzEncBody(f *testing.F) {
	addBodySeeds(f, "enc_keys")
	h := &handler{keySize: 256, minSize: 64, maxSize: 1024, maxKeys: 128, maxSAEs: 3}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, e := parseEncBody(body)
		if e != nil {
			checkRefusal(t, e)
			return
		}
		if !blank(body) && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q as %+v", body, p)
		}
		if fast, ok := fastEncBody(body); ok {
			strict, e := strictEncBody(body)
			if e != nil {
				t.Fatalf("fast path accepted %q as %+v; strict decoder refused it: %s", body, fast, e.Message)
			}
			if !reflect.DeepEqual(fast, strict) {
				t.Fatalf("%q: fast path %+v, strict decoder %+v", body, fast, strict)
			}
		}
		if !blank(body) {
			// encoding/json reads the same numbers (it ignores case, so
			// only check what we accepted).
			var std struct {
				Number *int `json:"number"`
				Size   *int `json:"size"`
			}
			if err := json.Unmarshal(body, &std); err == nil {
				if std.Number != nil && (!p.hasNumber || *std.Number != p.number) ||
					std.Size != nil && (!p.hasSize || *std.Size != p.size) {
					t.Fatalf("%q: encoding/json reads number %v size %v, we read %+v", body, std.Number, std.Size, p)
				}
			}
		}
		if req, e := h.checkEnc("sae-1", "sae-2", p); e != nil {
			checkRefusal(t, e)
		} else if req.Size%8 != 0 || req.Number < 1 || req.Number > 128 || len(req.AdditionalSlaves) > 3 {
			t.Fatalf("%q: accepted request %+v", body, req)
		}
	})
}

// FuzzDecBody: as FuzzEncBody, for the Key IDs object and the key ID
// checks.
func FuzzDecBody(f *testing.F) {
	addBodySeeds(f, "dec_keys")
	h := &handler{maxKeys: 8}
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, e := parseDecBody(body)
		if e != nil {
			checkRefusal(t, e)
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q as %q", body, ids)
		}
		if fast, ok := fastDecBody(body); ok {
			strict, e := strictDecBody(body)
			if e != nil {
				t.Fatalf("fast path accepted %q as %q; strict decoder refused it: %s", body, fast, e.Message)
			}
			if len(fast) != len(strict) || len(fast) > 0 && !reflect.DeepEqual(fast, strict) {
				t.Fatalf("%q: fast path %q, strict decoder %q", body, fast, strict)
			}
		}
		if e := h.checkIDs(ids, "request body: key_IDs"); e != nil {
			checkRefusal(t, e)
			return
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if !refUUID(id) || seen[strings.ToLower(id)] {
				t.Fatalf("%q: accepted IDs %q", body, ids)
			}
			seen[strings.ToLower(id)] = true
		}
	})
}

// refUUID is the obvious UUID check etsi014wire.ParseKeyID must agree with.
func refUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for _, i := range []int{8, 13, 18, 23} {
		if s[i] != '-' {
			return false
		}
	}
	_, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	return err == nil && strings.Count(s, "-") == 4
}

// FuzzEncQuery: the GET enc_keys query parser never panics and reads back
// what url.Values would encode.
func FuzzEncQuery(f *testing.F) {
	for _, s := range []string{"", "number=1&size=256", "size=%32%35%36", "number=1&number=2", "x=1", "&&number=3&", "=a", "%zz", "number=+5", "number=1;size=8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, e := parseEncQuery(raw)
		if e != nil {
			checkRefusal(t, e)
			return
		}
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("accepted %q, which url.ParseQuery refuses: %v", raw, err)
		}
		for name, vs := range q {
			if name == "" {
				continue
			}
			if name != fNumber && name != fSize || len(vs) != 1 {
				t.Fatalf("accepted %q: %v", raw, q)
			}
		}
		again := url.Values{}
		if p.hasNumber {
			again.Set(fNumber, q.Get(fNumber))
		}
		if p.hasSize {
			again.Set(fSize, q.Get(fSize))
		}
		if p2, e := parseEncQuery(again.Encode()); e != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("%q read as %+v; re-encoded %q read as %+v, %v", raw, p, again.Encode(), p2, e)
		}
	})
}

// FuzzDecQuery: the GET dec_keys query parser and the UUID check.
func FuzzDecQuery(f *testing.F) {
	for _, s := range []string{"key_ID=" + uuidN(1), "key_ID=" + strings.ToUpper(uuidN(2)), "key_ID=a&key_ID=b", "key_ID=", "number=1", "key_ID=%7B" + uuidN(3) + "%7D", "key_id=" + uuidN(1)} {
		f.Add(s)
	}
	h := &handler{maxKeys: 1}
	f.Fuzz(func(t *testing.T, raw string) {
		id, e := parseDecQuery(raw)
		if e != nil {
			checkRefusal(t, e)
			return
		}
		if q, err := url.ParseQuery(raw); err != nil || q.Get(fKeyID) != id {
			t.Fatalf("%q read as %q; url.ParseQuery: %v %v", raw, id, q, err)
		}
		_, err := etsi014wire.ParseKeyID(id)
		ok := err == nil
		if ok != refUUID(id) {
			t.Fatalf("etsi014wire.ParseKeyID(%q) = %v, reference says valid %v", id, err, !ok)
		}
		if e := h.checkIDs([]string{id}, "query parameter key_ID"); (e == nil) != ok {
			t.Fatalf("checkIDs(%q) = %v, UUID %v", id, e, ok)
		}
	})
}
