// Package fakekme is a fake pair of QKD key management entities (KMEs)
// speaking ETSI GS QKD 014 v1.1.1, for tests of the southbound client.
//
// A Pair is the two KMEs at the ends of one QKD link, A and B, sharing one
// key store. Each is an httptest TLS server that requires a client
// certificate from the pair's CA and takes the caller's SAE ID from it
// (pki.PeerID). KME A serves SAE SAEA, whose peer is SAEB at KME B, and
// the other way round.
//
// What it implements, following the standard (ExtraSAEsA/B register more
// SAEs at a KME, for authorisation tests):
//   - GET /api/v1/keys/{slave_SAE_ID}/status
//   - POST (JSON body, may be empty) and GET (?number=&size=)
//     /api/v1/keys/{slave_SAE_ID}/enc_keys: keys leave the store; the
//     other KME keeps them for the slave's dec_keys.
//   - POST (JSON body) and GET (?key_ID=) /api/v1/keys/{master_SAE_ID}/dec_keys:
//     keys leave the other KME for good.
//   - 400 with {"message": ...} for bad requests (the standard's messages
//     where it names one), 401 with no body when the caller is not the
//     KME's SAE, the URL names an SAE that is not its peer, or dec_keys
//     asks for keys handed out to another slave or by another master; 503
//     with a message when the store holds too few keys or the KME is Down.
//
// Keys are random (crypto/rand); key IDs are random UUIDs. Requests are
// counted per route. It is compact, not hardened: it is test code.
//
// It writes its own JSON types and UUID code on purpose, rather than
// using internal/etsi014wire: it is an independent oracle of the standard,
// so a mistake in the shared wire types shows up as a disagreement with
// it instead of passing on both sides.
package fakekme

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
)

// Config configures a Pair. Zero fields take the defaults shown.
type Config struct {
	CA               *pki.CA // a new lab CA
	KMEA, KMEB       string  // KME IDs: "KME-A", "KME-B"
	SAEA, SAEB       string  // SAE IDs served by A and B: "sae-a", "sae-b"
	KeySize          int     // default key size in bits: 256
	MaxKeyCount      int     // store capacity in keys of KeySize: 100000
	MaxKeyPerRequest int     // 128
	MaxKeySize       int     // 1024
	MinKeySize       int     // 64
	// Rate is the key production in bit/s into the shared store; 0 means
	// unlimited (the store is always full) until SetStock is called.
	Rate float64
	// ExtraSAEsA and ExtraSAEsB are further SAEs registered at A and B,
	// for authorisation tests: any SAE of one KME may ask for keys for any
	// SAE of the other.
	ExtraSAEsA, ExtraSAEsB []string
}

// Pair is two KMEs sharing one key store.
type Pair struct {
	A, B *KME
	CA   *pki.CA
	cfg  Config

	mu        sync.Mutex
	unlimited bool
	stock     float64 // bits in the store
	stockAt   time.Time
	handed    map[string]*handed // key ID (lower case) → key awaiting dec_keys
}

// handed is a key given out by enc_keys, kept for the slave's dec_keys.
type handed struct {
	id            string
	key           []byte
	master, slave string
	at            *KME // the KME that may deliver it
}

// KME is one fake key management entity.
type KME struct {
	ID   string // KME ID
	SAE  string // the SAE it serves
	Peer string // the SAE at the other KME
	URL  string // https://127.0.0.1:port

	saes map[string]bool // SAEs registered here

	pair      *Pair
	other     *KME
	srv       *httptest.Server
	inner     http.Handler
	down      atomic.Bool
	intercept atomic.Pointer[http.Handler]
	counts    [numRoutes]atomic.Int64
}

// Route names a counted route.
type Route int

const (
	Status Route = iota
	EncKeys
	DecKeys
	Other // anything else, including malformed paths
	numRoutes
)

