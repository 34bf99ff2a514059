package etsi014

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qrelay/qrelay/internal/etsi014wire"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/supply"
)

// Implementation constants.
const (
	pathPrefix     = etsi014wire.PathPrefix
	defaultMinSize = 64 // bits, the standard's example min_key_size
	// bodyBase and bodyPerKey make the default MaxBodyBytes: room for the
	// envelope and extensions plus one key ID object per key.
	bodyBase   = 16 << 10
	bodyPerKey = 128
	// chunkingSize is net/http's bufferBeforeChunkingSize: a response
	// shorter than this that is written before the handler returns gets
	// its Content-Length from net/http.
	chunkingSize = 2048
	// maxPooled is the largest buffer kept for reuse.
	maxPooled = 64 << 10
)

// Header values shared by all responses (never modified).
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
)

var _ http.Handler = (*handler)(nil)

type handler struct {
	svc      supply.KeyService
	identity supply.Identity

	keySize, minSize, maxSize int
	maxKeys, maxSAEs, maxBody int

	limits map[string]*bucket // fixed after NewHandler
	now    func() time.Time
	log    *slog.Logger
}

// NewHandler checks cfg and returns the ETSI GS QKD 014 handler. It
// expects to be served over TLS with verified client certificates
// (TLSConfig); without one every request is answered 401.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Service == nil {
		return nil, errors.New("supply: config: no KeyService")
	}
	if cfg.Identity != supply.IdentityURI && cfg.Identity != supply.IdentityCN {
		return nil, fmt.Errorf("supply: config: identity %v: want IdentityURI or IdentityCN", cfg.Identity)
	}
	if cfg.KeySize <= 0 || cfg.KeySize%8 != 0 {
		return nil, fmt.Errorf("supply: config: key size %d bits: want a positive multiple of 8", cfg.KeySize)
	}
	if cfg.MinKeySize == 0 {
		cfg.MinKeySize = min(defaultMinSize, cfg.KeySize)
	}
	if cfg.MaxKeySize == 0 {
		cfg.MaxKeySize = cfg.KeySize
	}
	if cfg.MinKeySize <= 0 || cfg.MinKeySize%8 != 0 || cfg.MaxKeySize%8 != 0 ||
		cfg.MinKeySize > cfg.KeySize || cfg.KeySize > cfg.MaxKeySize {
		return nil, fmt.Errorf("supply: config: key sizes min %d, default %d, max %d bits: want multiples of 8 with 0 < min <= default <= max",
			cfg.MinKeySize, cfg.KeySize, cfg.MaxKeySize)
	}
	if cfg.MaxKeysPerRequest < 1 {
		return nil, fmt.Errorf("supply: config: max keys per request %d: want at least 1", cfg.MaxKeysPerRequest)
	}
	if cfg.MaxSAEIDCount < 0 {
		return nil, fmt.Errorf("supply: config: max SAE ID count %d: want 0 (no additional slaves) or more", cfg.MaxSAEIDCount)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = bodyBase + bodyPerKey*max(cfg.MaxKeysPerRequest, cfg.MaxSAEIDCount)
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("supply: config: max body bytes %d: want a positive size", cfg.MaxBodyBytes)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &handler{
		svc:      cfg.Service,
		identity: cfg.Identity,
		keySize:  cfg.KeySize,
		minSize:  cfg.MinKeySize,
		maxSize:  cfg.MaxKeySize,
		maxKeys:  cfg.MaxKeysPerRequest,
		maxSAEs:  cfg.MaxSAEIDCount,
		maxBody:  cfg.MaxBodyBytes,
		limits:   map[string]*bucket{},
		now:      cfg.Now,
		log:      cfg.Logger,
	}
	now := cfg.Now()
	for sae, l := range cfg.Limits {
		if err := pki.ValidID(sae); err != nil {
			return nil, fmt.Errorf("supply: config: limit of SAE %q: %w", sae, err)
		}
		switch {
		case l.KeysPerSecond == 0:
			continue // no limit
		case !(l.KeysPerSecond > 0) || math.IsInf(l.KeysPerSecond, 0):
			return nil, fmt.Errorf("supply: config: limit of SAE %s: %v keys/s: want 0 (no limit) or a positive rate", sae, l.KeysPerSecond)
		case l.Burst < 0:
			return nil, fmt.Errorf("supply: config: limit of SAE %s: burst %d: want 0 (default) or more", sae, l.Burst)
		case l.Burst == 0:
			l.Burst = max(int(math.Ceil(l.KeysPerSecond)), cfg.MaxKeysPerRequest)
		}
		h.limits[sae] = newBucket(sae, l, now)
	}
	return h, nil
}

