// Package etsi014client takes a QKD link's keys from the key management
// entity (KME) of a QKD device over ETSI GS QKD 014 v1.1.1: our node is an
// SAE of that KME. It implements qkd.Source.
//
// The master end (the node with the lower ID) asks for new keys with
// enc_keys naming the other node's SAE as slave; the slave end asks its
// own KME for the same keys by ID with dec_keys naming the master's SAE.
// Each key becomes one block whose ID is the key's UUID.
//
// The connection is HTTPS with TLS 1.2 or newer and our client
// certificate (the KME takes our SAE ID from it); one keep-alive client is
// reused for every request; redirects are refused and no proxy is used.
//
// Errors name the request (method and URL), the HTTP status and the
// KME's message. Errors that mean the link delivers no key now — the KME
// unreachable, a 503 (not enough keys) or another 5xx — wrap qkd.ErrDown,
// so that the caller retries later; 400 and 401 point at a configuration
// problem and do not. Answers are decoded strictly: at most 16 MiB, no
// unknown fields or trailing data, key IDs must be UUIDs and unique, keys
// exactly the size asked; a key ID among the last 65536 returned is
// refused, since appending a key twice would reuse pad. Decoded keys that
// are not returned, and the response bodies holding them, are zeroised;
// key bytes are never logged. (Copies inside crypto/tls, net/http and
// encoding/json buffers are out of reach, as in any Go program.)
//
// # Memory and durable modes
//
// In memory mode (Config.Meta nil) the recent key IDs live as long as the
// Client: a restarted node would accept a key ID again from a KME that
// repeats one. In durable mode (Config.Meta set) they survive a restart,
// SIGKILL included: each Fetch or Get writes, in one metadata transaction
// before it returns its keys, the key IDs it adds (one record per call,
// never one per key) and deletes the records whose IDs have all been
// evicted; New reads them back in delivery order, so eviction continues
// where it stopped. If the write fails the keys are zeroised and the call
// fails. The records (recent.go has the layout) hold key IDs only, never
// key bytes or anything computed from them; one that does not decode
// refuses New with an error naming its key and wrapping ErrRecord.
package etsi014client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/internal/etsi014wire"
	"github.com/qrelay/qrelay/ringstore"
)

// Defaults of Config.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultPerRequest = 128
	DefaultGetRetry   = 2 * time.Second
	// MaxBody bounds a KME's answer.
	MaxBody = 16 << 20
)

// ErrBadResponse marks an answer from the KME that breaks the standard.
var ErrBadResponse = errors.New("malformed KME response")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("etsi014client: client closed")

// Config configures the client of one QKD link end.
type Config struct {
	// BaseURL is the KME's address, "https://host:port" (a path prefix is
	// kept).
	BaseURL string
	// SlaveSAE is the other end's SAE ID, named by the master in enc_keys.
	SlaveSAE string
	// MasterSAE is the other end's SAE ID, named by the slave in dec_keys.
	MasterSAE string
	// Master selects the end that calls Fetch (enc_keys); the other end
	// calls Get (dec_keys).
	Master bool
	// Certificate is our SAE's client certificate with its key.
	Certificate tls.Certificate
	// Roots verifies the KME's certificate (nil: the system's roots).
	Roots *x509.CertPool
	// KeySize is the key size in bits, a multiple of 8 (default: the KME's
	// key_size). Both ends must use the same.
	KeySize int
	// PerRequest is the number of keys per enc_keys or dec_keys request
	// (default: the KME's max_key_per_request, at most 128).
	PerRequest int
	// Timeout bounds each request (default 10 s).
	Timeout time.Duration
	// GetRetry is how long Get keeps retrying a dec_keys that the KME
	// answers with 400 — typically keys it has not received from its
	// partner KME yet — before failing (default 2 s; negative: no retry).
	GetRetry time.Duration
	// Logger receives connection and state changes (default
	// slog.Default()).
	Logger *slog.Logger
	// Meta, if set, is the node's metadata store (durable mode): the
	// recent key IDs the client refuses to deliver again are kept there,
	// so that they survive a restart (see the package doc). Nil is memory
	// mode: they live as long as the Client.
	Meta *ringstore.Meta
	// Name names the link in metadata keys; required with Meta, and the
	// same in every run: up to 128 characters, no '/', spaces or control
	// characters.
	Name string
}