// NewPair starts two KMEs, stopped by tb's cleanup.
func NewPair(tb testing.TB, cfg Config) *Pair {
	tb.Helper()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	def(&cfg.KMEA, "KME-A")
	def(&cfg.KMEB, "KME-B")
	def(&cfg.SAEA, "sae-a")
	def(&cfg.SAEB, "sae-b")
	defInt(&cfg.KeySize, 256)
	defInt(&cfg.MaxKeyCount, 100000)
	defInt(&cfg.MaxKeyPerRequest, 128)
	defInt(&cfg.MaxKeySize, 1024)
	defInt(&cfg.MinKeySize, 64)
	if cfg.CA == nil {
		ca, err := pki.NewCA("fakekme test CA", time.Hour)
		if err != nil {
			tb.Fatal(err)
		}
		cfg.CA = ca
	}
	p := &Pair{CA: cfg.CA, cfg: cfg, unlimited: cfg.Rate == 0, stockAt: time.Now(), handed: map[string]*handed{}}
	set := func(main string, extra []string) map[string]bool {
		m := map[string]bool{main: true}
		for _, s := range extra {
			m[s] = true
		}
		return m
	}
	p.A = &KME{ID: cfg.KMEA, SAE: cfg.SAEA, Peer: cfg.SAEB, pair: p, saes: set(cfg.SAEA, cfg.ExtraSAEsA)}
	p.B = &KME{ID: cfg.KMEB, SAE: cfg.SAEB, Peer: cfg.SAEA, pair: p, saes: set(cfg.SAEB, cfg.ExtraSAEsB)}
	p.A.other, p.B.other = p.B, p.A
	for _, k := range []*KME{p.A, p.B} {
		k.start(tb)
	}
	tb.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for id, h := range p.handed {
			clear(h.key)
			delete(p.handed, id)
		}
	})
	return p
}

func (k *KME) start(tb testing.TB) {
	cert, err := k.pair.CA.Issue(pki.Node, k.ID, time.Hour, "127.0.0.1", "localhost")
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/keys/{sae}/status", k.status)
	mux.HandleFunc("GET /api/v1/keys/{sae}/enc_keys", k.encKeys)
	mux.HandleFunc("POST /api/v1/keys/{sae}/enc_keys", k.encKeys)
	mux.HandleFunc("GET /api/v1/keys/{sae}/dec_keys", k.decKeys)
	mux.HandleFunc("POST /api/v1/keys/{sae}/dec_keys", k.decKeys)
	k.inner = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k.down.Load() {
			fail(w, http.StatusServiceUnavailable, "KME "+k.ID+" is down")
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			k.counts[Other].Add(1) // the mux answers 404 or 405
		}
		mux.ServeHTTP(w, r)
	})
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := k.intercept.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		k.inner.ServeHTTP(w, r)
	}))
	k.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    k.pair.CA.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	k.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TLS handshake failures are tested on purpose
	k.srv.StartTLS()
	k.URL = k.srv.URL
	tb.Cleanup(k.srv.Close)
}

// ClientCert issues a client certificate for SAE id from the pair's CA.
func (p *Pair) ClientCert(tb testing.TB, id string) tls.Certificate {
	tb.Helper()
	c, err := p.CA.Issue(pki.SAE, id, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return c.TLS
}

// Roots is a pool holding the pair's CA, to verify the KMEs.
func (p *Pair) Roots() *x509.CertPool { return p.CA.Pool() }

// SetStock sets the store to n keys of the default size and ends unlimited
// mode; the store then grows at Config.Rate.
func (p *Pair) SetStock(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unlimited = false
	p.stock = float64(n * p.cfg.KeySize)
	p.stockAt = time.Now()
}

// Pending is the number of keys handed out by enc_keys and not yet taken
// by dec_keys.
func (p *Pair) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.handed)
}

// Down makes the KME answer 503 to everything (true) or serve again.
func (k *KME) Down(down bool) { k.down.Store(down) }

// Intercept serves every request with h instead (nil: stop), after the TLS
// handshake has checked the client certificate: for hostile-KME tests.
func (k *KME) Intercept(h http.Handler) {
	if h == nil {
		k.intercept.Store(nil)
		return
	}
	k.intercept.Store(&h)
}

// Requests is the number of requests the KME has answered on route r
// (except intercepted ones).
func (k *KME) Requests(r Route) int64 { return k.counts[r].Load() }

// Handler serves the KME's routes as it would without Intercept, so that
// an interceptor can delegate to it.
func (k *KME) Handler() http.Handler { return k.inner }

// errorBody is the standard's Error object.
type errorBody struct {
	Message string           `json:"message"`
	Details []map[string]any `json:"details,omitempty"`
}

func fail(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.WriteHeader(code) // 401 has no body
		return
	}
	reply(w, code, errorBody{Message: msg})
}

