package adminapi

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
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/qrelay/qrelay/internal/pki"
)

// maxStateBody bounds the body of POST /v1/links/{peer}/state; the largest
// valid body is a few dozen bytes.
const maxStateBody = 4 << 10

// makeOperatorCert is the advice that goes with a 403.
const makeOperatorCert = "make one with `qrelayctl pki --dir DIR --operator NAME` " +
	"(with DIR holding the network's ca.pem and ca.key, it adds operator.pem and operator.key) " +
	"and pass it to qrelayctl with --cert and --key"

// TLSConfig is the server side of the admin API's mutual TLS: TLS 1.3, the
// node's certificate, and a client certificate required and verified against
// roots. Which client certificates may do what is decided per request
// (operators only), so that a refusal can say why in an HTTP 403.
func TLSConfig(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
	}
}

// NewHandler serves the admin API from b. Serve it over TLS configured by
// TLSConfig: requests that did not come with a verified operator
// certificate are refused. Writes are logged to logger (nil: slog.Default)
// with the operator's ID.
func NewHandler(b Backend, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := &handler{b: b, log: logger, mux: http.NewServeMux()}
	h.mux.Handle("/v1/status", h.get(func(ctx context.Context) (any, error) { return b.Status(ctx) }))
	h.mux.Handle("/v1/links", h.get(list(b.Links)))
	h.mux.Handle("/v1/routes", h.get(list(b.Routes)))
	h.mux.Handle("/v1/adverts", h.get(list(b.Adverts)))
	h.mux.Handle("/v1/pools", h.get(list(b.Pools)))
	h.mux.Handle("/v1/flows", h.get(list(b.Flows)))
	if tn, ok := b.(Tunneler); ok {
		h.mux.Handle("/v1/tunnels", h.get(list(tn.Tunnels)))
	} else {
		h.mux.HandleFunc("/v1/tunnels", h.noTunnels)
	}
	h.mux.HandleFunc("/v1/links/{peer}/state", h.setLinkState)
	h.mux.HandleFunc("/v1/relay", h.relay)
	h.mux.HandleFunc("/v1/pools/{remote}/digest", h.poolDigest)
	h.mux.HandleFunc("/v1/audit", h.audit)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("no route %s", r.URL.Path),
			"routes: GET /v1/status, /v1/links, /v1/routes, /v1/adverts, /v1/pools, /v1/flows, /v1/tunnels; POST /v1/links/{peer}/state, POST /v1/relay, GET /v1/pools/{remote}/digest, GET /v1/audit?kind=&peer=&since=&limit=")
	})
	return h
}

type handler struct {
	b   Backend
	log *slog.Logger
	mux *http.ServeMux
}

type operatorKey struct{}

// OperatorID returns the ID of the operator whose request ctx belongs to,
// for a Backend that keeps an audit trail.
func OperatorID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(operatorKey{}).(string)
	return id, ok
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, err := operatorID(r.TLS)
	if err != nil {
		h.log.Warn("adminapi: refused request", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "reason", err.Error())
		h.fail(w, r, http.StatusForbidden, err.Error(), makeOperatorCert)
		return
	}
	h.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), operatorKey{}, id)))
}

// operatorID is the operator a connection's verified client certificate
// names. PeerID refuses a certificate naming another kind (a node's, an
// SAE's); a certificate naming no kind at all is refused too, as the admin
// API is the one place where a bare CN is not enough.
func operatorID(cs *tls.ConnectionState) (string, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 {
		return "", errors.New("an operator certificate is required: this request came without a verified client certificate (serve the admin API with adminapi.TLSConfig)")
	}
	leaf := cs.VerifiedChains[0][0]
	id, err := pki.PeerID(leaf, pki.Operator)
	if err != nil {
		return "", fmt.Errorf("an operator certificate is required, and the client certificate of %q is not one: %w", leaf.Subject.CommonName, err)
	}
	if !slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.Scheme == "qrelay" && u.Opaque == string(pki.Operator)+":"+id }) {
		return "", fmt.Errorf("an operator certificate is required, and the client certificate of %q is not one: it has no qrelay:operator:<id> URI SAN", id)
	}
	if err := pki.ValidID(id); err != nil {
		return "", fmt.Errorf("the client certificate names operator %q: %w", id, err)
	}
	return id, nil
}