// KMEStatus is the standard's Status object.
type KMEStatus = etsi014wire.Status

// StatusError is an HTTP answer other than 200 OK.
type StatusError struct {
	Method, URL string
	Code        int    // HTTP status code
	Message     string // the KME's message field, if any
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "etsi014client: %s %s: HTTP %d %s", e.Method, e.URL, e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		fmt.Fprintf(&b, ": KME says %q", e.Message)
	}
	switch {
	case e.Code == http.StatusUnauthorized:
		b.WriteString(": the KME refused our SAE: check that our certificate names the SAE ID registered at this KME, and that the SAE ID in the URL is its peer")
	case e.Code >= 500:
		fmt.Fprintf(&b, ": %v; retry later", qkd.ErrDown)
	}
	return b.String()
}

// Unwrap makes 5xx answers match qkd.ErrDown.
func (e *StatusError) Unwrap() error {
	if e.Code >= 500 {
		return qkd.ErrDown
	}
	return nil
}

// Client is one end's connection to its KME. It is safe for concurrent use.
type Client struct {
	cfg        Config
	log        *slog.Logger
	http       *http.Client
	transport  *http.Transport
	statusURL  string
	encURL     string
	decURL     string
	keyBytes   int
	perRequest int
	source     string

	// dmu serialises deliver, which holds it across the metadata write.
	dmu    sync.Mutex
	recent recentIDs                                 // key IDs returned lately, to refuse a repeat; under dmu
	update func(func(*ringstore.MetaTx) error) error // durable: cfg.Meta.Update; tests wrap it

	mu        sync.Mutex
	kme       KMEStatus
	closed    bool
	up        bool
	reason    string
	latency   time.Duration
	delivered uint64
	lastBlock time.Time
}

// New connects to the KME: it reads the link's status and refuses, with
// the reason, a KME that is unreachable or does not support the key size
// or request size configured.
func New(ctx context.Context, cfg Config) (*Client, error) {
	base, err := cfg.check()
	if err != nil {
		return nil, err
	}
	peer := cfg.SlaveSAE
	if !cfg.Master {
		peer = cfg.MasterSAE
	}
	prefix := base + etsi014wire.PathPrefix + url.PathEscape(peer)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{cfg.Certificate},
			RootCAs:      cfg.Roots,
			MinVersion:   tls.VersionTLS12,
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: cfg.Timeout,
	}
	c := &Client{
		cfg:       cfg,
		log:       cfg.Logger.With("kme", base, "master", cfg.Master),
		transport: tr,
		http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the KME redirected us: refused, keys are fetched from the configured address only")
		}},
		statusURL: prefix + "/status",
		encURL:    prefix + "/enc_keys",
		decURL:    prefix + "/dec_keys",
	}
	if cfg.Meta != nil {
		// The record is read before the KME is asked anything: a record
		// that does not decode refuses the start whatever the KME says.
		c.update = cfg.Meta.Update
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	st, err := c.Refresh(ctx)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("%w (is BaseURL %s right, and does the KME trust our certificate?)", err, base)
	}
	if err := c.settle(st); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	c.log.Info("ETSI 014 KME connected", "source_kme", st.SourceKMEID, "target_kme", st.TargetKMEID,
		"key_size", c.keyBytes*8, "per_request", c.perRequest, "stored_key_count", st.StoredKeyCount)
	return c, nil
}