func reply(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"message":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

// authorise checks the caller's certificate and the URL's SAE: the caller
// must be registered at this KME and the URL must name an SAE registered
// at the other. It answers 401 and returns false otherwise.
func (k *KME) authorise(w http.ResponseWriter, r *http.Request) (caller string, ok bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		fail(w, http.StatusUnauthorized, "")
		return "", false
	}
	id, err := pki.PeerID(r.TLS.PeerCertificates[0], pki.SAE)
	if err != nil || !k.saes[id] || !k.other.saes[r.PathValue("sae")] {
		fail(w, http.StatusUnauthorized, "")
		return "", false
	}
	return id, true
}

// StatusBody is the standard's Status object.
type StatusBody struct {
	SourceKMEID      string `json:"source_KME_ID"`
	TargetKMEID      string `json:"target_KME_ID"`
	MasterSAEID      string `json:"master_SAE_ID"`
	SlaveSAEID       string `json:"slave_SAE_ID"`
	KeySize          int    `json:"key_size"`
	StoredKeyCount   int    `json:"stored_key_count"`
	MaxKeyCount      int    `json:"max_key_count"`
	MaxKeyPerRequest int    `json:"max_key_per_request"`
	MaxKeySize       int    `json:"max_key_size"`
	MinKeySize       int    `json:"min_key_size"`
	MaxSAEIDCount    int    `json:"max_SAE_ID_count"`
}

func (k *KME) status(w http.ResponseWriter, r *http.Request) {
	k.counts[Status].Add(1)
	caller, ok := k.authorise(w, r)
	if !ok {
		return
	}
	c := k.pair.cfg
	p := k.pair
	p.mu.Lock()
	stored := int(p.stockLocked() / float64(c.KeySize))
	p.mu.Unlock()
	reply(w, http.StatusOK, StatusBody{
		SourceKMEID: k.ID, TargetKMEID: k.other.ID, MasterSAEID: caller, SlaveSAEID: r.PathValue("sae"),
		KeySize: c.KeySize, StoredKeyCount: stored, MaxKeyCount: c.MaxKeyCount,
		MaxKeyPerRequest: c.MaxKeyPerRequest, MaxKeySize: c.MaxKeySize, MinKeySize: c.MinKeySize,
	})
}

// stockLocked is the store's content in bits now.
func (p *Pair) stockLocked() float64 {
	limit := float64(p.cfg.MaxKeyCount * p.cfg.KeySize)
	if p.unlimited {
		return limit
	}
	now := time.Now()
	p.stock = min(limit, p.stock+now.Sub(p.stockAt).Seconds()*p.cfg.Rate)
	p.stockAt = now
	return p.stock
}

// KeyRequest is the standard's Key request object.
type KeyRequest struct {
	Number                *int              `json:"number"`
	Size                  *int              `json:"size"`
	AdditionalSlaveSAEIDs []string          `json:"additional_slave_SAE_IDs"`
	ExtensionMandatory    []json.RawMessage `json:"extension_mandatory"`
	ExtensionOptional     []json.RawMessage `json:"extension_optional"`
}

