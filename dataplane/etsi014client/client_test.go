package etsi014client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/internal/fakekme"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/ringstore"
)

var _ qkd.Source = (*Client)(nil)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// ends connects a master client to KME A and a slave client to KME B.
func ends(t *testing.T, p *fakekme.Pair, mod func(m, s *Config)) (master, slave *Client) {
	t.Helper()
	mc := Config{BaseURL: p.A.URL, SlaveSAE: p.B.SAE, Master: true, Certificate: p.ClientCert(t, p.A.SAE), Roots: p.Roots(), Logger: quiet()}
	sc := Config{BaseURL: p.B.URL, MasterSAE: p.A.SAE, Certificate: p.ClientCert(t, p.B.SAE), Roots: p.Roots(), Logger: quiet()}
	if mod != nil {
		mod(&mc, &sc)
	}
	var err error
	if master, err = New(t.Context(), mc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	if slave, err = New(t.Context(), sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

func blockIDs(bl []ringstore.Block) []string {
	out := make([]string, len(bl))
	for i, b := range bl {
		out[i] = b.ID
	}
	return out
}

func TestBothEndsGetTheSameKeys(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	m, s := ends(t, p, func(m, s *Config) { s.PerRequest = 7 })
	got, err := m.Fetch(t.Context(), 20*32)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("Fetch(20 keys of 256 bits) returned %d blocks", len(got))
	}
	for _, b := range got {
		if !validUUID(b.ID) || len(b.Data) != 32 || b.Source != "etsi014:KME-A" {
			t.Fatalf("block %q: %d bytes from %q; want a UUID, 32 bytes, etsi014:KME-A", b.ID, len(b.Data), b.Source)
		}
	}
	// The slave asks in another order, in requests of 7.
	ids := blockIDs(got)
	slices.Reverse(ids)
	before := p.B.Requests(fakekme.DecKeys)
	back, err := s.Get(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.B.Requests(fakekme.DecKeys) - before; n != 3 {
		t.Fatalf("20 keys in requests of 7 took %d dec_keys requests, want 3", n)
	}
	for i, b := range back {
		want := got[len(got)-1-i]
		if b.ID != want.ID || !bytes.Equal(b.Data, want.Data) || b.Source != "etsi014:KME-B" {
			t.Fatalf("slave block %d: %s from %s differs from master block %s", i, b.ID, b.Source, want.ID)
		}
	}
	if p.Pending() != 0 {
		t.Fatalf("%d keys left at the KME after dec_keys", p.Pending())
	}
	// Keys are handed out once.
	_, err = s.Get(t.Context(), ids[:1])
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "not found on KME") || !strings.Contains(err.Error(), ids[0]) {
		t.Fatalf("second Get: %v; want 400 naming the key", err)
	}
	for _, c := range []*Client{m, s} {
		st := c.Status()
		if st.Kind != "etsi014" || !st.Up || st.Simulated || st.Latency <= 0 || st.Delivered != 20*32 || st.LastBlock.IsZero() {
			t.Fatalf("status %+v", st)
		}
	}
	// A large Fetch is bounded by PerRequest (128 by default).
	big, err := m.Fetch(t.Context(), 1<<20)
	if err != nil || len(big) != 128 {
		t.Fatalf("Fetch(1 MiB) = %d keys, %v; want 128", len(big), err)
	}
	if one, err := m.Fetch(t.Context(), 1); err != nil || len(one) != 1 {
		t.Fatalf("Fetch(1 byte) = %d keys, %v; want 1", len(one), err)
	}
}

func TestKeySizeFromConfig(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{KeySize: 512})
	m, s := ends(t, p, func(m, s *Config) { m.KeySize, s.KeySize = 1024, 1024 })
	got, err := m.Fetch(t.Context(), 4*128)
	if err != nil || len(got) != 4 || len(got[0].Data) != 128 {
		t.Fatalf("Fetch of 1024-bit keys: %d keys, %v", len(got), err)
	}
	if _, err := s.Get(t.Context(), blockIDs(got)); err != nil {
		t.Fatal(err)
	}
	// The slave configured with another size refuses the keys.
	got, _ = m.Fetch(t.Context(), 128)
	s2, err := New(t.Context(), Config{BaseURL: p.B.URL, MasterSAE: p.A.SAE, Certificate: p.ClientCert(t, p.B.SAE), Roots: p.Roots(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	_, err = s2.Get(t.Context(), blockIDs(got))
	if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "128 bytes, want 64") {
		t.Fatalf("Get with a mismatched key size: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	good := Config{BaseURL: p.A.URL, SlaveSAE: p.B.SAE, Master: true, Certificate: p.ClientCert(t, p.A.SAE), Roots: p.Roots(), Logger: quiet()}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"http", func(c *Config) { c.BaseURL = strings.Replace(c.BaseURL, "https", "http", 1) }, "want https://host:port"},
		{"no slave", func(c *Config) { c.SlaveSAE = "" }, "SlaveSAE is empty"},
		{"no master", func(c *Config) { c.Master = false }, "MasterSAE is empty"},
		{"no cert", func(c *Config) { c.Certificate.Certificate = nil }, "Certificate is empty"},
		{"odd size", func(c *Config) { c.KeySize = 12 }, "KeySize 12"},
		{"big size", func(c *Config) { c.KeySize = 2048 }, "key size 2048 bits unsupported: the KME accepts 64 to 1024 bits"},
		{"per request", func(c *Config) { c.PerRequest = 500 }, "PerRequest 500 exceeds the KME's max_key_per_request 128"},
		{"wrong SAE cert", func(c *Config) { c.Certificate = p.ClientCert(t, "intruder") }, "HTTP 401 Unauthorized: the KME refused our SAE"},
		{"wrong peer", func(c *Config) { c.SlaveSAE = "sae-x" }, "/api/v1/keys/sae-x/status: HTTP 401"},
		{"untrusted KME", func(c *Config) { c.Roots = nil }, "the KME's certificate does not verify: x509: certificate signed by unknown authority: set Roots"},
		{"foreign CA", func(c *Config) { c.Certificate = otherCA(t) }, "the KME refused the TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			c, err := New(t.Context(), cfg)
			if err == nil {
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error saying %q", err, tc.want)
			}
		})
	}
	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := good
	cfg.BaseURL = "https://" + addr
	_, err = New(t.Context(), cfg)
	if !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "GET https://"+addr+"/api/v1/keys/sae-b/status: KME unreachable") {
		t.Fatalf("New against a closed port: %v", err)
	}
}

// otherCA issues an SAE certificate from a CA the KMEs do not trust.
func otherCA(t *testing.T) tls.Certificate {
	ca, err := pki.NewCA("stranger", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(pki.SAE, "sae-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c.TLS
}

// TestDecKeysByWrongSAE: keys handed out for sae-b are refused (401) to
// another SAE of the same KME, and stay there for sae-b.
func TestDecKeysByWrongSAE(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{ExtraSAEsB: []string{"sae-b2"}})
	m, s := ends(t, p, nil)
	other, err := New(t.Context(), Config{BaseURL: p.B.URL, MasterSAE: p.A.SAE, Certificate: p.ClientCert(t, "sae-b2"), Roots: p.Roots(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	got, err := m.Fetch(t.Context(), 3*32)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Get(t.Context(), blockIDs(got))
	var serr *StatusError
	if !errors.As(err, &serr) || serr.Code != http.StatusUnauthorized || errors.Is(err, qkd.ErrDown) ||
		!strings.Contains(err.Error(), "POST "+p.B.URL+"/api/v1/keys/sae-a/dec_keys: HTTP 401 Unauthorized: the KME refused our SAE") {
		t.Fatalf("dec_keys by another SAE: %v", err)
	}
	if _, err := s.Get(t.Context(), blockIDs(got)); err != nil {
		t.Fatalf("the rightful slave after a refused intruder: %v", err)
	}
}

func TestEmptyStoreIsDown(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	m, _ := ends(t, p, nil)
	p.SetStock(2)
	_, err := m.Fetch(t.Context(), 3*32)
	if !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "HTTP 503") || !strings.Contains(err.Error(), "not enough keys") {
		t.Fatalf("Fetch of 3 keys from a store of 2: %v; want ErrDown with the KME's message", err)
	}
	if st := m.Status(); st.Up || !strings.Contains(st.Reason, "not enough keys") {
		t.Fatalf("status after a 503: %+v", st)
	}
	if got, err := m.Fetch(t.Context(), 2*32); err != nil || len(got) != 2 {
		t.Fatalf("Fetch of the 2 stored keys: %d, %v", len(got), err)
	}
	if st := m.Status(); !st.Up || st.Reason != "" {
		t.Fatalf("status after keys flowed again: %+v", st)
	}
}

func TestKMEDown(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	m, s := ends(t, p, nil)
	got, err := m.Fetch(t.Context(), 32)
	if err != nil {
		t.Fatal(err)
	}
	p.A.Down(true)
	p.B.Down(true)
	if _, err := m.Fetch(t.Context(), 32); !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "KME KME-A is down") {
		t.Fatalf("Fetch from a down KME: %v", err)
	}
	if _, err := s.Get(t.Context(), blockIDs(got)); !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "KME KME-B is down") {
		t.Fatalf("Get from a down KME: %v", err)
	}
	p.B.Down(false)
	if _, err := s.Get(t.Context(), blockIDs(got)); err != nil {
		t.Fatalf("Get after the KME came back: %v", err)
	}
	// A connection cut mid-answer is a network error: down too.
	p.A.Intercept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	if _, err := m.Fetch(t.Context(), 32); !errors.Is(err, qkd.ErrDown) || !strings.Contains(err.Error(), "KME unreachable") {
		t.Fatalf("Fetch over a cut connection: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.Fetch(ctx, 32); !errors.Is(err, context.Canceled) || errors.Is(err, qkd.ErrDown) {
		t.Fatalf("Fetch with a cancelled context: %v; want context.Canceled, not ErrDown", err)
	}
}

// TestHostileKME: answers that break the standard are refused with a clear
// error, without panicking.
func TestHostileKME(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	m, s := ends(t, p, nil)
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	id1, id2 := "3b0a6e0c-4d5b-4c1a-9f7e-2a1b3c4d5e6f", "8c8d2f5e-0b7a-4b9e-8d6c-5a4b3c2d1e0f"
	kc := func(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }
	k := func(id, key string) string { return fmt.Sprintf(`{"key_ID":%q,"key":%q}`, id, key) }
	for _, tc := range []struct {
		name, body, want string
		code             int
	}{
		{"not JSON", "<html>hello</html>", "invalid character", 200},
		{"truncated", `{"keys":[{"key_ID":"` + id1, "unexpected EOF", 200},
		{"trailing", kc(k(id1, key)) + `{}`, "data after the JSON value", 200},
		{"unknown field", `{"keys":[],"evil":1}`, `unknown field "evil"`, 200},
		{"no keys", `{"keys":[]}`, "0 keys in the container", 200},
		{"null", `null`, "0 keys in the container", 200},
		{"too many", kc(k(id1, key), k(id2, key)), "2 keys in the container, want 1 to 1", 200},
		{"short key", kc(k(id1, base64.StdEncoding.EncodeToString(make([]byte, 31)))), "31 bytes, want 32", 200},
		{"no key", kc(`{"key_ID":"` + id1 + `"}`), "0 bytes, want 32", 200},
		{"bad base64", kc(k(id1, "!!!!")), "illegal base64", 200},
		{"bad UUID", kc(k("not-a-uuid", key)), `key_ID "not-a-uuid" is not a UUID`, 200},
		{"wrong type", `{"keys":[{"key_ID":5,"key":"` + key + `"}]}`, "cannot unmarshal number", 200},
		{"huge", `{"keys":[{"key_ID":"` + strings.Repeat("a", MaxBody) + `"}]}`, "answer exceeds", 200},
		{"HTML 500", "<html>oops</html>", `HTTP 500 Internal Server Error: KME says "(not an ETSI Error object) <html>oops</html>"`, 500},
		{"teapot", `{"message":"short and stout"}`, `HTTP 418 I'm a teapot: KME says "short and stout"`, 418},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.A.Intercept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.code)
				w.Write([]byte(tc.body))
			}))
			defer p.A.Intercept(nil)
			_, err := m.Fetch(t.Context(), 32)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "POST "+p.A.URL+"/api/v1/keys/sae-b/enc_keys") {
				t.Fatalf("Fetch: %v; want an error naming the request and saying %q", err, tc.want)
			}
			if tc.code == 200 && !errors.Is(err, ErrBadResponse) {
				t.Fatalf("Fetch: %v; want ErrBadResponse", err)
			}
		})
	}
	dup := kc(k(id1, key), k(strings.ToUpper(id1), key))
	for _, tc := range []struct{ name, body, want string }{
		{"duplicate", dup, "appears twice"},
		{"not asked", kc(k(id1, key), k("00000000-0000-0000-0000-000000000000", key)), "key 00000000-0000-0000-0000-000000000000 was not asked for"},
		{"missing", kc(k(id2, key)), "keys missing from the answer: " + id1},
	} {
		t.Run("Get "+tc.name, func(t *testing.T) {
			p.B.Intercept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(tc.body)) }))
			defer p.B.Intercept(nil)
			_, err := s.Get(t.Context(), []string{id1, id2})
			if !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Get: %v; want ErrBadResponse saying %q", err, tc.want)
			}
		})
	}
	// A KME repeating a key it handed out before is refused.
	p.A.Intercept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(kc(k(id2, key)))) }))
	if _, err := m.Fetch(t.Context(), 32); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Fetch(t.Context(), 32); !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "key "+id2+" was delivered before") {
		t.Fatalf("Fetch of a repeated key: %v", err)
	}
	// A redirect is not followed.
	p.A.Intercept(http.RedirectHandler("https://example.invalid/steal", http.StatusTemporaryRedirect))
	if _, err := m.Fetch(t.Context(), 32); err == nil || !strings.Contains(err.Error(), "redirected") {
		t.Fatalf("Fetch answered with a redirect: %v", err)
	}
	p.A.Intercept(nil)
}