// buffers are a request's pooled body and response buffers.
type buffers struct {
	in, out []byte
}

var bufPool = sync.Pool{New: func() any {
	return &buffers{in: make([]byte, 0, 512), out: make([]byte, 0, 1024)}
}}

func getBuffers() *buffers { return bufPool.Get().(*buffers) }

// put returns bufs to the pool; out must have been cleared.
func (b *buffers) put() {
	if cap(b.in) > maxPooled || cap(b.out) > maxPooled {
		return
	}
	b.in, b.out = b.in[:0], b.out[:0]
	bufPool.Put(b)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	caller, err := h.caller(r)
	if err != nil {
		h.log.Warn("supply: refused a request", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "reason", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	sae, op, ok := splitPath(r.URL)
	if !ok {
		h.writeError(w, http.StatusNotFound, fmt.Sprintf("no route %s: the routes are %s{SAE_ID}/status, enc_keys and dec_keys", r.URL.Path, pathPrefix), nil)
		return
	}
	allow := "GET, POST"
	if op == "status" {
		allow = "GET"
	}
	if r.Method != http.MethodGet && (r.Method != http.MethodPost || op == "status") {
		w.Header().Set("Allow", allow)
		h.writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s: %s takes %s", r.Method, op, allow), nil)
		return
	}
	role := "slave_SAE_ID"
	if op == "dec_keys" {
		role = "master_SAE_ID"
	}
	if err := pki.ValidID(sae); err != nil {
		h.writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q in the URL: %v", role, sae, err), nil)
		return
	}
	switch op {
	case "status":
		h.status(w, r, caller, sae)
	case "enc_keys":
		h.encKeys(w, r, caller, sae)
	case "dec_keys":
		h.decKeys(w, r, caller, sae)
	}
}

// splitPath splits /api/v1/keys/{SAE_ID}/{op} and percent-decodes the SAE
// ID.
func splitPath(u *url.URL) (sae, op string, ok bool) {
	p := u.Path
	if u.RawPath != "" {
		p = u.EscapedPath()
	}
	rest, ok := strings.CutPrefix(p, pathPrefix)
	if !ok {
		return "", "", false
	}
	sae, op, ok = strings.Cut(rest, "/")
	if !ok || sae == "" {
		return "", "", false
	}
	switch op {
	case "status", "enc_keys", "dec_keys":
	default:
		return "", "", false
	}
	if u.RawPath != "" {
		var err error
		if sae, err = url.PathUnescape(sae); err != nil {
			return "", "", false
		}
	}
	return sae, op, true
}

// caller is the SAE ID in the request's verified client certificate.
func (h *handler) caller(r *http.Request) (string, error) {
	if r.TLS == nil {
		return "", errors.New("not TLS: the API needs mutual TLS")
	}
	if len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return "", errors.New("no verified client certificate")
	}
	cert := r.TLS.PeerCertificates[0]
	var id string
	if h.identity == supply.IdentityCN {
		for _, u := range cert.URIs {
			if u.Scheme == "qrelay" && !strings.HasPrefix(u.Opaque, string(pki.SAE)+":") {
				return "", fmt.Errorf("certificate %q is for %q, not an SAE", cert.Subject.CommonName, u.Opaque)
			}
		}
		id = cert.Subject.CommonName
	} else {
		var err error
		if id, err = pki.PeerID(cert, pki.SAE); err != nil {
			return "", err
		}
	}
	if err := pki.ValidID(id); err != nil {
		return "", fmt.Errorf("SAE ID %q in the certificate (identity %v): %w", id, h.identity, err)
	}
	return id, nil
}

func (h *handler) status(w http.ResponseWriter, r *http.Request, master, slave string) {
	if r.URL.RawQuery != "" {
		h.writeError(w, http.StatusBadRequest, "status takes no query parameters", nil)
		return
	}
	st, err := h.svc.Status(r.Context(), master, slave)
	if err != nil {
		h.fail(w, r, "status", master, err)
		return
	}
	b := getBuffers()
	b.out = appendStatus(b.out[:0], st)
	h.write(w, http.StatusOK, b.out, false)
	b.put()
}

func (h *handler) encKeys(w http.ResponseWriter, r *http.Request, master, slave string) {
	var p encParams
	var e *supply.Error
	b := getBuffers()
	defer b.put()
	if r.Method == http.MethodGet {
		p, e = parseEncQuery(r.URL.RawQuery)
	} else if e = postQuery(r); e == nil {
		if b.in, e = h.readBody(r, b.in[:0]); e == nil {
			p, e = parseEncBody(b.in)
		}
	}
	if e != nil {
		h.refuse(w, e)
		return
	}
	req, e := h.checkEnc(master, slave, p)
	if e != nil {
		h.refuse(w, e)
		return
	}
	bk := h.limits[master]
	if bk != nil {
		if wait, ok := bk.take(h.now(), req.Number); !ok {
			if wait > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			}
			h.writeError(w, http.StatusServiceUnavailable, bk.refusal(req.Number, wait), nil)
			return
		}
	}
	keys, err := h.svc.EncKeys(r.Context(), req)
	if err != nil {
		if bk != nil {
			bk.refund(req.Number)
		}
		zeroise(keys)
		h.fail(w, r, "enc_keys", master, err)
		return
	}
	if err := checkKeys(keys, req.Number, req.Size/8); err != nil {
		zeroise(keys)
		h.fail(w, r, "enc_keys", master, err)
		return
	}
	h.writeKeys(w, b, keys)
}

