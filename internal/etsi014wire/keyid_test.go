package etsi014wire

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustParseKeyID(t testing.TB, s string) KeyID {
	t.Helper()
	id, err := ParseKeyID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// RFC 9562 namespaces (appendix C of RFC 4122).
const (
	nsDNS = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	nsURL = "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
)

func TestUUIDv5KnownVectors(t *testing.T) {
	for _, tc := range []struct{ ns, name, want string }{
		// Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
		{nsDNS, "python.org", "886313e1-3b8a-5372-9b90-0c9aee199e5d"},
		// RFC 9562 appendix A.4: "www.example.com" in the DNS namespace.
		{nsDNS, "www.example.com", "2ed6657d-e927-568b-95e1-2665a8aea6a2"},
		// The namespace itself is derived, as its doc says.
		{nsURL, "https://github.com/qrelay/qrelay/keyid", KeyIDNamespace},
	} {
		got := uuidV5(mustParseKeyID(t, tc.ns), []byte(tc.name))
		if got.String() != tc.want {
			t.Errorf("uuidV5(%s, %q) = %s, want %s", tc.ns, tc.name, got, tc.want)
		}
	}
	if KeyID(keyIDNamespace) != mustParseKeyID(t, KeyIDNamespace) {
		t.Errorf("keyIDNamespace bytes %x do not match KeyIDNamespace %s", keyIDNamespace, KeyIDNamespace)
	}
}

func TestDeriveKeyID(t *testing.T) {
	// Vectors computed independently with Python's hashlib and uuid:
	// v5(ns, struct.pack(">I", len(src)) + src + struct.pack(">I", len(dst)) + dst + struct.pack(">QQ", flow, seq)).
	for _, tc := range []struct {
		src, dst  string
		flow, seq uint64
		want      string
	}{
		{"nodeA", "nodeB", 7, 42, "a27d716d-3630-5ac5-8220-622b777a0f50"},
		{"", "", 0, 0, "655bfa83-8716-53b4-ad91-fa2907b3fc05"},
		{"a", "bc", 1 << 63, 1<<64 - 1, "0c156b76-b63a-5ce9-81f8-330c006597bc"},
	} {
		got := DeriveKeyID(tc.src, tc.dst, tc.flow, tc.seq)
		if got.String() != tc.want {
			t.Errorf("DeriveKeyID(%q, %q, %d, %d) = %s, want %s", tc.src, tc.dst, tc.flow, tc.seq, got, tc.want)
		}
		if ref := uuidV5(keyIDNamespace, appendKeyIDName(nil, tc.src, tc.dst, tc.flow, tc.seq)); got != ref {
			t.Errorf("DeriveKeyID(%q, %q, %d, %d) = %s, uuidV5 of its name = %s", tc.src, tc.dst, tc.flow, tc.seq, got, ref)
		}
		if v := got[6] >> 4; v != 5 {
			t.Errorf("%s: version %d, want 5", got, v)
		}
		if got[8]&0xc0 != 0x80 {
			t.Errorf("%s: variant bits %02b, want 10", got, got[8]>>6)
		}
	}

	// Unambiguous: moving bytes between fields, or between flow and seq,
	// changes the ID. Long node IDs (past the stack buffer) still work.
	long := strings.Repeat("n", 200)
	ids := map[KeyID]string{}
	for _, tc := range []struct {
		src, dst  string
		flow, seq uint64
	}{
		{"ab", "c", 0, 0}, {"a", "bc", 0, 0}, {"abc", "", 0, 0}, {"", "abc", 0, 0},
		{"a", "b", 1, 0}, {"a", "b", 0, 1}, {"b", "a", 0, 1}, {"a", "b", 1 << 32, 0},
		{long, "b", 0, 0}, {long + "b", "", 0, 0}, {"a", long, 0, 0},
	} {
		id := DeriveKeyID(tc.src, tc.dst, tc.flow, tc.seq)
		desc := strings.Join([]string{tc.src, tc.dst}, "|")
		if prev, ok := ids[id]; ok {
			t.Errorf("%s and %s derive the same ID %s", prev, desc, id)
		}
		ids[id] = desc
		if ref := uuidV5(keyIDNamespace, appendKeyIDName(nil, tc.src, tc.dst, tc.flow, tc.seq)); id != ref {
			t.Errorf("DeriveKeyID(%.10q..., %.10q...) = %s, uuidV5 of its name = %s", tc.src, tc.dst, id, ref)
		}
	}
}

func TestDeriveKeyIDAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { DeriveKeyID("node-with-a-longish-id-01", "node-with-a-longish-id-02", 3, 4) }); n != 0 {
		t.Errorf("DeriveKeyID allocates %v times per call, want 0", n)
	}
}