func TestGetRefusesBadIDs(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	m, s := ends(t, p, nil)
	id := "3b0a6e0c-4d5b-4c1a-9f7e-2a1b3c4d5e6f"
	if _, err := s.Get(t.Context(), []string{id, "x/../../status"}); err == nil || !strings.Contains(err.Error(), `key ID "x/../../status" (position 1) is not a UUID`) {
		t.Fatalf("Get of a non-UUID: %v", err)
	}
	if _, err := s.Get(t.Context(), []string{id, strings.ToUpper(id)}); err == nil || !strings.Contains(err.Error(), "asked twice") {
		t.Fatalf("Get of a duplicate: %v", err)
	}
	if _, err := m.Get(t.Context(), []string{id}); err == nil || !strings.Contains(err.Error(), "master end") {
		t.Fatalf("Get at the master: %v", err)
	}
	if _, err := s.Fetch(t.Context(), 32); err == nil || !strings.Contains(err.Error(), "slave end") {
		t.Fatalf("Fetch at the slave: %v", err)
	}
	if p.B.Requests(fakekme.DecKeys) != 0 {
		t.Fatal("invalid IDs reached the KME")
	}
}

// TestGetRetriesUntilKeysArrive: a dec_keys answered 400 (keys not at this
// KME yet) is retried within GetRetry.
func TestGetRetriesUntilKeysArrive(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	m, s := ends(t, p, nil)
	got, err := m.Fetch(t.Context(), 2*32)
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int32
	p.B.Intercept(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refused.Add(1) <= 2 {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"message":"one or more keys specified are not found on KME"}`))
			return
		}
		p.B.Handler().ServeHTTP(w, r)
	}))
	back, err := s.Get(t.Context(), blockIDs(got))
	if err != nil || !bytes.Equal(back[1].Data, got[1].Data) {
		t.Fatalf("Get after two 400s: %v", err)
	}
	if n := refused.Load(); n != 3 {
		t.Fatalf("%d dec_keys requests, want 3", n)
	}
	p.B.Intercept(nil)

	// Without retries, an unknown key fails at once, naming it.
	_, s1 := ends(t, p, func(m, s *Config) { s.GetRetry = -1 })
	unknown := "3b0a6e0c-4d5b-4c1a-9f7e-2a1b3c4d5e6f"
	before := p.B.Requests(fakekme.DecKeys)
	_, err = s1.Get(t.Context(), []string{unknown})
	if err == nil || !strings.Contains(err.Error(), "not found on KME") || !strings.Contains(err.Error(), unknown) || errors.Is(err, qkd.ErrDown) {
		t.Fatalf("Get of an unknown key: %v", err)
	}
	if n := p.B.Requests(fakekme.DecKeys) - before; n != 1 {
		t.Fatalf("%d requests without retry, want 1", n)
	}
}

func TestClose(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	m, _ := ends(t, p, nil)
	m.Close()
	if _, err := m.Fetch(t.Context(), 32); !errors.Is(err, ErrClosed) {
		t.Fatalf("Fetch after Close: %v", err)
	}
	if st := m.Status(); st.Up || st.Reason != "client closed" {
		t.Fatalf("status after Close: %+v", st)
	}
}

func TestReadAllZeroises(t *testing.T) {
	r := &recordingReader{data: bytes.Repeat([]byte{0xAB}, 20000)}
	b, err := readAll(r, MaxBody, -1)
	if err != nil || len(b) != 20000 {
		t.Fatalf("readAll: %d bytes, %v", len(b), err)
	}
	final := &b[:cap(b)][cap(b)-1]
	outgrown := 0
	for _, p := range r.bufs {
		// Each read fills the end of a buffer; the end tells which.
		if &p[:cap(p)][cap(p)-1] == final {
			continue
		}
		outgrown++
		if bytes.IndexByte(p[:cap(p)], 0xAB) >= 0 {
			t.Fatal("a buffer outgrown by readAll still holds body bytes")
		}
	}
	if outgrown == 0 {
		t.Fatal("readAll never grew its buffer: the test checks nothing")
	}
	if _, err := readAll(&recordingReader{data: make([]byte, 100)}, 99, -1); !errors.Is(err, errTooLarge) {
		t.Fatalf("readAll over the limit: %v", err)
	}
}

// recordingReader remembers the buffers it was asked to fill.
type recordingReader struct {
	data []byte
	bufs [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	r.bufs = append(r.bufs, p)
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestRecentIDs(t *testing.T) {
	var r recentIDs
	for i := range recentMax + 10 {
		r.add(fmt.Sprintf("ID-%d", i))
	}
	if r.has("id-9") || !r.has("id-10") || !r.has(fmt.Sprintf("ID-%d", recentMax+9)) || len(r.set) != recentMax {
		t.Fatalf("after %d adds: has(ID-9)=%v has(ID-10)=%v, %d remembered", recentMax+10, r.has("id-9"), r.has("id-10"), len(r.set))
	}
}
