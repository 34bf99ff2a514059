package adminapi

import (
	"encoding/json"
	"testing"
)

// FuzzStateBody: the body parser never panics, and whatever it accepts is a
// valid JSON object that encoding/json decodes to the same valid state.
// Seeds are in testdata/fuzz/FuzzStateBody.
func FuzzStateBody(f *testing.F) {
	for _, s := range States {
		body, _ := json.Marshal(StateRequest{State: s})
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		state, err := decodeStateBody(body)
		if err != nil {
			if state != "" {
				t.Fatalf("decodeStateBody(%q) = %q with error %v", body, state, err)
			}
			return
		}
		if err := ValidState(state); err != nil {
			t.Fatalf("decodeStateBody(%q) accepted %v", body, err)
		}
		var req StateRequest
		if err := json.Unmarshal(body, &req); err != nil || req.State != state {
			t.Fatalf("decodeStateBody(%q) = %q, but encoding/json gives %q, %v", body, state, req.State, err)
		}
	})
}