// list adapts a Backend list method so that an empty list is [] in JSON,
// never null.
func list[T any](f func(context.Context) ([]T, error)) func(context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		v, err := f(ctx)
		if v == nil {
			v = []T{}
		}
		return v, err
	}
}

// noTunnels answers GET /v1/tunnels for a Backend that is not a Tunneler.
func (h *handler) noTunnels(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	h.fail(w, r, http.StatusNotFound, "this node serves no WireGuard tunnels: it does not rotate WireGuard preshared keys")
}

// get serves a read-only route from f.
func (h *handler) get(f func(context.Context) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.methodNotAllowed(w, r, "GET, HEAD")
			return
		}
		v, err := f(r.Context())
		if err != nil {
			h.backendFailed(w, r, err)
			return
		}
		h.reply(w, r, http.StatusOK, v)
	}
}

func (h *handler) setLinkState(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.methodNotAllowed(w, r, "POST")
		return
	}
	peer := r.PathValue("peer")
	if err := pki.ValidID(peer); err != nil {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("peer %q in the path is not a node ID: %v", peer, err))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxStateBody))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			h.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxStateBody), stateBodyHelp)
			return
		}
		h.fail(w, r, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	state, err := decodeStateBody(body)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad request body: "+err.Error(), stateBodyHelp)
		return
	}
	op, _ := OperatorID(r.Context())
	if err := h.b.SetLinkState(r.Context(), peer, state); err != nil {
		h.log.Warn("adminapi: link state not set", "operator", op, "peer", peer, "state", state, "remote", r.RemoteAddr, "err", err)
		h.backendFailed(w, r, err)
		return
	}
	h.log.Info("adminapi: link state set", "operator", op, "peer", peer, "state", state, "remote", r.RemoteAddr)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

var stateBodyHelp = `want {"state": "<state>"} with <state> one of ` + strings.Join(States, ", ")

// decodeStateBody parses the body of POST /v1/links/{peer}/state strictly:
// one JSON object with exactly one field, "state" (case-sensitive), a
// string naming one of States, and nothing after it. Errors name the field.
func decodeStateBody(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return "", errors.New("empty body")
	}
	if err != nil {
		return "", fmt.Errorf("not JSON: %v", err)
	}
	if tok != json.Delim('{') {
		return "", fmt.Errorf("want a JSON object, got %s", describe(tok))
	}
	state, seen := "", false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", fmt.Errorf("not JSON: %v", err)
		}
		key, _ := tok.(string) // object keys are strings
		if key != "state" {
			if len(key) > 64 {
				key = key[:64] + "..."
			}
			return "", fmt.Errorf("unknown field %q: the only field is \"state\"", key)
		}
		if seen {
			return "", errors.New(`field "state" given twice`)
		}
		seen = true
		tok, err = dec.Token()
		if err != nil {
			return "", fmt.Errorf("field \"state\": not JSON: %v", err)
		}
		s, ok := tok.(string)
		if !ok {
			return "", fmt.Errorf("field \"state\": want a string, got %s", describe(tok))
		}
		state = s
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return "", fmt.Errorf("not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", errors.New("data after the JSON object")
	}
	if !seen {
		return "", errors.New(`field "state" is missing`)
	}
	if err := ValidState(state); err != nil {
		return "", fmt.Errorf("field \"state\": %v", err)
	}
	return state, nil
}

// describe names the kind of a JSON token for an error message.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

// backendFailed answers with the status err wraps.
func (h *handler) backendFailed(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		h.fail(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrBadRequest):
		h.fail(w, r, http.StatusBadRequest, err.Error())
	default:
		h.log.Error("adminapi: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		h.fail(w, r, http.StatusInternalServerError, err.Error())
	}
}

func (h *handler) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	h.fail(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, allow))
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, code int, msg string, details ...string) {
	h.reply(w, r, code, ErrorBody{Message: msg, Details: details})
}

// reply writes v as JSON. It encodes v before writing anything, so that a
// value JSON cannot carry (an Inf cost) is a 500 rather than half a body.
func (h *handler) reply(w http.ResponseWriter, r *http.Request, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		h.log.Error("adminapi: encoding response", "path", r.URL.Path, "err", err)
		code = http.StatusInternalServerError
		data, _ = json.Marshal(ErrorBody{Message: "encoding the response: " + err.Error()})
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}
