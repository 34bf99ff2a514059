package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/supply"
)

// These tests treat the nodes as black boxes: they speak raw HTTPS to the
// ETSI GS QKD 014 API of running nodes, as an SAE with its own client
// certificate would, and check status codes, JSON field names and the
// standard's Error body exactly.

// bbCluster starts the line a–b–c serving the ETSI 014 API, with SAEs
// sae-a, sae-b and sae-c (one per node, as clusterOpts.etsi014 lists them)
// and sae-c2, a second SAE of node c: a local SAE of c that is not the
// slave keys are handed out for. The API and SAEs are configured here
// because clusterOpts.etsi014 lists one SAE per node only.
func bbCluster(t *testing.T) *testCluster {
	t.Helper()
	ids := []string{"a", "b", "c"}
	configure := func(_ string, cfg *lab.Config) {
		cfg.API.ETSI014.Listen = "127.0.0.1:0"
		for _, id := range ids {
			cfg.SAEs = append(cfg.SAEs, lab.SAE{ID: "sae-" + id, Node: id})
		}
		cfg.SAEs = append(cfg.SAEs, lab.SAE{ID: "sae-c2", Node: "c"})
	}
	c := newTestCluster(t, ids, [][2]string{{"a", "b"}, {"b", "c"}}, clusterOpts{configure: configure, refills: true})
	c.waitPath("a", "c", "a", "b", "c")
	c.waitPath("c", "a", "c", "b", "a")
	return c
}

