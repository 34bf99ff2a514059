package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/qrelay/qrelay/internal/pki"
)

// RelayRequest asks a node to relay fresh end-to-end keys to node Dst now:
// an operator's test of a path, or a warm-up of the pools. The keys end up
// in the pools of both ends, like any relayed keys.
type RelayRequest struct {
	Dst     string `json:"dst"`
	Keys    int    `json:"keys"`     // 1 to MaxRelayKeys
	KeySize int    `json:"key_size"` // bytes, 1 to 8192
}

// MaxRelayKeys bounds one relay request.
const MaxRelayKeys = 1 << 20

// RelayResult is what a relay request achieved. Every key is either
// delivered (usable at both ends) or reported in Errors (usable at
// neither end).
type RelayResult struct {
	Dst       string   `json:"dst"`
	Flow      uint64   `json:"flow"`
	FirstSeq  uint64   `json:"first_seq"`
	Keys      int      `json:"keys"`
	Delivered int      `json:"delivered"`
	DurationS float64  `json:"duration_s"`
	Errors    []string `json:"errors,omitempty"`
}

// PoolDigest is an order-independent check value over the keys of the
// pool a node shares with node Remote: the XOR of SHA-256(ID ‖ key) over
// its keys, in hex. The pools at the two ends hold the same keys exactly
// when their digests and counts agree. It reveals nothing usable about
// the keys.
type PoolDigest struct {
	Remote string `json:"remote"`
	Keys   int    `json:"keys"`
	Digest string `json:"digest"`
}

// Relayer is what a node with the relay and digest routes implements on
// top of Backend.
type Relayer interface {
	// Relay relays keys as asked and waits for the outcome; an error is
	// returned only when nothing could be attempted (wrap ErrBadRequest
	// for a bad destination or size).
	Relay(ctx context.Context, req RelayRequest) (RelayResult, error)
	// PoolDigest digests the pool shared with remote (wrap ErrNotFound if
	// there is none).
	PoolDigest(ctx context.Context, remote string) (PoolDigest, error)
}

const maxRelayBody = 4 << 10

const relayBodyHelp = `want {"dst": "<node>", "keys": <1..1048576>, "key_size": <bytes, 1..8192>}`

// decodeRelayBody parses a RelayRequest strictly: unknown fields and
// anything after the object are refused, and every field is checked.
func decodeRelayBody(data []byte) (RelayRequest, error) {
	var req RelayRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if err == io.EOF {
			return req, errors.New("empty body")
		}
		return req, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("data after the JSON object")
	}
	if err := pki.ValidID(req.Dst); err != nil {
		return req, fmt.Errorf("field \"dst\": %v", err)
	}
	if req.Keys < 1 || req.Keys > MaxRelayKeys {
		return req, fmt.Errorf("field \"keys\": %d, want 1 to %d", req.Keys, MaxRelayKeys)
	}
	if req.KeySize < 1 || req.KeySize > 8192 {
		return req, fmt.Errorf("field \"key_size\": %d bytes, want 1 to 8192", req.KeySize)
	}
	return req, nil
}

func (h *handler) relay(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.methodNotAllowed(w, r, "POST")
		return
	}
	rl, ok := h.b.(Relayer)
	if !ok {
		h.fail(w, r, http.StatusNotFound, "this node does not relay on request")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRelayBody))
	if err != nil {
		h.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxRelayBody), relayBodyHelp)
		return
	}
	req, err := decodeRelayBody(body)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad request body: "+err.Error(), relayBodyHelp)
		return
	}
	res, err := rl.Relay(r.Context(), req)
	if err != nil {
		h.backendFailed(w, r, err)
		return
	}
	h.reply(w, r, http.StatusOK, res)
}

func (h *handler) poolDigest(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	rl, ok := h.b.(Relayer)
	if !ok {
		h.fail(w, r, http.StatusNotFound, "this node does not digest its pools")
		return
	}
	remote := r.PathValue("remote")
	if err := pki.ValidID(remote); err != nil {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("remote %q in the path is not a node ID: %v", remote, err))
		return
	}
	d, err := rl.PoolDigest(r.Context(), remote)
	if err != nil {
		h.backendFailed(w, r, err)
		return
	}
	h.reply(w, r, http.StatusOK, d)
}

// Relay asks the node to relay keys now and returns the outcome.
func (c *Client) Relay(ctx context.Context, req RelayRequest) (RelayResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return RelayResult{}, err
	}
	var res RelayResult
	err = c.do(ctx, http.MethodPost, "/v1/relay", body, &res)
	return res, err
}

// PoolDigest returns the digest of the node's pool shared with remote.
func (c *Client) PoolDigest(ctx context.Context, remote string) (PoolDigest, error) {
	var d PoolDigest
	err := c.do(ctx, http.MethodGet, "/v1/pools/"+url.PathEscape(remote)+"/digest", nil, &d)
	return d, err
}