// check validates cfg, fills defaults and returns the base URL without a
// trailing slash.
func (cfg *Config) check() (string, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("etsi014client: BaseURL %q: want https://host:port (ETSI 014 runs over HTTPS with mutual TLS)", cfg.BaseURL)
	}
	if cfg.Master && cfg.SlaveSAE == "" {
		return "", errors.New("etsi014client: SlaveSAE is empty: the master end names the other end's SAE ID in enc_keys")
	}
	if !cfg.Master && cfg.MasterSAE == "" {
		return "", errors.New("etsi014client: MasterSAE is empty: the slave end names the other end's SAE ID in dec_keys")
	}
	if len(cfg.Certificate.Certificate) == 0 || cfg.Certificate.PrivateKey == nil {
		return "", errors.New("etsi014client: Certificate is empty: ETSI 014 requires our SAE's client certificate and key")
	}
	if cfg.KeySize < 0 || cfg.KeySize%8 != 0 {
		return "", fmt.Errorf("etsi014client: KeySize %d bits: want a positive multiple of 8, or 0 for the KME's default", cfg.KeySize)
	}
	if cfg.PerRequest < 0 {
		return "", fmt.Errorf("etsi014client: PerRequest %d: want a positive number, or 0 for the default", cfg.PerRequest)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return "", fmt.Errorf("etsi014client: Timeout %v: want a positive duration", cfg.Timeout)
	}
	if cfg.GetRetry == 0 {
		cfg.GetRetry = DefaultGetRetry
	}
	if cfg.Meta != nil {
		if cfg.Name == "" {
			return "", errors.New("etsi014client: Name is empty: with Meta set, name the link (its metadata keys carry the name)")
		}
		if len(cfg.Name) > 128 || strings.IndexFunc(cfg.Name, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) >= 0 {
			return "", fmt.Errorf("etsi014client: Name %q: want at most 128 characters without '/', spaces or control characters (it is part of metadata keys)", cfg.Name)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// settle chooses the key and request sizes from the KME's status.
func (c *Client) settle(st KMEStatus) error {
	bits := c.cfg.KeySize
	if bits == 0 {
		bits = st.KeySize
		if bits <= 0 || bits%8 != 0 {
			return fmt.Errorf("etsi014client: GET %s: the KME's default key_size %d bits is not a positive multiple of 8: set KeySize", c.statusURL, st.KeySize)
		}
	}
	if st.MinKeySize > 0 && bits < st.MinKeySize || st.MaxKeySize > 0 && bits > st.MaxKeySize {
		return fmt.Errorf("etsi014client: GET %s: key size %d bits unsupported: the KME accepts %d to %d bits; set KeySize within that range (the same at both ends)",
			c.statusURL, bits, st.MinKeySize, st.MaxKeySize)
	}
	if st.MaxKeyPerRequest <= 0 {
		return fmt.Errorf("etsi014client: GET %s: max_key_per_request %d: %w", c.statusURL, st.MaxKeyPerRequest, ErrBadResponse)
	}
	per := c.cfg.PerRequest
	if per == 0 {
		per = min(st.MaxKeyPerRequest, DefaultPerRequest)
	}
	if per > st.MaxKeyPerRequest {
		return fmt.Errorf("etsi014client: GET %s: PerRequest %d exceeds the KME's max_key_per_request %d: lower it", c.statusURL, per, st.MaxKeyPerRequest)
	}
	if c.cfg.Master && st.SlaveSAEID != "" && st.SlaveSAEID != c.cfg.SlaveSAE {
		c.log.Warn("KME status names another slave SAE than configured", "configured", c.cfg.SlaveSAE, "kme_says", st.SlaveSAEID)
	}
	c.keyBytes, c.perRequest = bits/8, per
	c.source = "etsi014:" + st.SourceKMEID
	return nil
}

// Refresh reads the link's status from the KME.
func (c *Client) Refresh(ctx context.Context) (KMEStatus, error) {
	body, err := c.do(ctx, http.MethodGet, c.statusURL, nil)
	if err != nil {
		return KMEStatus{}, err
	}
	var st KMEStatus
	// Vendors add status fields; unknown ones are ignored here (keys are
	// decoded strictly).
	if err := decodeJSON(body, &st, false); err != nil {
		return KMEStatus{}, fmt.Errorf("etsi014client: GET %s: status: %v: %w", c.statusURL, err, ErrBadResponse)
	}
	c.mu.Lock()
	c.kme = st
	c.mu.Unlock()
	return st, nil
}

// KME is the status last read from the KME.
func (c *Client) KME() KMEStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kme
}

// do sends one request and returns the body of a 200 answer, which the
// caller zeroises.
func (c *Client) do(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("etsi014client: %s %s: %w", method, u, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("etsi014client: %s %s: %w", method, u, ctx.Err())
		}
		var verr *tls.CertificateVerificationError
		var oerr *net.OpError
		switch {
		case errors.As(err, &verr):
			err = fmt.Errorf("etsi014client: %s %s: the KME's certificate does not verify: %v: set Roots to the CA that issued it, and BaseURL to a name or address it is issued for", method, u, verr.Err)
		case errors.As(err, &oerr) && oerr.Op == "remote error": // a TLS alert from the KME
			err = fmt.Errorf("etsi014client: %s %s: the KME refused the TLS handshake (%v): does it trust the CA of our certificate, and is the certificate valid?", method, u, oerr.Err)
		default:
			err = fmt.Errorf("etsi014client: %s %s: KME unreachable: %v: %w; retry later", method, u, unwrapURL(err), qkd.ErrDown)
		}
		return nil, c.down(method, u, time.Since(start), err)
	}
	defer resp.Body.Close()
	b, err := readAll(resp.Body, MaxBody, resp.ContentLength)
	latency := time.Since(start)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, c.down(method, u, latency, fmt.Errorf("etsi014client: %s %s: HTTP %d: answer exceeds %d bytes: %w", method, u, resp.StatusCode, MaxBody, ErrBadResponse))
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("etsi014client: %s %s: %w", method, u, ctx.Err())
		}
		return nil, c.down(method, u, latency, fmt.Errorf("etsi014client: %s %s: reading the answer: %v: %w; retry later", method, u, err, qkd.ErrDown))
	}
	if resp.StatusCode != http.StatusOK {
		serr := &StatusError{Method: method, URL: u, Code: resp.StatusCode, Message: kmeMessage(b)}
		clear(b)
		if resp.StatusCode >= 500 {
			return nil, c.down(method, u, latency, serr)
		}
		c.ok(latency)
		return nil, serr
	}
	c.ok(latency)
	return b, nil
}