// bbCert issues a client certificate of kind for id from the cluster's CA.
func bbCert(tb testing.TB, c *testCluster, kind pki.Kind, id string) tls.Certificate {
	tb.Helper()
	crt, err := c.ca.Issue(kind, id, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return crt.TLS
}

// bbClient is one HTTPS client of one node's ETSI 014 API, with its own
// Transport (keep-alive).
type bbClient struct {
	base string
	hc   *http.Client
	tr   *http.Transport
}

// bbNewClient makes a client of node's API presenting certs (none: no
// client certificate); h2 offers HTTP/2, else HTTP/1.1 only.
func bbNewClient(tb testing.TB, c *testCluster, node string, certs []tls.Certificate, h2 bool) *bbClient {
	tb.Helper()
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: certs, RootCAs: c.ca.Pool(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   h2,
		MaxIdleConnsPerHost: 4,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return &bbClient{base: "https://" + c.nodes[node].ETSI014Addr().String(), hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, tr: tr}
}

// bbHandshakeRefusal connects to addr with cfg and returns how the server
// refused the connection: the handshake's error, or else (TLS 1.3, where
// the client's side of the handshake ends before the server has checked
// its certificate) the error of a read, which carries the server's alert.
// Nothing is written: a request written after the handshake races the
// server's close, which then resets the connection and may lose the alert
// (an HTTP client then reports the reset, or a closed connection). nil
// means the server kept the connection open for 10 s without refusing.
func bbHandshakeRefusal(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// bbSAE is bbNewClient for SAE sae over HTTP/1.1.
func bbSAE(tb testing.TB, c *testCluster, node, sae string) *bbClient {
	tb.Helper()
	return bbNewClient(tb, c, node, []tls.Certificate{bbCert(tb, c, pki.SAE, sae)}, false)
}

type bbResp struct {
	code  int
	proto int
	hdr   http.Header
	body  []byte
}

func (r bbResp) String() string { return fmt.Sprintf("%d %q", r.code, r.body) }

// do sends method to /api/v1/keys/ + path (which may carry a query); a
// GET has no body, any other method has body (possibly empty).
func (cl *bbClient) do(ctx context.Context, method, path, body string) (bbResp, error) {
	var rd io.Reader
	if method != http.MethodGet {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, cl.base+"/api/v1/keys/"+path, rd)
	if err != nil {
		return bbResp{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := cl.hc.Do(req)
	if err != nil {
		return bbResp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return bbResp{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return bbResp{code: res.StatusCode, proto: res.ProtoMajor, hdr: res.Header, body: b}, nil
}

// must is do that fails the test on a transport error.
func (cl *bbClient) must(tb testing.TB, method, path, body string) bbResp {
	tb.Helper()
	r, err := cl.do(context.Background(), method, path, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// encKeys asks for n keys and retries while the answer is 503, which the
// node gives while background relay is still filling the pool.
func (cl *bbClient) encKeys(ctx context.Context, method, path, body string, n int) ([]bbKey, error) {
	for {
		r, err := cl.do(ctx, method, path, body)
		if err != nil {
			return nil, err
		}
		if r.code != http.StatusServiceUnavailable {
			return bbParseKeys(r, n)
		}
		if err := bbParseError(r, http.StatusServiceUnavailable, ""); err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s %s: still %v at the deadline", method, path, r)
		}
		// Backing off from a pool being refilled; the loop ends on an
		// answer, not on time.
		time.Sleep(20 * time.Millisecond)
	}
}

func (cl *bbClient) mustEncKeys(tb testing.TB, method, path, body string, n int) []bbKey {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := cl.encKeys(ctx, method, path, body, n)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

type bbKey struct {
	ID  string
	Key []byte
}

var bbUUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func bbJSONContent(r bbResp) error {
	if ct := r.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("answer %v: Content-Type %q, want application/json", r, ct)
	}
	return nil
}

// bbParseKeys checks a 200 answer carrying the standard's Key container of
// n keys of 256 bits and returns them.
func bbParseKeys(r bbResp, n int) ([]bbKey, error) {
	if r.code != http.StatusOK {
		return nil, fmt.Errorf("answer %v, want 200 with %d keys", r, n)
	}
	if err := bbJSONContent(r); err != nil {
		return nil, err
	}
	if cc := r.hdr.Get("Cache-Control"); cc != "no-store" {
		return nil, fmt.Errorf("key container with Cache-Control %q, want no-store", cc)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &top); err != nil {
		return nil, fmt.Errorf("key container %s: %v", r.body, err)
	}
	for name := range top {
		if name != "keys" && name != "key_container_extension" {
			return nil, fmt.Errorf("key container has field %q: %s", name, r.body)
		}
	}
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(top["keys"], &list); err != nil {
		return nil, fmt.Errorf("key container keys: %v: %s", err, r.body)
	}
	if len(list) != n {
		return nil, fmt.Errorf("key container has %d keys, want %d", len(list), n)
	}
	keys := make([]bbKey, n)
	for i, k := range list {
		for name := range k {
			switch name {
			case "key_ID", "key", "key_ID_extension", "key_extension":
			default:
				return nil, fmt.Errorf("key %d has field %q", i, name)
			}
		}
		var b64 string
		if err := json.Unmarshal(k["key_ID"], &keys[i].ID); err != nil || !bbUUID.MatchString(keys[i].ID) {
			return nil, fmt.Errorf("key %d: key_ID %s is not a UUID", i, k["key_ID"])
		}
		if err := json.Unmarshal(k["key"], &b64); err != nil {
			return nil, fmt.Errorf("key %d: key %s is not a string", i, k["key"])
		}
		b, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("key %d: key %q is not the base64 of 32 bytes (%d bytes, %v)", i, b64, len(b), err)
		}
		keys[i].Key = b
	}
	return keys, nil
}

// bbParseError checks an answer of code with the standard's Error body
// {"message": ..., "details": [...]?}; msg, if not empty, is the message
// exactly.
func bbParseError(r bbResp, code int, msg string) error {
	if r.code != code {
		return fmt.Errorf("answer %v, want %d", r, code)
	}
	if err := bbJSONContent(r); err != nil {
		return err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &top); err != nil {
		return fmt.Errorf("error body %q: %v", r.body, err)
	}
	for name := range top {
		if name != "message" && name != "details" {
			return fmt.Errorf("error body %s has field %q", r.body, name)
		}
	}
	var m string
	if err := json.Unmarshal(top["message"], &m); err != nil || m == "" {
		return fmt.Errorf("error body %s: no message string", r.body)
	}
	if msg != "" && m != msg {
		return fmt.Errorf("error message %q, want %q", m, msg)
	}
	if d, ok := top["details"]; ok {
		var details []map[string]any
		if err := json.Unmarshal(d, &details); err != nil {
			return fmt.Errorf("error body %s: details is not an array of objects: %v", r.body, err)
		}
	}
	return nil
}

func bbWantError(tb testing.TB, r bbResp, code int, msg string) {
	tb.Helper()
	if err := bbParseError(r, code, msg); err != nil {
		tb.Error(err)
	}
}

// bbWant401 checks the standard's 401: no body at all.
func bbWant401(tb testing.TB, r bbResp) {
	tb.Helper()
	if r.code != http.StatusUnauthorized || len(r.body) != 0 {
		tb.Errorf("answer %v, want 401 with an empty body", r)
	}
}

// bbIDsBody is a dec_keys Key IDs object.
func bbIDsBody(ids ...string) string {
	type keyID struct {
		KeyID string `json:"key_ID"`
	}
	v := struct {
		KeyIDs []keyID `json:"key_IDs"`
	}{KeyIDs: []keyID{}}
	for _, id := range ids {
		v.KeyIDs = append(v.KeyIDs, keyID{id})
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func bbIDs(keys []bbKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

// bbSame checks that the slave got exactly the master's keys.
func bbSame(got, want []bbKey) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID || !bytes.Equal(got[i].Key, want[i].Key) {
			return fmt.Errorf("key %d: slave got %s %x, master %s %x", i, got[i].ID, got[i].Key, want[i].ID, want[i].Key)
		}
	}
	return nil
}

// bbDec fetches keys by their IDs from the slave's node, with one POST
// or one GET per key, and checks they are the master's.
func bbDec(tb testing.TB, slave *bbClient, master string, want []bbKey, get bool) {
	tb.Helper()
	var got []bbKey
	if get {
		for _, k := range want {
			r := slave.must(tb, http.MethodGet, master+"/dec_keys?key_ID="+k.ID, "")
			one, err := bbParseKeys(r, 1)
			if err != nil {
				tb.Fatalf("GET dec_keys of %s: %v", k.ID, err)
			}
			got = append(got, one...)
		}
	} else {
		r := slave.must(tb, http.MethodPost, master+"/dec_keys", bbIDsBody(bbIDs(want)...))
		var err error
		if got, err = bbParseKeys(r, len(want)); err != nil {
			tb.Fatalf("POST dec_keys of %d keys: %v", len(want), err)
		}
	}
	if err := bbSame(got, want); err != nil {
		tb.Fatal(err)
	}
}

const bbUnknownID = "6f0c3e4a-1b2c-4d5e-8f90-a1b2c3d4e5f6"

// TestETSI014BlackBox drives every route, verb and error of the ETSI 014
// API of the line a–b–c over raw HTTPS.
func TestETSI014BlackBox(t *testing.T) {
	c := bbCluster(t)
	sae := map[string]*bbClient{} // "sae-a@a": SAE sae-a's client of node a
	for _, k := range []struct{ node, sae string }{
		{"a", "sae-a"}, {"a", "sae-c"}, {"c", "sae-c"}, {"c", "sae-c2"}, {"c", "sae-b"}, {"c", "sae-a"},
	} {
		sae[k.sae+"@"+k.node] = bbSAE(t, c, k.node, k.sae)
	}
	master, slave := sae["sae-a@a"], sae["sae-c@c"]
	notFound := "one or more keys specified are not found on KME"

	t.Run("status", func(t *testing.T) {
		for _, tc := range []struct {
			cl                    *bbClient
			slave, source, target string
			masterSAE             string
		}{
			{master, "sae-c", "a", "c", "sae-a"},
			{master, "sae-c2", "a", "c", "sae-a"},
			{master, "sae-b", "a", "b", "sae-a"},
			{slave, "sae-a", "c", "a", "sae-c"},
		} {
			r := tc.cl.must(t, http.MethodGet, tc.slave+"/status", "")
			if r.code != http.StatusOK {
				t.Fatalf("status of %s as %s: %v", tc.slave, tc.masterSAE, r)
			}
			if err := bbJSONContent(r); err != nil {
				t.Error(err)
			}
			var st map[string]any
			dec := json.NewDecoder(bytes.NewReader(r.body))
			dec.UseNumber()
			if err := dec.Decode(&st); err != nil {
				t.Fatalf("status %s: %v", r.body, err)
			}
			want := map[string]any{
				"source_KME_ID": tc.source, "target_KME_ID": tc.target, "master_SAE_ID": tc.masterSAE, "slave_SAE_ID": tc.slave,
				"key_size": "256", "max_key_size": "256", "min_key_size": "256", "max_key_per_request": "128",
				"max_SAE_ID_count": "0", "max_key_count": "262144", "stored_key_count": nil,
			}
			for name := range st {
				if _, ok := want[name]; !ok && name != "status_extension" {
					t.Errorf("status has field %q: %s", name, r.body)
				}
			}
			for name, v := range want {
				got, ok := st[name]
				switch {
				case !ok:
					t.Errorf("status has no %s: %s", name, r.body)
				case v == nil: // stored_key_count: varies with relay
					n, err := got.(json.Number).Int64()
					if err != nil || n < 0 || n > 262144 {
						t.Errorf("status %s = %v, want 0 to max_key_count", name, got)
					}
				case fmt.Sprint(got) != v:
					t.Errorf("status %s = %v, want %v", name, got, v)
				}
				if _, isNum := got.(json.Number); ok && v != nil && isNum == strings.HasSuffix(name, "_ID") {
					t.Errorf("status %s = %#v: wrong JSON type", name, got)
				}
			}
		}
		for _, tc := range []struct {
			name string
			cl   *bbClient
			path string
			code int
		}{
			{"unknown slave SAE", master, "sae-zz/status", 400},
			{"slave served by the same node", master, "sae-a/status", 400},
			{"query parameters", master, "sae-c/status?number=1", 400},
			{"SAE ID not valid", master, "sae%20c/status", 400},
			{"caller not served by this node", sae["sae-c@a"], "sae-a/status", 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := tc.cl.must(t, http.MethodGet, tc.path, "")
				if tc.code == 401 {
					bbWant401(t, r)
				} else {
					bbWantError(t, r, tc.code, "")
				}
			})
		}
	})

	seen := map[string]bool{} // every key ID handed out, to check none repeats
	fresh := func(t *testing.T, keys []bbKey) {
		t.Helper()
		for _, k := range keys {
			if seen[k.ID] {
				t.Fatalf("key ID %s handed out twice", k.ID)
			}
			seen[k.ID] = true
		}
	}

	t.Run("enc_keys then dec_keys", func(t *testing.T) {
		for i, tc := range []struct {
			name, method, path, body string
			n                        int
		}{
			{"POST empty body", "POST", "sae-c/enc_keys", "", 1},
			{"POST empty object", "POST", "sae-c/enc_keys", "{}", 1},
			{"POST number", "POST", "sae-c/enc_keys", `{"number":5}`, 5},
			{"POST number and size", "POST", "sae-c/enc_keys", `{"number":5,"size":256}`, 5},
			{"POST size", "POST", "sae-c/enc_keys", `{"size":256}`, 1},
			{"POST max_key_per_request", "POST", "sae-c/enc_keys", `{"number":128}`, 128},
			{"POST all fields but extension_mandatory", "POST", "sae-c/enc_keys",
				"{ \"number\" : 3 ,\n \"size\": 256, \"additional_slave_SAE_IDs\": [], \"extension_optional\": [{\"abc_route_type\": \"direct\"}] }", 3},
			{"GET", "GET", "sae-c/enc_keys", "", 1},
			{"GET number", "GET", "sae-c/enc_keys?number=3", "", 3},
			{"GET number and size", "GET", "sae-c/enc_keys?number=3&size=256", "", 3},
			{"GET size", "GET", "sae-c/enc_keys?size=256", "", 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				keys := master.mustEncKeys(t, tc.method, tc.path, tc.body, tc.n)
				fresh(t, keys)
				get := i%2 == 1
				bbDec(t, slave, "sae-a", keys, get)
				// Handed to the slave once: never again, by either method.
				for _, k := range keys[:1] {
					bbWantError(t, slave.must(t, http.MethodGet, "sae-a/dec_keys?key_ID="+k.ID, ""), 400, notFound)
					bbWantError(t, slave.must(t, http.MethodPost, "sae-a/dec_keys", bbIDsBody(k.ID)), 400, notFound)
				}
			})
		}
	})

	t.Run("enc_keys errors", func(t *testing.T) {
		mandatory := "not all extension_mandatory parameters are supported"
		multiple := "size shall be a multiple of 8"
		for _, tc := range []struct {
			name, method, path, body string
			msg                      string // exactly, if not empty
		}{
			{"size not a multiple of 8", "POST", "sae-c/enc_keys", `{"size":100}`, multiple},
			{"size 12", "POST", "sae-c/enc_keys", `{"number":2,"size":12}`, multiple},
			{"GET size not a multiple of 8", "GET", "sae-c/enc_keys?size=100", "", multiple},
			{"size 512", "POST", "sae-c/enc_keys", `{"size":512}`, ""},
			{"GET size 512", "GET", "sae-c/enc_keys?number=1&size=512", "", ""},
			{"size 128", "POST", "sae-c/enc_keys", `{"size":128}`, ""},
			{"size 0", "POST", "sae-c/enc_keys", `{"size":0}`, ""},
			{"number 0", "POST", "sae-c/enc_keys", `{"number":0}`, ""},
			{"number 129", "POST", "sae-c/enc_keys", `{"number":129}`, ""},
			{"number -1", "POST", "sae-c/enc_keys", `{"number":-1}`, ""},
			{"GET number 0", "GET", "sae-c/enc_keys?number=0", "", ""},
			{"GET number 129", "GET", "sae-c/enc_keys?number=129", "", ""},
			{"GET number empty", "GET", "sae-c/enc_keys?number=&size=", "", ""},
			{"GET number not a number", "GET", "sae-c/enc_keys?number=abc", "", ""},
			{"GET number twice", "GET", "sae-c/enc_keys?number=1&number=2", "", ""},
			{"GET unknown parameter", "GET", "sae-c/enc_keys?foo=1", "", ""},
			{"POST with a query", "POST", "sae-c/enc_keys?number=1", "", ""},
			{"extension_mandatory", "POST", "sae-c/enc_keys", `{"number":1,"extension_mandatory":[{"abc_route_type":"direct"}]}`, mandatory},
			{"extension_mandatory with bad size", "POST", "sae-c/enc_keys", `{"size":100,"extension_mandatory":[{"abc_x":1},{"abc_y":2}]}`, mandatory},
			{"additional_slave_SAE_IDs", "POST", "sae-c/enc_keys", `{"number":1,"additional_slave_SAE_IDs":["sae-b"]}`, ""},
			{"unknown field", "POST", "sae-c/enc_keys", `{"numbr":1}`, ""},
			{"dec_keys field", "POST", "sae-c/enc_keys", `{"number":1,"key_IDs":[]}`, ""},
			{"field twice", "POST", "sae-c/enc_keys", `{"number":1,"number":2}`, ""},
			{"bad JSON: cut", "POST", "sae-c/enc_keys", `{"number":`, ""},
			{"bad JSON: bare name", "POST", "sae-c/enc_keys", `{number:1}`, ""},
			{"bad JSON: extra brace", "POST", "sae-c/enc_keys", `{"number":1}}`, ""},
			{"bad JSON: two objects", "POST", "sae-c/enc_keys", `{"number":1} {}`, ""},
			{"bad JSON: text", "POST", "sae-c/enc_keys", `number=1`, ""},
			{"number a string", "POST", "sae-c/enc_keys", `{"number":"1"}`, ""},
			{"number a fraction", "POST", "sae-c/enc_keys", `{"number":1.5}`, ""},
			{"number an exponent", "POST", "sae-c/enc_keys", `{"number":1e1}`, ""},
			{"number a boolean", "POST", "sae-c/enc_keys", `{"number":true}`, ""},
			{"size a string", "POST", "sae-c/enc_keys", `{"size":"256"}`, ""},
			{"additional_slave_SAE_IDs a string", "POST", "sae-c/enc_keys", `{"additional_slave_SAE_IDs":"sae-b"}`, ""},
			{"additional_slave_SAE_IDs of numbers", "POST", "sae-c/enc_keys", `{"additional_slave_SAE_IDs":[1]}`, ""},
			{"extension_mandatory an object", "POST", "sae-c/enc_keys", `{"extension_mandatory":{"abc_x":1}}`, ""},
			{"extension_optional a string", "POST", "sae-c/enc_keys", `{"extension_optional":"abc_x"}`, ""},
			{"body an array", "POST", "sae-c/enc_keys", `[]`, ""},
			{"body null", "POST", "sae-c/enc_keys", `null`, ""},
			{"body a number", "POST", "sae-c/enc_keys", `1`, ""},
			{"body too large", "POST", "sae-c/enc_keys", strings.Repeat(" ", 64<<10) + "{}", ""},
			{"unknown slave SAE", "POST", "sae-zz/enc_keys", `{"number":1}`, ""},
			{"GET unknown slave SAE", "GET", "sae-zz/enc_keys", "", ""},
			{"slave served by the same node", "POST", "sae-a/enc_keys", `{"number":1}`, ""},
			{"slave ID not valid", "POST", "sae%20c/enc_keys", `{"number":1}`, ""},
			{"slave ID with an escaped slash", "POST", "sae%2Fc/enc_keys", `{"number":1}`, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bbWantError(t, master.must(t, tc.method, tc.path, tc.body), 400, tc.msg)
			})
		}
		t.Run("extension_mandatory details name the parameter", func(t *testing.T) {
			r := master.must(t, "POST", "sae-c/enc_keys", `{"extension_mandatory":[{"abc_route_type":"direct"}]}`)
			bbWantError(t, r, 400, mandatory)
			if !bytes.Contains(r.body, []byte("abc_route_type")) {
				t.Errorf("answer %v does not say which parameter is not supported", r)
			}
		})
		t.Run("caller not served by this node", func(t *testing.T) {
			bbWant401(t, sae["sae-c@a"].must(t, "POST", "sae-a/enc_keys", `{"number":1}`))
			bbWant401(t, sae["sae-a@c"].must(t, "POST", "sae-c/enc_keys", `{"number":1}`))
		})
	})

	t.Run("dec_keys errors", func(t *testing.T) {
		many := make([]string, 129)
		for i := range many {
			many[i] = fmt.Sprintf("6f0c3e4a-1b2c-4d5e-8f90-%012x", i)
		}
		for _, tc := range []struct {
			name, method, path, body string
			msg                      string // exactly, if not empty
		}{
			{"unknown key POST", "POST", "sae-a/dec_keys", bbIDsBody(bbUnknownID), notFound},
			{"unknown key GET", "GET", "sae-a/dec_keys?key_ID=" + bbUnknownID, "", notFound},
			{"unknown key with extensions", "POST", "sae-a/dec_keys",
				`{"key_IDs":[{"key_ID":"` + bbUnknownID + `","key_ID_extension":{"abc_x":1}}],"key_IDs_extension":{"abc_y":2}}`, notFound},
			{"unknown master SAE", "POST", "sae-zz/dec_keys", bbIDsBody(bbUnknownID), notFound},
			{"master served by the same node", "POST", "sae-c2/dec_keys", bbIDsBody(bbUnknownID), notFound},
			{"wrong master SAE", "POST", "sae-b/dec_keys", bbIDsBody(bbUnknownID), notFound},
			{"empty body", "POST", "sae-a/dec_keys", "", ""},
			{"empty object", "POST", "sae-a/dec_keys", "{}", ""},
			{"no key IDs", "POST", "sae-a/dec_keys", `{"key_IDs":[]}`, ""},
			{"key_IDs null", "POST", "sae-a/dec_keys", `{"key_IDs":null}`, ""},
			{"key_IDs a string", "POST", "sae-a/dec_keys", `{"key_IDs":"` + bbUnknownID + `"}`, ""},
			{"key_ID not a UUID", "POST", "sae-a/dec_keys", bbIDsBody("not-a-uuid"), ""},
			{"key_ID a number", "POST", "sae-a/dec_keys", `{"key_IDs":[{"key_ID":1}]}`, ""},
			{"key_ID missing", "POST", "sae-a/dec_keys", `{"key_IDs":[{}]}`, ""},
			{"unknown field in a key ID", "POST", "sae-a/dec_keys", `{"key_IDs":[{"key_ID":"` + bbUnknownID + `","foo":1}]}`, ""},
			{"unknown field", "POST", "sae-a/dec_keys", `{"key_IDs":[{"key_ID":"` + bbUnknownID + `"}],"foo":1}`, ""},
			{"enc_keys field", "POST", "sae-a/dec_keys", `{"number":1}`, ""},
			{"bad JSON", "POST", "sae-a/dec_keys", `{"key_IDs":[`, ""},
			{"key ID twice", "POST", "sae-a/dec_keys", bbIDsBody(bbUnknownID, bbUnknownID), ""},
			{"more than max_key_per_request", "POST", "sae-a/dec_keys", bbIDsBody(many...), ""},
			{"GET without key_ID", "GET", "sae-a/dec_keys", "", ""},
			{"GET key_ID twice", "GET", "sae-a/dec_keys?key_ID=" + bbUnknownID + "&key_ID=" + many[0], "", ""},
			{"GET unknown parameter", "GET", "sae-a/dec_keys?key_ID=" + bbUnknownID + "&number=1", "", ""},
			{"GET key_ID not a UUID", "GET", "sae-a/dec_keys?key_ID=42", "", ""},
			{"POST with a query", "POST", "sae-a/dec_keys?key_ID=" + bbUnknownID, bbIDsBody(bbUnknownID), ""},
			{"master ID not valid", "POST", "sae%20a/dec_keys", bbIDsBody(bbUnknownID), ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bbWantError(t, slave.must(t, tc.method, tc.path, tc.body), 400, tc.msg)
			})
		}
	})

	t.Run("dec_keys only for the named slave", func(t *testing.T) {
		keys := master.mustEncKeys(t, "POST", "sae-c/enc_keys", `{"number":3}`, 3)
		fresh(t, keys)
		ids := bbIDs(keys)
		body := bbIDsBody(ids...)
		nodeC := bbNewClient(t, c, "c", []tls.Certificate{bbCert(t, c, pki.Node, "c")}, false)
		nodeA := bbNewClient(t, c, "c", []tls.Certificate{bbCert(t, c, pki.Node, "a")}, false)
		operator := bbNewClient(t, c, "c", []tls.Certificate{bbCert(t, c, pki.Operator, "admin")}, false)
		// An operator or node certificate whose CN is the slave's ID.
		opSlave := bbNewClient(t, c, "c", []tls.Certificate{bbCert(t, c, pki.Operator, "sae-c")}, false)
		nodeSlave := bbNewClient(t, c, "c", []tls.Certificate{bbCert(t, c, pki.Node, "sae-c")}, false)
		for _, tc := range []struct {
			name string
			cl   *bbClient
		}{
			{"another SAE of the slave's node", sae["sae-c2@c"]},
			{"an SAE of another node", sae["sae-b@c"]},
			{"the master SAE at the slave's node", sae["sae-a@c"]},
			{"the slave's node certificate", nodeC},
			{"the master's node certificate", nodeA},
			{"an operator certificate", operator},
			{"an operator certificate named as the slave", opSlave},
			{"a node certificate named as the slave", nodeSlave},
		} {
			t.Run(tc.name, func(t *testing.T) {
				bbWant401(t, tc.cl.must(t, "POST", "sae-a/dec_keys", body))
				bbWant401(t, tc.cl.must(t, "GET", "sae-a/dec_keys?key_ID="+ids[0], ""))
			})
		}
		t.Run("the slave SAE at the master's node", func(t *testing.T) {
			bbWant401(t, sae["sae-c@a"].must(t, "POST", "sae-a/dec_keys", body))
		})
		t.Run("the master SAE at its own node", func(t *testing.T) {
			// sae-a is local at node a, but the keys went out of a, not in.
			bbWantError(t, master.must(t, "POST", "sae-c/dec_keys", body), 400, notFound)
		})
		t.Run("a known and an unknown key", func(t *testing.T) {
			bbWantError(t, slave.must(t, "POST", "sae-a/dec_keys", bbIDsBody(ids[0], bbUnknownID)), 400, notFound)
		})
		t.Run("the named slave still gets every key", func(t *testing.T) {
			// Upper-case UUID text names the same key.
			r := slave.must(t, "GET", "sae-a/dec_keys?key_ID="+strings.ToUpper(ids[0]), "")
			got, err := bbParseKeys(r, 1)
			if err != nil {
				t.Fatalf("GET dec_keys with an upper-case key_ID: %v", err)
			}
			if err := bbSame(got, keys[:1]); err != nil {
				t.Fatal(err)
			}
			bbDec(t, slave, "sae-a", keys[1:], false)
			bbWantError(t, slave.must(t, "POST", "sae-a/dec_keys", body), 400, notFound)
			bbWantError(t, slave.must(t, "GET", "sae-a/dec_keys?key_ID="+ids[2], ""), 400, notFound)
		})
	})

	t.Run("handshake refused", func(t *testing.T) {
		other, err := pki.NewCA("another CA", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := other.Issue(pki.SAE, "sae-a", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		expired, err := c.ca.Issue(pki.SAE, "sae-a", -time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			certs []tls.Certificate
			tls12 bool
		}{
			{"no client certificate", nil, false},
			{"no client certificate, TLS 1.2", nil, true},
			{"certificate of another CA", []tls.Certificate{foreign.TLS}, false},
			{"certificate of another CA, TLS 1.2", []tls.Certificate{foreign.TLS}, true},
			{"expired certificate", []tls.Certificate{expired.TLS}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := &tls.Config{Certificates: tc.certs, RootCAs: c.ca.Pool(), MinVersion: tls.VersionTLS12}
				if tc.tls12 {
					cfg.MaxVersion = tls.VersionTLS12
				}
				err := bbHandshakeRefusal(c.nodes["a"].ETSI014Addr().String(), cfg)
				if err == nil {
					t.Fatal("the node completed the handshake and kept the connection open")
				}
				if !strings.Contains(err.Error(), "tls: ") {
					t.Errorf("refused with %v, want a TLS alert", err)
				}
				t.Logf("refused: %v", err)
			})
		}
		t.Run("TLS 1.1", func(t *testing.T) {
			cl := bbSAE(t, c, "a", "sae-a")
			cl.tr.TLSClientConfig.MinVersion, cl.tr.TLSClientConfig.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
			if r, err := cl.do(context.Background(), "GET", "sae-c/status", ""); err == nil {
				t.Fatalf("answered %v over TLS 1.1", r)
			}
		})
		t.Run("TLS 1.2 with a certificate is served", func(t *testing.T) {
			cl := bbSAE(t, c, "a", "sae-a")
			cl.tr.TLSClientConfig.MaxVersion = tls.VersionTLS12
			if r := cl.must(t, "GET", "sae-c/status", ""); r.code != 200 {
				t.Fatalf("answer %v", r)
			}
		})
	})

	t.Run("methods", func(t *testing.T) {
		for _, path := range []string{"sae-c/status", "sae-c/enc_keys", "sae-a/dec_keys"} {
			allow := "GET, POST"
			methods := []string{"PUT", "DELETE", "PATCH", "OPTIONS"}
			if strings.HasSuffix(path, "status") {
				allow = "GET"
				methods = append(methods, "POST")
			}
			cl := master
			if strings.HasSuffix(path, "dec_keys") {
				cl = slave
			}
			for _, m := range methods {
				t.Run(m+" "+path, func(t *testing.T) {
					r := cl.must(t, m, path, `{"number":1}`)
					bbWantError(t, r, http.StatusMethodNotAllowed, "")
					if got := r.hdr.Get("Allow"); got != allow {
						t.Errorf("Allow %q, want %q", got, allow)
					}
				})
			}
		}
	})

	t.Run("paths", func(t *testing.T) {
		// path is after https://host, not /api/v1/keys/.
		for _, path := range []string{
			"/", "/api", "/api/v1/keys", "/api/v1/keys/", "/api/v1/keys/sae-c", "/api/v1/keys/sae-c/",
			"/api/v1/keys/sae-c/keys", "/api/v1/keys/sae-c/status/", "/api/v1/keys/sae-c/status/x",
			"/api/v1/keys//status", "/api/v2/keys/sae-c/status", "/API/V1/KEYS/sae-c/status", "/api/v1/keys/sae-c/ENC_KEYS",
		} {
			t.Run(path, func(t *testing.T) {
				for _, m := range []string{"GET", "POST"} {
					req, err := http.NewRequest(m, master.base+path, strings.NewReader(`{}`))
					if err != nil {
						t.Fatal(err)
					}
					res, err := master.hc.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					bbWantError(t, bbResp{code: res.StatusCode, hdr: res.Header, body: b}, http.StatusNotFound, "")
				}
			})
		}
		t.Run("without an SAE certificate", func(t *testing.T) {
			op := bbNewClient(t, c, "a", []tls.Certificate{bbCert(t, c, pki.Operator, "admin")}, false)
			res, err := op.hc.Get(op.base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			bbWant401(t, bbResp{code: res.StatusCode, body: b})
		})
	})

	t.Run("HTTP/2", func(t *testing.T) {
		m := bbNewClient(t, c, "a", []tls.Certificate{bbCert(t, c, pki.SAE, "sae-a")}, true)
		s := bbNewClient(t, c, "c", []tls.Certificate{bbCert(t, c, pki.SAE, "sae-c")}, true)
		keys := m.mustEncKeys(t, "POST", "sae-c/enc_keys", `{"number":2}`, 2)
		fresh(t, keys)
		bbDec(t, s, "sae-a", keys, false)
		if r := s.must(t, "GET", "sae-a/status", ""); r.proto != 2 || r.code != 200 {
			t.Errorf("status over HTTP/2: HTTP/%d %v", r.proto, r)
		}
		other := bbNewClient(t, c, "c", []tls.Certificate{bbCert(t, c, pki.SAE, "sae-b")}, true)
		if r := other.must(t, "POST", "sae-a/dec_keys", bbIDsBody(bbUnknownID)); r.proto != 2 {
			t.Errorf("dec_keys over HTTP/2: HTTP/%d %v", r.proto, r)
		} else {
			bbWant401(t, r)
		}
	})
}

// TestETSI014BlackBoxConcurrentSAEs runs 100 masters as sae-a at node a
// and 100 slaves as sae-c at node c, each with its own keep-alive client:
// every key a master gets, some slave fetches by its ID and finds
// identical. No request may fail except enc_keys with 503 while the pools
// fill.
func TestETSI014BlackBoxConcurrentSAEs(t *testing.T) {
	c := bbCluster(t)
	const (
		clients  = 100
		requests = 5 // per master
		perReq   = 4
	)
	masterCrt, slaveCrt := bbCert(t, c, pki.SAE, "sae-a"), bbCert(t, c, pki.SAE, "sae-c")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The first failure is reported; it cancels ctx, and what fails
	// after it because of that is only counted.
	var failed atomic.Bool
	var after atomic.Int32
	fail := func(format string, args ...any) {
		if failed.Swap(true) {
			after.Add(1)
			return
		}
		t.Errorf(format, args...)
		cancel() // the others stop at their next request
	}
	// traced counts the connections a client dials, to check keep-alive.
	traced := func(conns *atomic.Int32) context.Context {
		return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if !i.Reused {
				conns.Add(1)
			}
		}})
	}

	type batch struct {
		keys []bbKey
		get  bool
	}
	handed := make(chan batch, clients)
	var (
		mu       sync.Mutex
		ids      = map[string]bool{}
		fetched  atomic.Int32
		retries  atomic.Int32
		masters  sync.WaitGroup
		slaves   sync.WaitGroup
		maxConns atomic.Int32
	)
	noteConns := func(n int32) {
		for {
			m := maxConns.Load()
			if n <= m || maxConns.CompareAndSwap(m, n) {
				return
			}
		}
	}
	for i := range clients {
		masters.Go(func() {
			cl := bbNewClient(t, c, "a", []tls.Certificate{masterCrt}, false)
			var conns atomic.Int32
			mctx := traced(&conns)
			for j := range requests {
				var keys []bbKey
				for keys == nil {
					r, err := cl.do(mctx, "POST", "sae-c/enc_keys", fmt.Sprintf(`{"number":%d}`, perReq))
					if err != nil {
						fail("master %d: %v", i, err)
						return
					}
					if r.code == http.StatusServiceUnavailable {
						if err := bbParseError(r, 503, ""); err != nil {
							fail("master %d: %v", i, err)
							return
						}
						retries.Add(1)
						// Backing off from a pool being refilled by relay;
						// the loop ends on a 200 (or the deadline).
						time.Sleep(10 * time.Millisecond)
						continue
					}
					if keys, err = bbParseKeys(r, perReq); err != nil {
						fail("master %d: %v", i, err)
						return
					}
				}
				mu.Lock()
				for _, k := range keys {
					if ids[k.ID] {
						mu.Unlock()
						fail("key ID %s handed out twice", k.ID)
						return
					}
					ids[k.ID] = true
				}
				mu.Unlock()
				handed <- batch{keys, (i+j)%5 == 0}
			}
			noteConns(conns.Load())
		})
	}
	for i := range clients {
		slaves.Go(func() {
			cl := bbNewClient(t, c, "c", []tls.Certificate{slaveCrt}, false)
			var conns atomic.Int32
			sctx := traced(&conns)
			for b := range handed {
				if failed.Load() {
					continue // drain, so that no master blocks
				}
				var got []bbKey
				if b.get {
					for _, k := range b.keys {
						r, err := cl.do(sctx, "GET", "sae-a/dec_keys?key_ID="+k.ID, "")
						if err != nil {
							fail("slave %d: %v", i, err)
							break
						}
						one, err := bbParseKeys(r, 1)
						if err != nil {
							fail("slave %d: GET dec_keys of %s: %v", i, k.ID, err)
							break
						}
						got = append(got, one...)
					}
				} else {
					r, err := cl.do(sctx, "POST", "sae-a/dec_keys", bbIDsBody(bbIDs(b.keys)...))
					if err != nil {
						fail("slave %d: %v", i, err)
						continue
					}
					if got, err = bbParseKeys(r, len(b.keys)); err != nil {
						fail("slave %d: POST dec_keys: %v", i, err)
						continue
					}
				}
				if failed.Load() {
					continue
				}
				if err := bbSame(got, b.keys); err != nil {
					fail("slave %d: %v", i, err)
					continue
				}
				fetched.Add(int32(len(got)))
			}
			noteConns(conns.Load())
		})
	}
	masters.Wait()
	close(handed)
	slaves.Wait()
	if failed.Load() {
		// Where the keys were when it failed (the test is in package node,
		// so it can look behind the API).
		for _, p := range []struct{ node, remote, role string }{{"a", "c", supply.RoleOut}, {"c", "a", supply.RoleIn}} {
			if pool, err := c.nodes[p.node].supply.Pool(p.remote, p.role); err == nil {
				t.Logf("node %s, pool %s %s: %d keys", p.node, p.role, p.remote, pool.Stats().Stock)
			}
		}
		t.Fatalf("%d keys fetched, %d enc_keys retried on 503, %d more requests failed after the first failure", fetched.Load(), retries.Load(), after.Load())
	}
	if n := fetched.Load(); n != clients*requests*perReq {
		t.Fatalf("slaves fetched %d keys, want %d", n, clients*requests*perReq)
	}
	if n := maxConns.Load(); n != 1 {
		t.Errorf("a client dialled %d connections, want 1 (keep-alive)", n)
	}
	t.Logf("%d keys through %d masters and %d slaves; %d enc_keys retried on 503", fetched.Load(), clients, clients, retries.Load())
}