// KeyIDs is the standard's Key IDs object.
type KeyIDs struct {
	KeyIDs []struct {
		KeyID          string          `json:"key_ID"`
		KeyIDExtension json.RawMessage `json:"key_ID_extension"`
	} `json:"key_IDs"`
	KeyIDsExtension json.RawMessage `json:"key_IDs_extension"`
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// ParseJSON decodes a request body strictly into v: no unknown fields, no
// trailing data, at most 1 MiB. An empty body leaves v as it is.
func ParseJSON(body []byte, v any) error {
	if len(body) > maxBody {
		return fmt.Errorf("body of %d bytes exceeds %d", len(body), maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// CheckKeyRequest validates a key request against the KME's limits and
// returns the number and size (bits) of keys asked, or the 400 message.
func CheckKeyRequest(req KeyRequest, c Config) (number, size int, msg string) {
	number, size = 1, c.KeySize
	if req.Number != nil {
		number = *req.Number
	}
	if req.Size != nil {
		size = *req.Size
	}
	switch {
	case len(req.ExtensionMandatory) > 0:
		return 0, 0, "not all extension_mandatory parameters are supported"
	case len(req.AdditionalSlaveSAEIDs) > 0:
		return 0, 0, "additional_slave_SAE_IDs: this KME supports no additional slave SAEs (max_SAE_ID_count 0)"
	case number < 1 || number > c.MaxKeyPerRequest:
		return 0, 0, fmt.Sprintf("number %d: want 1 to max_key_per_request %d", number, c.MaxKeyPerRequest)
	case size%8 != 0:
		return 0, 0, "size shall be a multiple of 8"
	case size < c.MinKeySize || size > c.MaxKeySize:
		return 0, 0, fmt.Sprintf("size %d: want min_key_size %d to max_key_size %d bits", size, c.MinKeySize, c.MaxKeySize)
	}
	return number, size, ""
}

// WireKey is one key of a Key container.
type WireKey struct {
	KeyID string `json:"key_ID"`
	Key   []byte `json:"key"` // base64 in JSON
}

// KeyContainer is the standard's Key container object.
type KeyContainer struct {
	Keys []WireKey `json:"keys"`
}

func (k *KME) encKeys(w http.ResponseWriter, r *http.Request) {
	k.counts[EncKeys].Add(1)
	caller, ok := k.authorise(w, r)
	if !ok {
		return
	}
	var req KeyRequest
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		for name, vals := range q {
			if (name != "number" && name != "size") || len(vals) != 1 {
				fail(w, http.StatusBadRequest, "query parameter "+name+": GET enc_keys takes one number and one size at most")
				return
			}
			n, err := strconv.Atoi(vals[0])
			if err != nil {
				fail(w, http.StatusBadRequest, "query parameter "+name+": not an integer")
				return
			}
			if name == "number" {
				req.Number = &n
			} else {
				req.Size = &n
			}
		}
	} else {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		if err := ParseJSON(body, &req); err != nil {
			fail(w, http.StatusBadRequest, "key request: "+err.Error())
			return
		}
	}
	number, size, msg := CheckKeyRequest(req, k.pair.cfg)
	if msg != "" {
		fail(w, http.StatusBadRequest, msg)
		return
	}
	p := k.pair
	p.mu.Lock()
	if have := p.stockLocked(); have < float64(number*size) {
		p.mu.Unlock()
		fail(w, http.StatusServiceUnavailable, fmt.Sprintf("not enough keys: %d bits stored, %d asked", int(have), number*size))
		return
	}
	if !p.unlimited {
		p.stock -= float64(number * size)
	}
	out := KeyContainer{Keys: make([]WireKey, number)}
	for i := range out.Keys {
		key := make([]byte, size/8)
		rand.Read(key)
		id := newUUID()
		p.handed[id] = &handed{id: id, key: key, master: caller, slave: r.PathValue("sae"), at: k.other}
		out.Keys[i] = WireKey{KeyID: id, Key: key}
	}
	p.mu.Unlock()
	reply(w, http.StatusOK, out)
}

func (k *KME) decKeys(w http.ResponseWriter, r *http.Request) {
	k.counts[DecKeys].Add(1)
	caller, ok := k.authorise(w, r)
	if !ok {
		return
	}
	var ids []string
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		if len(q) != 1 || len(q["key_ID"]) != 1 {
			fail(w, http.StatusBadRequest, "GET dec_keys takes exactly one key_ID query parameter")
			return
		}
		ids = q["key_ID"]
	} else {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		var req KeyIDs
		if err := ParseJSON(body, &req); err != nil {
			fail(w, http.StatusBadRequest, "key IDs: "+err.Error())
			return
		}
		for _, e := range req.KeyIDs {
			ids = append(ids, e.KeyID)
		}
	}
	if len(ids) == 0 || len(ids) > k.pair.cfg.MaxKeyPerRequest {
		fail(w, http.StatusBadRequest, fmt.Sprintf("%d key IDs: want 1 to max_key_per_request %d", len(ids), k.pair.cfg.MaxKeyPerRequest))
		return
	}
	p := k.pair
	p.mu.Lock()
	defer p.mu.Unlock()
	out := KeyContainer{Keys: make([]WireKey, len(ids))}
	seen := map[string]bool{}
	for i, id := range ids {
		h := p.handed[id]
		if h == nil || h.at != k || seen[id] {
			fail(w, http.StatusBadRequest, "one or more keys specified are not found on KME")
			return
		}
		seen[id] = true
		if h.slave != caller || h.master != r.PathValue("sae") {
			fail(w, http.StatusUnauthorized, "")
			return
		}
		out.Keys[i] = WireKey{KeyID: id, Key: h.key}
	}
	for _, id := range ids {
		delete(p.handed, id)
	}
	reply(w, http.StatusOK, out)
	for _, key := range out.Keys {
		clear(key.Key)
	}
}

// newUUID returns a random (version 4) UUID in canonical lower-case form.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(out)
}