func TestParseKeyID(t *testing.T) {
	const canon = "886313e1-3b8a-5372-9b90-0c9aee199e5d"
	want := KeyID{0x88, 0x63, 0x13, 0xe1, 0x3b, 0x8a, 0x53, 0x72, 0x9b, 0x90, 0x0c, 0x9a, 0xee, 0x19, 0x9e, 0x5d}
	for _, s := range []string{canon, strings.ToUpper(canon), "886313E1-3b8A-5372-9B90-0c9aee199E5D"} {
		got, err := ParseKeyID(s)
		if err != nil {
			t.Fatalf("ParseKeyID(%q): %v", s, err)
		}
		if got != want {
			t.Errorf("ParseKeyID(%q) = %x, want %x", s, got, want)
		}
		if got.String() != canon {
			t.Errorf("String() = %q, want %q", got, canon)
		}
	}

	for _, tc := range []struct{ in, wantErr string }{
		{"xyz", `key ID "xyz": want 36 characters in 8-4-4-4-12 form, got 3`},
		{"", `key ID "": want 36 characters in 8-4-4-4-12 form, got 0`},
		{"{" + canon + "}", `got 38`},
		{"urn:uuid:" + canon, `got 45`},
		{"886313e13b8a53729b900c9aee199e5d", `got 32`},
		{strings.Repeat("a", 100), `key ID "` + strings.Repeat("a", 64) + `"...: want 36 characters`},
		{"886313e1_3b8a-5372-9b90-0c9aee199e5d", `want '-' at index 8 (8-4-4-4-12 form), got "_"`},
		{"886313e1-3b8a-5372-9b900-c9aee199e5d", `want '-' at index 23 (8-4-4-4-12 form), got "0"`},
		{"886313g1-3b8a-5372-9b90-0c9aee199e5d", `want a hex digit at index 6, got "g"`},
		{"886313e1-3b8a-5372-9b90-0c9aee199e5Z", `want a hex digit at index 35, got "Z"`},
		{"886313e1-3b8a-5372-9b90-0c9aee199e5\xff", `want a hex digit at index 35, got "\xff"`},
		{"886313e1-3b8a-5372-9b90-0c9aee199eé", `want a hex digit at index 34, got "\xc3"`},
	} {
		_, err := ParseKeyID(tc.in)
		if err == nil {
			t.Errorf("ParseKeyID(%q) succeeded, want error containing %q", tc.in, tc.wantErr)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseKeyID(%q) = %q, want it to contain %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestKeyIDJSON(t *testing.T) {
	id := DeriveKeyID("nodeA", "nodeB", 1, 2)
	b, err := json.Marshal(struct {
		KeyID KeyID `json:"key_ID"`
	}{id})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"key_ID":"` + id.String() + `"}`; string(b) != want {
		t.Fatalf("json: %s, want %s", b, want)
	}
	var back struct {
		KeyID KeyID `json:"key_ID"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.KeyID != id {
		t.Fatalf("round trip: %v, %s", err, back.KeyID)
	}
	if err := json.Unmarshal([]byte(`{"key_ID":"nope"}`), &back); err == nil || !strings.Contains(err.Error(), `key ID "nope"`) {
		t.Fatalf("bad key_ID: %v", err)
	}
}

func FuzzParseKeyID(f *testing.F) {
	f.Add("886313e1-3b8a-5372-9b90-0c9aee199e5d")
	f.Add(DeriveKeyID("nodeA", "nodeB", 7, 42).String())
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseKeyID(s)
		if err == nil {
			if got := id.String(); got != strings.ToLower(s) {
				t.Fatalf("ParseKeyID(%q).String() = %q, want the input in lower case", s, got)
			}
			if again, err := ParseKeyID(id.String()); err != nil || again != id {
				t.Fatalf("ParseKeyID(String()) of %q = %x, %v; want %x", s, again, err, id)
			}
		} else if !strings.HasPrefix(err.Error(), "key ID ") {
			t.Fatalf("ParseKeyID(%q): error %q does not start by naming the key ID", s, err)
		}
		// Any 16 bytes round-trip through the canonical form.
		if len(s) >= 16 {
			var x KeyID
			copy(x[:], s)
			if y, err := ParseKeyID(x.String()); err != nil || y != x {
				t.Fatalf("ParseKeyID(%s) = %x, %v; want %x", x, y, err, x)
			}
		}
	})
}

func BenchmarkDeriveKeyID(b *testing.B) {
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		DeriveKeyID("nodeA", "nodeB", 1, seq)
		seq++
	}
}