// unwrapURL drops the *url.Error wrapper, whose text repeats the URL.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (c *Client) ok(latency time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latency = latency
	if !c.up {
		c.up, c.reason = true, ""
		if c.source != "" { // not during New
			c.log.Info("ETSI 014 KME delivers keys again")
		}
	}
}

// down records a failed request and returns err. The transition to down is
// logged once.
func (c *Client) down(method, u string, latency time.Duration, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latency = latency
	if c.up {
		c.log.Warn("ETSI 014 KME delivers no keys", "request", method+" "+u, "reason", err.Error())
	}
	c.up, c.reason = false, err.Error()
	return err
}

// kmeMessage extracts the message of an Error body, or a short quote of a
// body that is not one.
func kmeMessage(b []byte) string {
	var e etsi014wire.ErrorBody
	msg := ""
	if json.Unmarshal(b, &e) == nil {
		msg = e.Message
	} else if len(bytes.TrimSpace(b)) > 0 {
		msg = "(not an ETSI Error object) " + string(b)
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return strings.ToValidUTF8(msg, "?")
}

var errTooLarge = errors.New("body too large")

// readAll reads r up to limit bytes. Buffers it outgrows are zeroised, and
// so is everything on error: bodies carry keys.
func readAll(r io.Reader, limit int, hint int64) ([]byte, error) {
	size := 4096
	if hint >= 0 && hint < int64(limit) {
		size = int(hint) + 1 // +1 to see EOF without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				clear(buf)
				return nil, errTooLarge
			}
			nb := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(nb, buf)
			clear(buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			clear(buf)
			return nil, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			clear(buf)
			return nil, err
		}
	}
}