// postQuery refuses query parameters on a POST, which would otherwise be
// silently ignored.
func postQuery(r *http.Request) *supply.Error {
	if r.URL.RawQuery != "" {
		return badf("query %q with POST: put the parameters in the JSON body, or use GET", r.URL.RawQuery)
	}
	return nil
}

// checkEnc applies the defaults and this KME's limits to an enc_keys
// request.
func (h *handler) checkEnc(master, slave string, p encParams) (supply.EncRequest, *supply.Error) {
	req := supply.EncRequest{Master: master, Slave: slave, Number: 1, Size: h.keySize}
	if p.hasNumber {
		req.Number = p.number
	}
	if p.hasSize {
		req.Size = p.size
	}
	switch {
	case p.mandatory > 0:
		details := make([]map[string]any, len(p.mandatoryNames))
		for i, n := range p.mandatoryNames {
			details[i] = map[string]any{"extension_mandatory_unsupported": n}
		}
		return req, supply.BadRequest(supply.MsgMandatoryUnsupported, details...)
	case req.Size%8 != 0:
		return req, supply.BadRequest(supply.MsgSizeMultipleOf8)
	case req.Size < h.minSize || req.Size > h.maxSize:
		return req, badf("size %d bits is outside min_key_size %d to max_key_size %d", req.Size, h.minSize, h.maxSize)
	case req.Number < 1 || req.Number > h.maxKeys:
		return req, badf("number %d is outside 1 to max_key_per_request %d", req.Number, h.maxKeys)
	case len(p.additional) > h.maxSAEs:
		return req, badf("%s names %d SAEs; this KME takes at most max_SAE_ID_count %d", fAdditional, len(p.additional), h.maxSAEs)
	}
	for i, id := range p.additional {
		if err := pki.ValidID(id); err != nil {
			return req, badf("%s[%d] %q: %v", fAdditional, i, id, err)
		}
		if id == slave || id == master {
			return req, badf("%s[%d] %q is the slave or the master SAE already", fAdditional, i, id)
		}
		for j := range i {
			if p.additional[j] == id {
				return req, badf("%s[%d] %q repeats %s[%d]", fAdditional, i, id, fAdditional, j)
			}
		}
	}
	if len(p.additional) > 0 {
		req.AdditionalSlaves = p.additional
	}
	return req, nil
}

