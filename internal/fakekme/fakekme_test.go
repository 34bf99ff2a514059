package fakekme

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// client is an HTTPS client presenting SAE id's certificate.
func client(t *testing.T, p *Pair, id string) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{p.ClientCert(t, id)}, RootCAs: p.Roots()}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func call(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRoutes(t *testing.T) {
	p := NewPair(t, Config{})
	a, b := client(t, p, "sae-a"), client(t, p, "sae-b")
	enc := p.A.URL + "/api/v1/keys/sae-b/enc_keys"
	dec := p.B.URL + "/api/v1/keys/sae-a/dec_keys"

	code, body := call(t, a, "GET", p.A.URL+"/api/v1/keys/sae-b/status", "")
	var st StatusBody
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("status: %d %s", code, body)
	}
	want := StatusBody{SourceKMEID: "KME-A", TargetKMEID: "KME-B", MasterSAEID: "sae-a", SlaveSAEID: "sae-b", KeySize: 256,
		StoredKeyCount: 100000, MaxKeyCount: 100000, MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64}
	if st != want {
		t.Fatalf("status %+v, want %+v", st, want)
	}
	for _, field := range []string{`"max_SAE_ID_count":0`, `"stored_key_count":`, `"source_KME_ID":`} {
		if !strings.Contains(body, field) {
			t.Fatalf("status body %s lacks %s", body, field)
		}
	}

	// GET enc_keys with query parameters, then GET dec_keys by key_ID.
	code, body = call(t, a, "GET", enc+"?number=2&size=128", "")
	var kc KeyContainer
	if code != 200 || json.Unmarshal([]byte(body), &kc) != nil || len(kc.Keys) != 2 || len(kc.Keys[0].Key) != 16 {
		t.Fatalf("GET enc_keys: %d %s", code, body)
	}
	code, body = call(t, b, "GET", dec+"?key_ID="+kc.Keys[1].KeyID, "")
	var got KeyContainer
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Keys) != 1 || string(got.Keys[0].Key) != string(kc.Keys[1].Key) {
		t.Fatalf("GET dec_keys: %d %s", code, body)
	}
	// POST with an empty body: one key of the default size.
	code, body = call(t, a, "POST", enc, "")
	if code != 200 || json.Unmarshal([]byte(body), &kc) != nil || len(kc.Keys) != 1 || len(kc.Keys[0].Key) != 32 {
		t.Fatalf("POST enc_keys with no body: %d %s", code, body)
	}
	if p.Pending() != 2 {
		t.Fatalf("%d keys pending, want 2", p.Pending())
	}

	for _, tc := range []struct {
		c                 *http.Client
		method, url, body string
		code              int
		message           string
	}{
		{a, "POST", enc, `{"size":100}`, 400, "size shall be a multiple of 8"},
		{a, "POST", enc, `{"size":2048}`, 400, "size 2048: want min_key_size 64 to max_key_size 1024 bits"},
		{a, "POST", enc, `{"number":129}`, 400, "number 129: want 1 to max_key_per_request 128"},
		{a, "POST", enc, `{"number":0}`, 400, "number 0"},
		{a, "POST", enc, `{"extension_mandatory":[{"abc_x":1}]}`, 400, "not all extension_mandatory parameters are supported"},
		{a, "POST", enc, `{"additional_slave_SAE_IDs":["sae-c"]}`, 400, "max_SAE_ID_count 0"},
		{a, "POST", enc, `{"numbr":1}`, 400, `unknown field "numbr"`},
		{a, "POST", enc, `{"number":1}{}`, 400, "data after the JSON object"},
		{a, "GET", enc + "?count=3", "", 400, "query parameter count"},
		{b, "POST", dec, `{"key_IDs":[{"key_ID":"00000000-0000-0000-0000-000000000000"}]}`, 400, "one or more keys specified are not found on KME"},
		{b, "POST", dec, `{"key_IDs":[]}`, 400, "0 key IDs"},
		{b, "GET", dec + "?key_ID=a&key_ID=b", "", 400, "exactly one key_ID"},
		{b, "POST", p.A.URL + "/api/v1/keys/sae-a/dec_keys", `{"key_IDs":[{"key_ID":"` + kc.Keys[0].KeyID + `"}]}`, 401, ""}, // sae-b is not registered at A
		{a, "POST", p.A.URL + "/api/v1/keys/sae-x/enc_keys", `{}`, 401, ""},                                                  // unknown slave
		{a, "POST", dec, `{"key_IDs":[{"key_ID":"` + kc.Keys[0].KeyID + `"}]}`, 401, ""},                                     // sae-a is not registered at B
		{a, "POST", p.A.URL + "/api/v1/keys/sae-b/status", "", 405, ""},
		{a, "GET", p.A.URL + "/api/v2/nothing", "", 404, ""},
	} {
		code, body := call(t, tc.c, tc.method, tc.url, tc.body)
		if code != tc.code {
			t.Errorf("%s %s %s: HTTP %d %s, want %d", tc.method, tc.url, tc.body, code, body, tc.code)
			continue
		}
		switch {
		case code == 401 && body != "":
			t.Errorf("%s %s: 401 with body %q, want none", tc.method, tc.url, body)
		case code == 400:
			var e errorBody
			if json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Message, tc.message) {
				t.Errorf("%s %s %s: body %s, want a message saying %q", tc.method, tc.url, tc.body, body, tc.message)
			}
		}
	}
	if p.Pending() != 2 {
		t.Fatalf("refused requests changed the store: %d keys pending, want 2", p.Pending())
	}

	p.SetStock(1)
	if code, body := call(t, a, "POST", enc, `{"number":2}`); code != 503 || !strings.Contains(body, "not enough keys") {
		t.Fatalf("enc_keys beyond the stock: %d %s", code, body)
	}
	p.A.Down(true)
	if code, body := call(t, a, "GET", p.A.URL+"/api/v1/keys/sae-b/status", ""); code != 503 || !strings.Contains(body, `"message":"KME KME-A is down"`) {
		t.Fatalf("status of a down KME: %d %s", code, body)
	}
	if p.A.Requests(EncKeys) < 10 || p.A.Requests(Status) != 1 || p.A.Requests(Other) != 2 {
		t.Fatalf("request counts: enc_keys %d, status %d, other %d", p.A.Requests(EncKeys), p.A.Requests(Status), p.A.Requests(Other))
	}
}

// FuzzFakeKMERequest: the fake's key request parser never panics, and
// what it accepts is within the KME's limits.
func FuzzFakeKMERequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"number":3,"size":512}`, `{"size":100}`, `{"extension_optional":[{"a_b":1}]}`, `{"number":1}{}`, `[`} {
		f.Add([]byte(s))
	}
	cfg := Config{KeySize: 256, MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req KeyRequest
		if ParseJSON(body, &req) != nil {
			return
		}
		n, size, msg := CheckKeyRequest(req, cfg)
		if msg == "" && (n < 1 || n > 128 || size%8 != 0 || size < 64 || size > 1024) {
			t.Fatalf("accepted number %d size %d", n, size)
		}
	})
}