// decodeJSON decodes one JSON value from b into v, with no trailing data,
// and with no unknown fields if strict.
func decodeJSON(b []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// decodeKeyContainer decodes a Key container strictly: 1 to max keys, each
// with a unique UUID key_ID and exactly keyBytes of key; extensions are
// allowed and ignored. On error every decoded key is zeroised.
func decodeKeyContainer(b []byte, maxKeys, keyBytes int) ([]etsi014wire.Key, error) {
	var kc etsi014wire.KeyContainer
	err := decodeJSON(b, &kc, true)
	if err == nil {
		err = checkKeys(kc.Keys, maxKeys, keyBytes)
	}
	if err != nil {
		for _, k := range kc.Keys {
			clear(k.Key)
		}
		return nil, err
	}
	return kc.Keys, nil
}

func checkKeys(keys []etsi014wire.Key, maxKeys, keyBytes int) error {
	if len(keys) == 0 || len(keys) > maxKeys {
		return fmt.Errorf("%d keys in the container, want 1 to %d", len(keys), maxKeys)
	}
	seen := make(map[string]struct{}, len(keys))
	for i, k := range keys {
		if !validUUID(k.KeyID) {
			return fmt.Errorf("key %d: key_ID %q is not a UUID", i, truncate(k.KeyID))
		}
		id := strings.ToLower(k.KeyID)
		if _, dup := seen[id]; dup {
			return fmt.Errorf("key %d: key_ID %s appears twice", i, k.KeyID)
		}
		seen[id] = struct{}{}
		if len(k.Key) != keyBytes {
			return fmt.Errorf("key %s: %d bytes, want %d (%d bits asked)", k.KeyID, len(k.Key), keyBytes, keyBytes*8)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// validUUID reports whether s is a key ID: a UUID in the 8-4-4-4-12 hex
// form, in either case.
func validUUID(s string) bool {
	_, err := etsi014wire.ParseKeyID(s)
	return err == nil
}

// Fetch asks the KME for new keys (master end): up to max bytes, at least
// one key, at most PerRequest keys. A 503 (not enough keys), another 5xx or
// an unreachable KME returns an error wrapping qkd.ErrDown; the caller
// retries later.
func (c *Client) Fetch(ctx context.Context, maxBytes int) ([]ringstore.Block, error) {
	if !c.cfg.Master {
		return nil, errors.New("etsi014client: Fetch called at the slave end: the slave asks for the master's keys with Get")
	}
	n := min(c.perRequest, max(1, maxBytes/c.keyBytes))
	req, err := json.Marshal(etsi014wire.KeyRequest{Number: n, Size: c.keyBytes * 8})
	if err != nil {
		return nil, err
	}
	b, err := c.do(ctx, http.MethodPost, c.encURL, req)
	if err != nil {
		return nil, err
	}
	keys, err := decodeKeyContainer(b, n, c.keyBytes)
	clear(b)
	if err != nil {
		return nil, c.bad(http.MethodPost, c.encURL, err)
	}
	now := time.Now()
	out := make([]ringstore.Block, len(keys))
	for i, k := range keys {
		out[i] = ringstore.Block{ID: k.KeyID, Source: c.source, Time: now, Data: k.Key}
	}
	if err := c.deliver(http.MethodPost, c.encURL, out, now); err != nil {
		return nil, err
	}
	return out, nil
}

// bad records a malformed answer: the KME is up but does not follow the
// standard.
func (c *Client) bad(method, u string, err error) error {
	return fmt.Errorf("etsi014client: %s %s: key container: %v: %w", method, u, err, ErrBadResponse)
}

// deliver records blocks about to be returned by the request method u.
// It refuses (and zeroises) them all if the KME has handed out one of
// their IDs before: appending a key twice would reuse pad. In durable mode
// it records their IDs, and forgets the evicted ones, in one metadata
// transaction first; if that fails the blocks are zeroised and not
// returned.
func (c *Client) deliver(method, u string, out []ringstore.Block, now time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	for _, b := range out {
		if c.recent.has(b.ID) {
			for _, b := range out {
				clear(b.Data)
			}
			return c.bad(method, u, fmt.Errorf("key %s was delivered before: refused, a key used twice would reuse pad", b.ID))
		}
	}
	ids := make([]string, len(out))
	for i, b := range out {
		ids[i] = strings.ToLower(b.ID)
	}
	if err := c.persist(ids); err != nil {
		for _, b := range out {
			clear(b.Data)
		}
		return fmt.Errorf("etsi014client: %s %s: %w; the %d keys it returned are dropped, not handed out", method, u, err, len(out))
	}
	c.recent.addBatch(ids)
	c.mu.Lock()
	c.delivered += uint64(len(out) * c.keyBytes)
	c.lastBlock = now
	c.mu.Unlock()
	return nil
}

// Get asks the KME for the keys ids (slave end) and returns them in the
// order asked. IDs are sent PerRequest at a time. A dec_keys answered with
// 400 (keys not at this KME yet) is retried for GetRetry. If a later
// request fails, the keys of earlier ones are lost (the KME has removed
// them) and zeroised.
func (c *Client) Get(ctx context.Context, ids []string) ([]ringstore.Block, error) {
	if c.cfg.Master {
		return nil, errors.New("etsi014client: Get called at the master end: the master learns its keys with Fetch")
	}
	pos := make(map[string]int, len(ids))
	for i, id := range ids {
		if !validUUID(id) {
			return nil, fmt.Errorf("etsi014client: key ID %q (position %d) is not a UUID: ETSI 014 key IDs are UUIDs", truncate(id), i)
		}
		l := strings.ToLower(id)
		if j, dup := pos[l]; dup {
			return nil, fmt.Errorf("etsi014client: key %s asked twice (positions %d and %d)", id, j, i)
		}
		pos[l] = i
	}
	out := make([]ringstore.Block, len(ids))
	fail := func(err error) ([]ringstore.Block, error) {
		for _, b := range out {
			clear(b.Data)
		}
		return nil, err
	}
	now := time.Now()
	for lo := 0; lo < len(ids); lo += c.perRequest {
		chunk := ids[lo:min(lo+c.perRequest, len(ids))]
		keys, err := c.decKeys(ctx, chunk)
		if err != nil {
			if lo > 0 {
				err = fmt.Errorf("%w (keys %s to %s, fetched before this failure, are gone from the KME)", err, ids[0], ids[lo-1])
			}
			return fail(err)
		}
		for _, k := range keys {
			i, ok := pos[strings.ToLower(k.KeyID)]
			if !ok || i < lo || i >= lo+len(chunk) {
				for _, k := range keys {
					clear(k.Key)
				}
				return fail(c.bad(http.MethodPost, c.decURL, fmt.Errorf("key %s was not asked for", k.KeyID)))
			}
			out[i] = ringstore.Block{ID: ids[i], Source: c.source, Time: now, Data: k.Key}
		}
		var missing []string
		for i := lo; i < lo+len(chunk); i++ {
			if out[i].Data == nil {
				missing = append(missing, ids[i])
			}
		}
		if len(missing) > 0 {
			return fail(c.bad(http.MethodPost, c.decURL, fmt.Errorf("keys missing from the answer: %s", strings.Join(missing, ", "))))
		}
	}
	if err := c.deliver(http.MethodPost, c.decURL, out, now); err != nil {
		return nil, err
	}
	return out, nil
}

// decKeys makes one dec_keys request, retrying 400 answers for GetRetry.
func (c *Client) decKeys(ctx context.Context, ids []string) ([]etsi014wire.Key, error) {
	req := etsi014wire.KeyIDs{KeyIDs: make([]etsi014wire.KeyIDEntry, len(ids))}
	for i, id := range ids {
		req.KeyIDs[i].KeyID = id
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	start, backoff := time.Now(), 10*time.Millisecond
	for {
		b, err := c.do(ctx, http.MethodPost, c.decURL, body)
		var serr *StatusError
		if errors.As(err, &serr) && serr.Code == http.StatusBadRequest && time.Since(start)+backoff < c.cfg.GetRetry {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("etsi014client: POST %s: %w (after %v)", c.decURL, ctx.Err(), err)
			case <-t.C:
			}
			backoff = min(2*backoff, 500*time.Millisecond)
			continue
		}
		if err != nil {
			if serr != nil && serr.Code == http.StatusBadRequest {
				return nil, fmt.Errorf("%w (asked for %d keys: %s)", err, len(ids), idList(ids))
			}
			return nil, err
		}
		keys, err := decodeKeyContainer(b, len(ids), c.keyBytes)
		clear(b)
		if err != nil {
			return nil, c.bad(http.MethodPost, c.decURL, err)
		}
		return keys, nil
	}
}

func idList(ids []string) string {
	if len(ids) > 4 {
		return strings.Join(ids[:4], ", ") + fmt.Sprintf(", … %d more", len(ids)-4)
	}
	return strings.Join(ids, ", ")
}

// Status reports the link as the last requests to the KME saw it.
func (c *Client) Status() qkd.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	reason := c.reason
	if c.closed {
		reason = "client closed"
	}
	return qkd.Status{
		Kind:      "etsi014",
		Up:        c.up && !c.closed,
		Reason:    reason,
		Delivered: c.delivered,
		LastBlock: c.lastBlock,
		Latency:   c.latency,
	}
}

// Close stops the client and closes its idle connections. It holds no
// keys between calls.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.transport.CloseIdleConnections()
	return nil
}
