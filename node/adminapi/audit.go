package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/internal/pki"
)

// auditHelp is the detail of a refused GET /v1/audit.
const auditHelp = "GET /v1/audit takes kind (pad-appended, pad-used, pad-burnt or keys), peer (a node ID), " +
	"since (an RFC 3339 time) and limit (1 to 100000, default 1000), each at most once"

// parseAuditQuery reads the query of GET /v1/audit strictly: unknown or
// repeated parameters and bad values are refused, naming the parameter.
func parseAuditQuery(v url.Values) (audit.Query, error) {
	var q audit.Query
	for name, vals := range v {
		if len(vals) > 1 {
			return q, fmt.Errorf("parameter %q given %d times", name, len(vals))
		}
		val := vals[0]
		switch name {
		case "kind":
			k, err := audit.ParseKind(val)
			if err != nil {
				return q, fmt.Errorf("parameter kind: %v", err)
			}
			q.Kind = k
		case "peer":
			if val == "" {
				continue
			}
			if err := pki.ValidID(val); err != nil {
				return q, fmt.Errorf("parameter peer: %q is not a node ID: %v", val, err)
			}
			q.Peer = val
		case "since":
			if val == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return q, fmt.Errorf("parameter since: %q is not an RFC 3339 time like 2026-03-01T12:00:00Z", val)
			}
			q.Since = t
		case "limit":
			if val == "" {
				continue
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > audit.MaxLimit {
				return q, fmt.Errorf("parameter limit: %q: want a number of records from 1 to %d", val, audit.MaxLimit)
			}
			q.Limit = n
		default:
			if len(name) > 64 {
				name = name[:64] + "..."
			}
			return q, fmt.Errorf("unknown parameter %q", name)
		}
	}
	return q, nil
}

func (h *handler) audit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.methodNotAllowed(w, r, "GET, HEAD")
		return
	}
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad query: "+err.Error(), auditHelp)
		return
	}
	q, err := parseAuditQuery(v)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad query: "+err.Error(), auditHelp)
		return
	}
	h.get(list(func(ctx context.Context) ([]audit.Record, error) { return h.b.Audit(ctx, q) }))(w, r)
}

// Audit is GET /v1/audit: the node's audit records q selects, oldest
// first.
func (c *Client) Audit(ctx context.Context, q audit.Query) ([]audit.Record, error) {
	v := url.Values{}
	if q.Kind != "" {
		v.Set("kind", string(q.Kind))
	}
	if q.Peer != "" {
		v.Set("peer", q.Peer)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/v1/audit"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out []audit.Record
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}