func (h *handler) decKeys(w http.ResponseWriter, r *http.Request, slave, master string) {
	var ids []string
	var e *supply.Error
	var where string
	b := getBuffers()
	defer b.put()
	if r.Method == http.MethodGet {
		var id string
		if id, e = parseDecQuery(r.URL.RawQuery); e == nil {
			ids, where = []string{id}, "query parameter key_ID"
		}
	} else if e = postQuery(r); e == nil {
		if b.in, e = h.readBody(r, b.in[:0]); e == nil {
			ids, e = parseDecBody(b.in)
			where = "request body: key_IDs"
		}
	}
	if e == nil {
		e = h.checkIDs(ids, where)
	}
	if e != nil {
		h.refuse(w, e)
		return
	}
	keys, err := h.svc.DecKeys(r.Context(), supply.DecRequest{Slave: slave, Master: master, IDs: ids})
	if err != nil {
		zeroise(keys)
		h.fail(w, r, "dec_keys", slave, err)
		return
	}
	if err := checkKeys(keys, len(ids), -1); err != nil {
		zeroise(keys)
		h.fail(w, r, "dec_keys", slave, err)
		return
	}
	h.writeKeys(w, b, keys)
}

// checkIDs refuses an empty or too long list, IDs that are not UUIDs and
// repeated IDs.
func (h *handler) checkIDs(ids []string, where string) *supply.Error {
	switch {
	case len(ids) == 0:
		return badf("%s: no key IDs: name at least one key_ID", where)
	case len(ids) > h.maxKeys:
		return badf("%s: %d key IDs, more than max_key_per_request %d", where, len(ids), h.maxKeys)
	}
	var small [16]etsi014wire.KeyID
	seen := small[:0]
	var index map[etsi014wire.KeyID]int
	if len(ids) > len(small) {
		index = make(map[etsi014wire.KeyID]int, len(ids))
	}
	for i, id := range ids {
		at := where
		if len(ids) > 1 || where != "query parameter key_ID" {
			at = fmt.Sprintf("%s[%d].key_ID", where, i)
		}
		u, err := etsi014wire.ParseKeyID(id)
		if err != nil {
			return badf("%s %q is not a UUID (want 8-4-4-4-12 hex digits)", at, id)
		}
		if index != nil {
			if j, dup := index[u]; dup {
				return badf("%s %q repeats key ID %d", at, id, j)
			}
			index[u] = i
			continue
		}
		for j, v := range seen {
			if v == u {
				return badf("%s %q repeats key ID %d", at, id, j)
			}
		}
		seen = append(seen, u)
	}
	return nil
}

// checkKeys checks what the service returned: n keys of size bytes each
// (size < 0: any size, at least one byte).
func checkKeys(keys []supply.Key, n, size int) error {
	if len(keys) != n {
		return fmt.Errorf("the key service returned %d keys for a request of %d", len(keys), n)
	}
	for i, k := range keys {
		switch {
		case size >= 0 && len(k.Bytes) != size:
			return fmt.Errorf("the key service returned key %d (%s) of %d bytes, want %d", i, k.ID, len(k.Bytes), size)
		case len(k.Bytes) == 0:
			return fmt.Errorf("the key service returned key %d (%s) with no bytes", i, k.ID)
		}
	}
	return nil
}

