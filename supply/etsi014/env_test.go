package etsi014

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/supply"

	"github.com/qrelay/qrelay/internal/pki"
)

// fakeService is a KeyService double: EncKeys makes keys filled with
// keyByte and remembers every Key it handed out, so that tests can check
// the handler zeroised them; DecKeys serves keys handed out earlier to the
// slave they were made for.
type fakeService struct {
	mu        sync.Mutex
	status    supply.Status
	statusErr error
	encErr    error
	decErr    error
	keyByte   byte
	short     bool // EncKeys returns one key too few
	encCalls  []supply.EncRequest
	decCalls  []supply.DecRequest
	handed    []supply.Key            // every key returned, for zeroisation checks
	stored    map[string][]supply.Key // by ID (lower case): slaves
	slaves    map[string]string
	next      int
	constKeys []supply.Key // if set, EncKeys returns copies of these (benchmark)
}

var _ supply.KeyService = (*fakeService)(nil)

func newFake() *fakeService {
	return &fakeService{keyByte: 0xa5, stored: map[string][]supply.Key{}, slaves: map[string]string{}}
}

func (f *fakeService) Status(_ context.Context, master, slave string) (supply.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statusErr != nil {
		return supply.Status{}, f.statusErr
	}
	s := f.status
	s.MasterSAEID, s.SlaveSAEID = master, slave
	return s, nil
}

func uuidN(n int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", n, n) }

func (f *fakeService) EncKeys(_ context.Context, req supply.EncRequest) ([]supply.Key, error) {
	if f.constKeys != nil {
		keys := make([]supply.Key, len(f.constKeys))
		for i, k := range f.constKeys {
			keys[i] = supply.Key{ID: k.ID, Bytes: append([]byte(nil), k.Bytes...)}
		}
		return keys, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.encCalls = append(f.encCalls, req)
	if f.encErr != nil {
		return nil, f.encErr
	}
	n := req.Number
	if f.short {
		n--
	}
	keys := make([]supply.Key, n)
	for i := range keys {
		f.next++
		b := make([]byte, req.Size/8)
		for j := range b {
			b[j] = f.keyByte
		}
		keys[i] = supply.Key{ID: uuidN(f.next), Bytes: b}
		f.handed = append(f.handed, keys[i])
		stored := supply.Key{ID: keys[i].ID, Bytes: append([]byte(nil), b...)}
		f.stored[keys[i].ID] = []supply.Key{stored}
		f.slaves[keys[i].ID] = req.Slave
	}
	return keys, nil
}

func (f *fakeService) DecKeys(_ context.Context, req supply.DecRequest) ([]supply.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decCalls = append(f.decCalls, req)
	if f.decErr != nil {
		return nil, f.decErr
	}
	keys := make([]supply.Key, 0, len(req.IDs))
	for _, id := range req.IDs {
		s, ok := f.stored[strings.ToLower(id)]
		if !ok {
			return nil, supply.BadRequest(supply.MsgKeysNotFound, map[string]any{"key_ID": id})
		}
		if f.slaves[strings.ToLower(id)] != req.Slave {
			return nil, supply.ErrUnauthorized
		}
		k := supply.Key{ID: s[0].ID, Bytes: append([]byte(nil), s[0].Bytes...)}
		keys = append(keys, k)
		f.handed = append(f.handed, k)
	}
	return keys, nil
}

// clock is an injectable clock for the rate limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a handler served over mutual TLS by an httptest server.
type env struct {
	ca    *pki.CA
	svc   *fakeService
	clock *clock
	srv   *httptest.Server
	log   *strings.Builder
}

func testConfig(svc supply.KeyService) Config {
	return Config{
		Service:           svc,
		KeySize:           256,
		MinKeySize:        64,
		MaxKeySize:        1024,
		MaxKeysPerRequest: 128,
		Logger:            slog.New(slog.DiscardHandler),
	}
}

// newEnv starts a server; mod adjusts the config and tlsMod the server's
// TLS configuration.
func newEnv(tb testing.TB, mod func(*Config), tlsMod func(*tls.Config)) *env {
	tb.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{ca: ca, svc: newFake(), clock: &clock{t: time.Unix(1_700_000_000, 0)}, log: &strings.Builder{}}
	e.svc.status = supply.Status{SourceKMEID: "node-a", TargetKMEID: "node-b", KeySize: 256, StoredKeyCount: 25000,
		MaxKeyCount: 100000, MaxKeyPerRequest: 128, MaxKeySize: 1024, MinKeySize: 64}
	cfg := testConfig(e.svc)
	cfg.Now = e.clock.Now
	if mod != nil {
		mod(&cfg)
	}
	h, err := NewHandler(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	node, err := ca.Issue(pki.Node, "node-a", time.Hour, "127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(h)
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	e.srv.TLS = TLSConfig(node.TLS, ca.Pool())
	if tlsMod != nil {
		tlsMod(e.srv.TLS)
	}
	e.srv.StartTLS()
	tb.Cleanup(e.srv.Close)
	return e
}

// client is an HTTPS client presenting cert (none if nil).
func (e *env) client(tb testing.TB, cert *tls.Certificate) *http.Client {
	tb.Helper()
	cfg := &tls.Config{RootCAs: e.ca.Pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 4}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// sae is a client with an SAE certificate for id.
func (e *env) sae(tb testing.TB, kind pki.Kind, id string) *http.Client {
	tb.Helper()
	iss, err := e.ca.Issue(kind, id, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return e.client(tb, &iss.TLS)
}

// custom issues a certificate with the given CN and URI SANs.
func custom(tb testing.TB, ca *pki.CA, cn string, uris ...string) *tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type reply struct {
	code int
	hdr  http.Header
	body string
}

func (e *env) do(tb testing.TB, c *http.Client, method, path, body string) reply {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}
