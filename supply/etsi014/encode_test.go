package etsi014

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/qrelay/qrelay/internal/etsi014wire"
	"github.com/qrelay/qrelay/supply"
)

// strictDecode decodes b into v as a strict client would: no unknown
// fields, nothing after the value.
func strictDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if dec.More() {
		t.Fatalf("%s: data after the value", b)
	}
}

// utf8Fixed is s with each byte that is not UTF-8 replaced by U+FFFD, as
// encoding/json and appendString write it.
func utf8Fixed(s string) string { return string([]rune(s)) }

// FuzzEncoders holds the hand-written encoders to the types of
// internal/etsi014wire: what they write decodes strictly into those types, to
// the values given (invalid UTF-8 read back as U+FFFD, as encoding/json
// writes it), within containerLen.
func FuzzEncoders(f *testing.F) {
	f.Add("node-a", "sae\"1\\", uuidN(1), []byte("key bytes"), 256, `{"x":[1, 2]}`)
	f.Add("\xff\x00<>&", "é", "\u2028", []byte{}, -1, ``)
	f.Fuzz(func(t *testing.T, s1, s2, id string, key []byte, n int, ext string) {
		st := supply.Status{SourceKMEID: s1, TargetKMEID: s2, MasterSAEID: id, SlaveSAEID: s1 + s2,
			KeySize: n, StoredKeyCount: -n, MaxKeyCount: n >> 1, MaxKeyPerRequest: len(key),
			MaxKeySize: n * 3, MinKeySize: 1, MaxSAEIDCount: len(ext)}
		if json.Valid([]byte(ext)) {
			st.StatusExtension = json.RawMessage(ext)
		}
		var gotSt etsi014wire.Status
		strictDecode(t, appendStatus(nil, st), &gotSt)
		wantSt := st
		wantSt.SourceKMEID, wantSt.TargetKMEID = utf8Fixed(s1), utf8Fixed(s2)
		wantSt.MasterSAEID, wantSt.SlaveSAEID = utf8Fixed(id), utf8Fixed(s1+s2)
		if st.StatusExtension != nil {
			var c bytes.Buffer
			json.Compact(&c, st.StatusExtension) //nolint:errcheck // valid
			wantSt.StatusExtension = c.Bytes()
		}
		if !reflect.DeepEqual(gotSt, wantSt) {
			t.Fatalf("Status %+v reads back as %+v", wantSt, gotSt)
		}

		keys := []supply.Key{{ID: id, Bytes: key}, {ID: s1, Bytes: []byte(s2)}}
		b := appendContainer(nil, keys)
		if len(b) > containerLen(keys) {
			t.Fatalf("container of %d bytes, containerLen %d", len(b), containerLen(keys))
		}
		var kc etsi014wire.KeyContainer
		strictDecode(t, b, &kc)
		if len(kc.Keys) != len(keys) {
			t.Fatalf("%d keys read back, want %d", len(kc.Keys), len(keys))
		}
		for i, k := range keys {
			if got := kc.Keys[i]; got.KeyID != utf8Fixed(k.ID) || !bytes.Equal(got.Key, k.Bytes) {
				t.Fatalf("key %d %q %x reads back as %q %x", i, k.ID, k.Bytes, got.KeyID, got.Key)
			}
		}
	})
}

// The standard's examples, as encoding/json writes the etsi014 types, are
// what the encoders write byte for byte when no string needs escaping.
func TestEncodersMatchEncodingJSON(t *testing.T) {
	st := supply.Status{SourceKMEID: "AAAABBBBCCCCDDDD", TargetKMEID: "EEEEFFFFGGGGHHHH", MasterSAEID: "IIIIJJJJKKKKLLLL",
		SlaveSAEID: "MMMMNNNNOOOOPPPP", KeySize: 352, StoredKeyCount: 25000, MaxKeyCount: 100000,
		MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64, MaxSAEIDCount: 0}
	for _, ext := range []json.RawMessage{nil, json.RawMessage(`{"a":{"b":[1,"c"]}}`)} {
		st.StatusExtension = ext
		want, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendStatus(nil, st); string(got) != string(want) {
			t.Errorf("appendStatus:\n got %s\nwant %s", got, want)
		}
	}
	keys := []supply.Key{{ID: "bc490419-7d60-487f-adc1-4ddcc177c139", Bytes: []byte("0123456789abcdef0123456789abcdef")}, {ID: uuidN(7), Bytes: []byte{0xff}}}
	kc := etsi014wire.KeyContainer{}
	for _, k := range keys {
		kc.Keys = append(kc.Keys, etsi014wire.Key{KeyID: k.ID, Key: k.Bytes})
	}
	want, err := json.Marshal(kc)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendContainer(nil, keys); string(got) != string(want) {
		t.Errorf("appendContainer:\n got %s\nwant %s", got, want)
	}
	body, err := marshalError("m", []map[string]any{{"k": "<v>"}})
	if err != nil {
		t.Fatal(err)
	}
	var eb etsi014wire.ErrorBody
	strictDecode(t, body, &eb)
	if eb.Message != "m" || len(eb.Details) != 1 || eb.Details[0]["k"] != "<v>" {
		t.Errorf("marshalError reads back as %+v", eb)
	}
}
