package etsi014client

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/qrelay/qrelay/internal/etsi014wire"
)

// FuzzDecodeKeyContainer feeds arbitrary answers to the key container
// decoder: it must never panic, and whatever it accepts must satisfy the
// checks it promises. The seed corpus is in
// testdata/fuzz/FuzzDecodeKeyContainer.
func FuzzDecodeKeyContainer(f *testing.F) {
	f.Add([]byte(`{"keys":[{"key_ID":"3b0a6e0c-4d5b-4c1a-9f7e-2a1b3c4d5e6f","key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}`), 1, 32)
	f.Fuzz(func(t *testing.T, body []byte, maxKeys, keyBytes int) {
		maxKeys = 1 + int(uint(maxKeys)%130)
		keyBytes = 1 + int(uint(keyBytes)%160)
		keys, err := decodeKeyContainer(body, maxKeys, keyBytes)
		if err != nil {
			if keys != nil {
				t.Fatalf("error %v with %d keys", err, len(keys))
			}
			return
		}
		if len(keys) == 0 || len(keys) > maxKeys {
			t.Fatalf("accepted %d keys, max %d", len(keys), maxKeys)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if !validUUID(k.KeyID) || seen[strings.ToLower(k.KeyID)] || len(k.Key) != keyBytes {
				t.Fatalf("accepted key %q of %d bytes (want %d, unique)", k.KeyID, len(k.Key), keyBytes)
			}
			seen[strings.ToLower(k.KeyID)] = true
		}
		// What was accepted survives a round trip.
		again, err := json.Marshal(etsi014wire.KeyContainer{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeKeyContainer(again, maxKeys, keyBytes)
		if err != nil || len(back) != len(keys) {
			t.Fatalf("re-encoded container refused: %v", err)
		}
	})
}

// TestDecodeKeyContainerAccepts checks valid containers the fuzz seeds
// start from: extensions are ignored, JSON escapes in base64 are fine.
func TestDecodeKeyContainerAccepts(t *testing.T) {
	id := "3b0a6e0c-4d5b-4c1a-9f7e-2a1b3c4d5e6f"
	for _, body := range []string{
		`{"keys":[{"key_ID":"` + id + `","key_ID_extension":{"v_x":1},"key":"MDEyMzQ1Njc4OWFiY2RlZg==","key_extension":{"a":[1]}}],"key_container_extension":{}}`,
		`{"keys":[{"key_ID":"` + strings.ToUpper(id) + `","key":"MDEyMzQ1Njc4\/WFiY2RlZg=="}]}`,
	} {
		keys, err := decodeKeyContainer([]byte(body), 1, 16)
		if err != nil || len(keys) != 1 || len(keys[0].Key) != 16 {
			t.Fatalf("decode %s: %d keys, %v", body, len(keys), err)
		}
	}
}

// FuzzDecodeBatch feeds arbitrary values to the decoder of the durable
// records of recent key IDs: it must never panic, and whatever it accepts
// must be distinct lower-case UUIDs whose encoding is exactly the input.
// The seed corpus is in testdata/fuzz/FuzzDecodeBatch.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch([]string{"3b0a6e0c-4d5b-4c1a-9f7e-2a1b3c4d5e6f"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeBatch(b)
		if err != nil {
			if ids != nil {
				t.Fatalf("error %v with %d IDs", err, len(ids))
			}
			return
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if !validUUID(id) || strings.ToLower(id) != id || seen[id] {
				t.Fatalf("accepted key ID %q (want distinct lower-case UUIDs)", id)
			}
			seen[id] = true
		}
		if again := encodeBatch(ids); !bytes.Equal(again, b) {
			t.Fatalf("accepted %x as %q, which encodes as %x", b, ids, again)
		}
	})
}