func zeroise(keys []supply.Key) {
	for _, k := range keys {
		clear(k.Bytes)
	}
}

// readBody reads the request body into dst, refusing more than maxBody
// bytes.
func (h *handler) readBody(r *http.Request, dst []byte) ([]byte, *supply.Error) {
	if r.ContentLength > int64(h.maxBody) {
		return dst, badf("request body of %d bytes exceeds this KME's limit of %d bytes", r.ContentLength, h.maxBody)
	}
	if r.ContentLength >= 0 && cap(dst) < int(r.ContentLength) {
		dst = make([]byte, 0, r.ContentLength)
	}
	for {
		if len(dst) == cap(dst) {
			if r.ContentLength >= 0 && len(dst) == int(r.ContentLength) {
				return dst, nil
			}
			grown := make([]byte, len(dst), min(2*cap(dst)+512, h.maxBody+1))
			copy(grown, dst)
			dst = grown
		}
		n, err := r.Body.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst) > h.maxBody {
			return dst, badf("request body exceeds this KME's limit of %d bytes", h.maxBody)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, badf("request body: reading: %v", err)
		}
	}
}

// writeKeys writes the Key container, then zeroises the keys and the
// buffer that held their base64 text.
func (h *handler) writeKeys(w http.ResponseWriter, b *buffers, keys []supply.Key) {
	if n := containerLen(keys); cap(b.out) < n {
		b.out = make([]byte, 0, n)
	}
	b.out = appendContainer(b.out[:0], keys)
	zeroise(keys)
	h.write(w, http.StatusOK, b.out, true)
	clear(b.out)
}

func (h *handler) write(w http.ResponseWriter, code int, body []byte, noStore bool) {
	hdr := w.Header()
	hdr["Content-Type"] = hdrJSON
	if noStore {
		hdr["Cache-Control"] = hdrNoStore
	}
	if len(body) >= chunkingSize {
		// Below this net/http sets Content-Length itself, without an
		// allocation, when the handler returns.
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(code)
	w.Write(body) //nolint:errcheck // the client is gone; nothing to do
}

// refuse answers a refusal found here (not by the service).
func (h *handler) refuse(w http.ResponseWriter, e *supply.Error) {
	h.writeError(w, e.Code, e.Message, e.Details)
}

func (h *handler) writeError(w http.ResponseWriter, code int, msg string, details []map[string]any) {
	body, err := marshalError(msg, details)
	if err != nil {
		h.log.Error("supply: error details cannot be encoded; sent the message only", "message", msg, "err", err)
	}
	h.write(w, code, body, false)
}

// fail answers an error of the service: ErrUnauthorized → 401, *Error →
// its code (400 or 503), anything else → 503, logged.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, op, sae string, err error) {
	var e *supply.Error
	switch {
	case errors.Is(err, supply.ErrUnauthorized):
		h.log.Info("supply: refused by the key service", "op", op, "sae", sae, "path", r.URL.Path)
		w.WriteHeader(http.StatusUnauthorized)
	case errors.As(err, &e):
		code := e.Code
		if code != http.StatusBadRequest {
			code = http.StatusServiceUnavailable
		}
		h.writeError(w, code, e.Message, e.Details)
	case r.Context().Err() != nil:
		h.log.Info("supply: request ended before the key service answered", "op", op, "sae", sae, "err", err)
		h.writeError(w, http.StatusServiceUnavailable, op+": the request ended before the KME answered: "+err.Error(), nil)
	case errors.Is(err, context.DeadlineExceeded):
		h.log.Warn("supply: key service timed out", "op", op, "sae", sae, "err", err)
		h.writeError(w, http.StatusServiceUnavailable, op+": the KME timed out: "+err.Error(), nil)
	default:
		h.log.Error("supply: key service failed", "op", op, "sae", sae, "err", err)
		h.writeError(w, http.StatusServiceUnavailable, op+": the KME failed: "+err.Error(), nil)
	}
}
