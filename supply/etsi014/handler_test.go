package etsi014

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qrelay/qrelay/supply"

	"github.com/qrelay/qrelay/internal/pki"
)

const (
	statusPath = "/api/v1/keys/sae-2/status"
	encPath    = "/api/v1/keys/sae-2/enc_keys"
	decPath    = "/api/v1/keys/sae-1/dec_keys" // as sae-2, fetching sae-1's keys
)

type container struct {
	Keys []struct {
		ID  string `json:"key_ID"`
		Key string `json:"key"`
	} `json:"keys"`
}

func decodeKeys(t *testing.T, r reply) container {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("status %d, body %s", r.code, r.body)
	}
	if ct := r.hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cl := r.hdr.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
		t.Errorf("Content-Length %q for %d bytes", cl, len(r.body))
	}
	if cc := r.hdr.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	var c container
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	return c
}

func TestStatus(t *testing.T) {
	e := newEnv(t, nil, nil)
	r := e.do(t, e.sae(t, pki.SAE, "sae-1"), "GET", statusPath, "")
	want := `{"source_KME_ID":"node-a","target_KME_ID":"node-b","master_SAE_ID":"sae-1","slave_SAE_ID":"sae-2",` +
		`"key_size":256,"stored_key_count":25000,"max_key_count":100000,"max_key_per_request":128,` +
		`"max_key_size":1024,"min_key_size":64,"max_SAE_ID_count":0}`
	if r.code != 200 || r.body != want || r.hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %q\nwant 200 %s", r.code, r.hdr.Get("Content-Type"), r.body, want)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatal(err)
	}
}

func TestEncKeys(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, body string
		maxSAEs                  int
		want                     supply.EncRequest
	}{
		{"GET defaults", "GET", encPath, "", 0, supply.EncRequest{Number: 1, Size: 256}},
		{"GET number and size", "GET", encPath + "?number=3&size=128", "", 0, supply.EncRequest{Number: 3, Size: 128}},
		{"GET size only", "GET", encPath + "?size=1024", "", 0, supply.EncRequest{Number: 1, Size: 1024}},
		{"GET escaped", "GET", encPath + "?%6Eumber=2", "", 0, supply.EncRequest{Number: 2, Size: 256}},
		{"POST empty body", "POST", encPath, "", 0, supply.EncRequest{Number: 1, Size: 256}},
		{"POST blank body", "POST", encPath, " \n", 0, supply.EncRequest{Number: 1, Size: 256}},
		{"POST empty object", "POST", encPath, "{}", 0, supply.EncRequest{Number: 1, Size: 256}},
		{"POST number", "POST", encPath, `{"number":2}`, 0, supply.EncRequest{Number: 2, Size: 256}},
		{"POST many", "POST", encPath, `{"number":128,"size":1024}`, 0, supply.EncRequest{Number: 128, Size: 1024}},
		{"POST both", "POST", encPath, `{ "number" : 4 , "size" : 64 }`, 0, supply.EncRequest{Number: 4, Size: 64}},
		{"POST nulls", "POST", encPath, `{"number":null,"size":null,"additional_slave_SAE_IDs":null}`, 0, supply.EncRequest{Number: 1, Size: 256}},
		{"POST optional ignored", "POST", encPath,
			`{"number":1,"extension_optional":[{"abc_route_type":"direct"}],"extension_mandatory":[]}`, 0, supply.EncRequest{Number: 1, Size: 256}},
		{"POST additional", "POST", encPath, `{"additional_slave_SAE_IDs":["sae-3","sae-4"]}`, 2,
			supply.EncRequest{Number: 1, Size: 256, AdditionalSlaves: []string{"sae-3", "sae-4"}}},
		{"POST escaped string", "POST", encPath, `{"additional_slave_SAE_IDs":["sae\u002d3"],"size":512}`, 1,
			supply.EncRequest{Number: 1, Size: 512, AdditionalSlaves: []string{"sae-3"}}},
		{"percent-encoded SAE", "GET", "/api/v1/keys/sae%2D2/enc_keys", "", 0, supply.EncRequest{Number: 1, Size: 256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.MaxSAEIDCount = tc.maxSAEs }, nil)
			r := e.do(t, e.sae(t, pki.SAE, "sae-1"), tc.method, tc.path, tc.body)
			c := decodeKeys(t, r)
			tc.want.Master, tc.want.Slave = "sae-1", "sae-2"
			if len(e.svc.encCalls) != 1 || !reflect.DeepEqual(e.svc.encCalls[0], tc.want) {
				t.Fatalf("service got %+v, want %+v", e.svc.encCalls, tc.want)
			}
			if len(c.Keys) != tc.want.Number {
				t.Fatalf("%d keys, want %d", len(c.Keys), tc.want.Number)
			}
			want := bytes.Repeat([]byte{0xa5}, tc.want.Size/8)
			for i, k := range c.Keys {
				if k.ID != uuidN(i+1) {
					t.Errorf("key %d: ID %s, want %s", i, k.ID, uuidN(i+1))
				}
				got, err := base64.StdEncoding.DecodeString(k.Key)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("key %d: %q (%v), want %x", i, k.Key, err, want)
				}
			}
		})
	}
}

func TestDecKeys(t *testing.T) {
	e := newEnv(t, nil, nil)
	master, slave := e.sae(t, pki.SAE, "sae-1"), e.sae(t, pki.SAE, "sae-2")
	c := decodeKeys(t, e.do(t, master, "POST", encPath, `{"number":3}`))
	ids := []string{c.Keys[0].ID, strings.ToUpper(c.Keys[1].ID), c.Keys[2].ID}

	body := fmt.Sprintf(`{"key_IDs":[{"key_ID":%q},{"key_ID":%q,"key_ID_extension":{"x_a":1}}],"key_IDs_extension":null}`, ids[0], ids[1])
	got := decodeKeys(t, e.do(t, slave, "POST", decPath, body))
	if len(got.Keys) != 2 || got.Keys[0] != c.Keys[0] || got.Keys[1] != c.Keys[1] {
		t.Fatalf("dec_keys POST gave %+v, want the first two of %+v", got, c)
	}
	got = decodeKeys(t, e.do(t, slave, "GET", decPath+"?key_ID="+ids[2], ""))
	if len(got.Keys) != 1 || got.Keys[0] != c.Keys[2] {
		t.Fatalf("dec_keys GET gave %+v, want %+v", got, c.Keys[2])
	}
	got = decodeKeys(t, e.do(t, slave, "POST", decPath, fmt.Sprintf(`{"key_IDs":[{"key_ID":%q}]}`, ids[2])))
	if len(got.Keys) != 1 || got.Keys[0] != c.Keys[2] {
		t.Fatalf("dec_keys POST (fast path) gave %+v, want %+v", got, c.Keys[2])
	}
	want := []supply.DecRequest{
		{Slave: "sae-2", Master: "sae-1", IDs: ids[:2]},
		{Slave: "sae-2", Master: "sae-1", IDs: ids[2:]},
		{Slave: "sae-2", Master: "sae-1", IDs: ids[2:]},
	}
	if !reflect.DeepEqual(e.svc.decCalls, want) {
		t.Fatalf("service got %+v\nwant %+v", e.svc.decCalls, want)
	}

	// The service decides who may fetch a key: another SAE gets 401, no body.
	r := e.do(t, e.sae(t, pki.SAE, "sae-3"), "GET", decPath+"?key_ID="+ids[0], "")
	if r.code != 401 || r.body != "" || r.hdr.Get("Content-Type") != "" {
		t.Fatalf("dec_keys by another SAE: %d %q %v", r.code, r.body, r.hdr)
	}
	r = e.do(t, slave, "GET", decPath+"?key_ID="+uuidN(999), "")
	if want := fmt.Sprintf(`{"message":"one or more keys specified are not found on KME","details":[{"key_ID":%q}]}`, uuidN(999)); r.code != 400 || r.body != want {
		t.Fatalf("unknown key: got %d %s\nwant 400 %s", r.code, r.body, want)
	}
}

// errorCases are requests the handler refuses before calling the service,
// with the exact answer.
var errorCases = []struct {
	name, method, path, body string
	code                     int
	want                     string
	allow                    string
}{
	{"size not bytes", "POST", encPath, `{"size":100}`, 400, `{"message":"size shall be a multiple of 8"}`, ""},
	{"size not bytes GET", "GET", encPath + "?size=12", "", 400, `{"message":"size shall be a multiple of 8"}`, ""},
	{"size too big", "POST", encPath, `{"size":2048}`, 400, `{"message":"size 2048 bits is outside min_key_size 64 to max_key_size 1024"}`, ""},
	{"size too small", "GET", encPath + "?size=56", "", 400, `{"message":"size 56 bits is outside min_key_size 64 to max_key_size 1024"}`, ""},
	{"size zero", "POST", encPath, `{"size":0}`, 400, `{"message":"size 0 bits is outside min_key_size 64 to max_key_size 1024"}`, ""},
	{"number zero", "POST", encPath, `{"number":0}`, 400, `{"message":"number 0 is outside 1 to max_key_per_request 128"}`, ""},
	{"number negative", "GET", encPath + "?number=-1", "", 400, `{"message":"number -1 is outside 1 to max_key_per_request 128"}`, ""},
	{"number too many", "POST", encPath, `{"number":129}`, 400, `{"message":"number 129 is outside 1 to max_key_per_request 128"}`, ""},
	{"mandatory", "POST", encPath, `{"extension_mandatory":[{"abc_route_type":"direct"},{"abc_transfer_method":"qkd"}]}`, 400,
		`{"message":"not all extension_mandatory parameters are supported","details":[{"extension_mandatory_unsupported":"abc_route_type"},{"extension_mandatory_unsupported":"abc_transfer_method"}]}`, ""},
	{"mandatory empty object", "POST", encPath, `{"extension_mandatory":[{}]}`, 400,
		`{"message":"not all extension_mandatory parameters are supported"}`, ""},
	{"additional refused", "POST", encPath, `{"additional_slave_SAE_IDs":["sae-3"]}`, 400,
		`{"message":"additional_slave_SAE_IDs names 1 SAEs; this KME takes at most max_SAE_ID_count 0"}`, ""},
	{"unknown field", "POST", encPath, `{"number":1,"colour":"red"}`, 400,
		`{"message":"request body: unknown field \"colour\"; the Key request object has number, size, additional_slave_SAE_IDs, extension_mandatory, extension_optional"}`, ""},
	{"field name case", "POST", encPath, `{"Number":1}`, 400,
		`{"message":"request body: unknown field \"Number\"; the Key request object has number, size, additional_slave_SAE_IDs, extension_mandatory, extension_optional"}`, ""},
	{"duplicate field", "POST", encPath, `{"number":1,"number":2}`, 400, `{"message":"request body: field \"number\" appears twice"}`, ""},
	{"number is string", "POST", encPath, `{"number":"1"}`, 400, `{"message":"request body: number: got a string, want an integer"}`, ""},
	{"size is fraction", "POST", encPath, `{"size":256.5}`, 400, `{"message":"request body: size: 256.5 is not an integer"}`, ""},
	{"size is exponent", "POST", encPath, `{"size":2.56e2}`, 400, `{"message":"request body: size: 2.56e2 is not an integer"}`, ""},
	{"number huge", "POST", encPath, `{"number":123456789012345678901234567890}`, 400, `{"message":"request body: number: 123456789012345678901234567890 is out of range"}`, ""},
	{"additional not array", "POST", encPath, `{"additional_slave_SAE_IDs":"sae-3"}`, 400, `{"message":"request body: additional_slave_SAE_IDs: got a string, want an array"}`, ""},
	{"additional not strings", "POST", encPath, `{"additional_slave_SAE_IDs":["sae-3",7]}`, 400, `{"message":"request body: additional_slave_SAE_IDs[1]: got a number, want a string"}`, ""},
	{"optional not objects", "POST", encPath, `{"extension_optional":["x"]}`, 400, `{"message":"request body: extension_optional[0]: got a string, want an object"}`, ""},
	{"body not object", "POST", encPath, `[1,256]`, 400, `{"message":"request body: got an array, want an object"}`, ""},
	{"body null", "POST", encPath, `null`, 400, `{"message":"request body: got null, want an object"}`, ""},
	{"trailing data", "POST", encPath, `{"number":1} {"number":2}`, 400, `{"message":"request body: data after the JSON object at byte 13"}`, ""},
	{"trailing garbage", "POST", encPath, `{}x`, 400, `{"message":"request body: data after the JSON object at byte 2"}`, ""},
	{"truncated", "POST", encPath, `{"number":1`, 400, `{"message":"request body: JSON ends too early"}`, ""},
	{"syntax", "POST", encPath, `{"number":01}`, 400, `{"message":"request body: invalid JSON at byte 12: invalid character '1' after object key:value pair"}`, ""},
	{"body too large", "POST", encPath, `{"extension_optional":[{"x_pad":"` + strings.Repeat("a", 40000) + `"}]}`, 400,
		`{"message":"request body of 40037 bytes exceeds this KME's limit of 32768 bytes"}`, ""},
	{"query on POST", "POST", encPath + "?number=2", `{}`, 400, `{"message":"query \"number=2\" with POST: put the parameters in the JSON body, or use GET"}`, ""},
	{"GET unknown param", "GET", encPath + "?number=1&additional_slave_SAE_IDs=sae-3", "", 400,
		`{"message":"query parameter \"additional_slave_SAE_IDs\": GET enc_keys takes only number and size; send additional_slave_SAE_IDs and extensions in a POST body"}`, ""},
	{"GET number twice", "GET", encPath + "?number=1&number=2", "", 400, `{"message":"query parameter number given twice"}`, ""},
	{"GET number not int", "GET", encPath + "?number=one", "", 400, `{"message":"query parameter number: \"one\" is not a decimal integer"}`, ""},
	{"GET size out of range", "GET", encPath + "?size=99999999999999999999", "", 400, `{"message":"query parameter size: \"99999999999999999999\" is out of range"}`, ""},
	{"GET bad escape", "GET", encPath + "?size=%zz", "", 400, `{"message":"query parameter \"size=%zz\": invalid percent-encoding"}`, ""},
	{"status query", "GET", statusPath + "?x=1", "", 400, `{"message":"status takes no query parameters"}`, ""},
	{"bad slave in URL", "GET", "/api/v1/keys/sae%202/status", "", 400,
		`{"message":"slave_SAE_ID \"sae 2\" in the URL: character ' ' at 3: use only A-Z a-z 0-9 . _ -"}`, ""},
	{"bad master in URL", "GET", "/api/v1/keys/a%2Fb/dec_keys?key_ID=" + uuidN(1), "", 400,
		`{"message":"master_SAE_ID \"a/b\" in the URL: character '/' at 1: use only A-Z a-z 0-9 . _ -"}`, ""},
	{"dec not UUID", "GET", decPath + "?key_ID=1234", "", 400, `{"message":"query parameter key_ID \"1234\" is not a UUID (want 8-4-4-4-12 hex digits)"}`, ""},
	{"dec not UUID POST", "POST", decPath, `{"key_IDs":[{"key_ID":"` + uuidN(1) + `"},{"key_ID":"g0000001-0000-4000-8000-000000000001"}]}`, 400,
		`{"message":"request body: key_IDs[1].key_ID \"g0000001-0000-4000-8000-000000000001\" is not a UUID (want 8-4-4-4-12 hex digits)"}`, ""},
	{"dec braces UUID", "GET", decPath + "?key_ID={" + uuidN(1) + "}", "", 400,
		`{"message":"query parameter key_ID \"{` + uuidN(1) + `}\" is not a UUID (want 8-4-4-4-12 hex digits)"}`, ""},
	{"dec duplicate", "POST", decPath, `{"key_IDs":[{"key_ID":"` + uuidN(10) + `"},{"key_ID":"` + strings.ToUpper(uuidN(10)) + `"}]}`, 400,
		`{"message":"request body: key_IDs[1].key_ID \"` + strings.ToUpper(uuidN(10)) + `\" repeats key ID 0"}`, ""},
	{"dec empty list", "POST", decPath, `{"key_IDs":[]}`, 400, `{"message":"request body: key_IDs: no key IDs: name at least one key_ID"}`, ""},
	{"dec no list", "POST", decPath, `{"key_IDs_extension":{}}`, 400, `{"message":"request body: key_IDs: no key IDs: name at least one key_ID"}`, ""},
	{"dec empty body", "POST", decPath, ``, 400, `{"message":"request body is empty: dec_keys needs a Key IDs object {\"key_IDs\":[{\"key_ID\":\"<UUID>\"}]}"}`, ""},
	{"dec unknown field", "POST", decPath, `{"keys":[]}`, 400, `{"message":"request body: unknown field \"keys\"; the Key IDs object has key_IDs and key_IDs_extension"}`, ""},
	{"dec unknown inner field", "POST", decPath, `{"key_IDs":[{"key_ID":"` + uuidN(1) + `","key":"x"}]}`, 400,
		`{"message":"request body: key_IDs[0]: unknown field \"key\"; a key ID object has key_ID and key_ID_extension"}`, ""},
	{"dec missing key_ID", "POST", decPath, `{"key_IDs":[{"key_ID_extension":{}}]}`, 400, `{"message":"request body: key_IDs[0]: key_ID is missing"}`, ""},
	{"dec key_ID number", "POST", decPath, `{"key_IDs":[{"key_ID":5}]}`, 400, `{"message":"request body: key_IDs[0].key_ID: got a number, want a string"}`, ""},
	{"dec extension not object", "POST", decPath, `{"key_IDs":[{"key_ID":"` + uuidN(1) + `","key_ID_extension":[]}]}`, 400,
		`{"message":"request body: key_IDs[0].key_ID_extension: got an array, want an object"}`, ""},
	{"dec GET no key_ID", "GET", decPath, "", 400, `{"message":"query parameter key_ID is missing: GET dec_keys takes one key_ID"}`, ""},
	{"dec GET two key_IDs", "GET", decPath + "?key_ID=" + uuidN(1) + "&key_ID=" + uuidN(2), "", 400,
		`{"message":"query parameter key_ID given twice: GET dec_keys takes one key_ID; send more in a POST body"}`, ""},
	{"dec GET other param", "GET", decPath + "?key_ID=" + uuidN(1) + "&number=1", "", 400, `{"message":"query parameter \"number\": GET dec_keys takes only key_ID"}`, ""},
	{"dec too many", "POST", decPath, func() string {
		var b strings.Builder
		b.WriteString(`{"key_IDs":[`)
		for i := range 129 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"key_ID":%q}`, uuidN(i))
		}
		return b.String() + "]}"
	}(), 400, `{"message":"request body: key_IDs: 129 key IDs, more than max_key_per_request 128"}`, ""},
	{"unknown op", "GET", "/api/v1/keys/sae-2/keys", "", 404,
		`{"message":"no route /api/v1/keys/sae-2/keys: the routes are /api/v1/keys/{SAE_ID}/status, enc_keys and dec_keys"}`, ""},
	{"unknown prefix", "GET", "/api/v2/keys/sae-2/status", "", 404,
		`{"message":"no route /api/v2/keys/sae-2/status: the routes are /api/v1/keys/{SAE_ID}/status, enc_keys and dec_keys"}`, ""},
	{"trailing slash", "GET", statusPath + "/", "", 404,
		`{"message":"no route /api/v1/keys/sae-2/status/: the routes are /api/v1/keys/{SAE_ID}/status, enc_keys and dec_keys"}`, ""},
	{"no SAE", "GET", "/api/v1/keys//status", "", 404,
		`{"message":"no route /api/v1/keys//status: the routes are /api/v1/keys/{SAE_ID}/status, enc_keys and dec_keys"}`, ""},
	{"root", "GET", "/", "", 404, `{"message":"no route /: the routes are /api/v1/keys/{SAE_ID}/status, enc_keys and dec_keys"}`, ""},
	{"POST status", "POST", statusPath, "{}", 405, `{"message":"method POST: status takes GET"}`, "GET"},
	{"PUT enc_keys", "PUT", encPath, "{}", 405, `{"message":"method PUT: enc_keys takes GET, POST"}`, "GET, POST"},
	{"DELETE dec_keys", "DELETE", decPath, "", 405, `{"message":"method DELETE: dec_keys takes GET, POST"}`, "GET, POST"},
	{"HEAD status", "HEAD", statusPath, "", 405, ``, "GET"},
}

func TestErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 32 << 10 }, nil)
	sae1, sae2 := e.sae(t, pki.SAE, "sae-1"), e.sae(t, pki.SAE, "sae-2")
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			c := sae1
			if strings.Contains(tc.path, "dec_keys") {
				c = sae2
			}
			r := e.do(t, c, tc.method, tc.path, tc.body)
			if r.code != tc.code || r.body != tc.want {
				t.Fatalf("got %d %s\nwant %d %s", r.code, r.body, tc.code, tc.want)
			}
			if ct := r.hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := r.hdr.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	if len(e.svc.encCalls) != 0 || len(e.svc.decCalls) != 0 {
		t.Fatalf("the service was called for refused requests: %+v %+v", e.svc.encCalls, e.svc.decCalls)
	}
}

// TestBodyLimitChunked sends an over-long body without Content-Length.
func TestBodyLimitChunked(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1000 }, nil)
	req, err := http.NewRequest("POST", e.srv.URL+encPath, struct{ *strings.Reader }{strings.NewReader(`{"extension_optional":[{"x_pad":"` + strings.Repeat("a", 2000) + `"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.sae(t, pki.SAE, "sae-1").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if want := `{"message":"request body exceeds this KME's limit of 1000 bytes"}`; resp.StatusCode != 400 || b.String() != want {
		t.Fatalf("got %d %s, want 400 %s", resp.StatusCode, b.String(), want)
	}
}

func TestServiceErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code int
		want string
	}{
		{"unauthorised", supply.ErrUnauthorized, 401, ""},
		{"unauthorised wrapped", fmt.Errorf("sae-1 to sae-9: %w", supply.ErrUnauthorized), 401, ""},
		{"bad request", supply.BadRequest("slave SAE sae-2 is unknown"), 400, `{"message":"slave SAE sae-2 is unknown"}`},
		{"unavailable", supply.Unavailable("pool node-a→node-b holds 0 keys", map[string]any{"stored_key_count": 0}), 503,
			`{"message":"pool node-a→node-b holds 0 keys","details":[{"stored_key_count":0}]}`},
		{"unmet", supply.BadRequest(supply.MsgMandatoryUnmet), 400, `{"message":"not all extension_mandatory request options could be met"}`},
		{"odd code", &supply.Error{Code: 418, Message: "teapot"}, 503, `{"message":"teapot"}`},
		{"bad details", supply.Unavailable("x", map[string]any{"ch": make(chan int)}), 503, `{"message":"x"}`},
		{"other", errors.New("node-b did not acknowledge the assignment"), 503,
			`{"message":"OP: the KME failed: node-b did not acknowledge the assignment"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			e.svc.statusErr, e.svc.encErr, e.svc.decErr = tc.err, tc.err, tc.err
			for _, rq := range []struct{ op, method, path, body string }{
				{"status", "GET", statusPath, ""},
				{"enc_keys", "POST", encPath, `{}`},
				{"dec_keys", "GET", decPath + "?key_ID=" + uuidN(1), ""},
			} {
				r := e.do(t, e.sae(t, pki.SAE, "sae-2"), rq.method, rq.path, rq.body)
				want := strings.Replace(tc.want, "OP", rq.op, 1)
				if r.code != tc.code || r.body != want {
					t.Errorf("%s: got %d %s\nwant %d %s", rq.op, r.code, r.body, tc.code, want)
				}
			}
		})
	}
}

func TestServiceWrongKeys(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.svc.short = true
	r := e.do(t, e.sae(t, pki.SAE, "sae-1"), "POST", encPath, `{"number":2}`)
	if want := `{"message":"enc_keys: the KME failed: the key service returned 1 keys for a request of 2"}`; r.code != 503 || r.body != want {
		t.Fatalf("got %d %s, want 503 %s", r.code, r.body, want)
	}
	assertZero(t, e.svc)
}

func assertZero(t *testing.T, f *fakeService) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.handed) == 0 {
		t.Fatal("no keys handed out")
	}
	for _, k := range f.handed {
		for _, c := range k.Bytes {
			if c != 0 {
				t.Fatalf("key %s not zeroised: %x", k.ID, k.Bytes)
			}
		}
	}
}

func TestZeroise(t *testing.T) {
	e := newEnv(t, nil, nil)
	master, slave := e.sae(t, pki.SAE, "sae-1"), e.sae(t, pki.SAE, "sae-2")
	c := decodeKeys(t, e.do(t, master, "POST", encPath, `{"number":5,"size":512}`))
	for _, k := range c.Keys {
		if b, _ := base64.StdEncoding.DecodeString(k.Key); !bytes.Equal(b, bytes.Repeat([]byte{0xa5}, 64)) {
			t.Fatalf("key %s on the wire: %x", k.ID, b)
		}
	}
	decodeKeys(t, e.do(t, slave, "GET", decPath+"?key_ID="+c.Keys[3].ID, ""))
	e.svc.mu.Lock()
	if len(e.svc.handed) != 6 {
		t.Fatalf("%d keys handed out, want 6", len(e.svc.handed))
	}
	e.svc.mu.Unlock()
	assertZero(t, e.svc)
}

// TestWriteKeysClearsBuffer checks that the response buffer holds no key
// text once written, and is not reallocated while being filled.
func TestWriteKeysClearsBuffer(t *testing.T) {
	h, err := NewHandler(testConfig(newFake()))
	if err != nil {
		t.Fatal(err)
	}
	keys := []supply.Key{
		{ID: uuidN(1), Bytes: bytes.Repeat([]byte{0xff}, 128)},
		{ID: "odd\"id\x01\xff", Bytes: bytes.Repeat([]byte{0x7e}, 3)},
	}
	b := &buffers{out: make([]byte, 0, 8)}
	rec := httptest.NewRecorder()
	h.(*handler).writeKeys(rec, b, keys)
	want := `{"keys":[{"key_ID":"` + uuidN(1) + `","key":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 128)) +
		`"},{"key_ID":"odd\"id\u0001\ufffd","key":"fn5+"}]}`
	if rec.Body.String() != want {
		t.Fatalf("body %s\nwant %s", rec.Body.String(), want)
	}
	if n := containerLen(keys); cap(b.out) != n {
		t.Fatalf("buffer cap %d, want exactly containerLen %d (one allocation)", cap(b.out), n)
	}
	for i, c := range b.out[:cap(b.out)] {
		if c != 0 {
			t.Fatalf("buffer byte %d is %q after writing", i, c)
		}
	}
	for _, k := range keys {
		if !bytes.Equal(k.Bytes, make([]byte, len(k.Bytes))) {
			t.Fatalf("key %q not zeroised", k.ID)
		}
	}
	var v any
	if err := json.Unmarshal([]byte(want), &v); err != nil {
		t.Fatal(err)
	}
}

func TestIdentity(t *testing.T) {
	for _, mode := range []supply.Identity{supply.IdentityURI, supply.IdentityCN} {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Identity = mode }, nil)
			get := func(c *http.Client) reply { return e.do(t, c, "GET", statusPath, "") }
			check := func(what string, r reply, master string) {
				t.Helper()
				if master == "" {
					if r.code != 401 || r.body != "" || r.hdr.Get("Content-Type") != "" {
						t.Errorf("%s: got %d %q, want 401 with no body", what, r.code, r.body)
					}
					return
				}
				if want := `"master_SAE_ID":"` + master + `"`; r.code != 200 || !strings.Contains(r.body, want) {
					t.Errorf("%s: got %d %s, want 200 with %s", what, r.code, r.body, want)
				}
			}
			check("SAE certificate", get(e.sae(t, pki.SAE, "sae-1")), "sae-1")
			check("node certificate", get(e.sae(t, pki.Node, "sae-1")), "")
			check("operator certificate", get(e.sae(t, pki.Operator, "sae-1")), "")
			split := custom(t, e.ca, "cn-name", "qrelay:sae:uri-name")
			byURI := map[supply.Identity]string{supply.IdentityURI: "uri-name", supply.IdentityCN: "cn-name"}[mode]
			check("URI SAN and CN differ", get(e.client(t, split)), byURI)
			check("CN only", get(e.client(t, custom(t, e.ca, "plain-cn"))), "plain-cn")
			check("foreign URI SAN", get(e.client(t, custom(t, e.ca, "cn-x", "spiffe://lab/sae-x"))), "cn-x")
			check("node URI SAN", get(e.client(t, custom(t, e.ca, "sae-1", "qrelay:node:sae-1"))), "")
			check("CN not an ID", get(e.client(t, custom(t, e.ca, "sae 1"))), "")
			check("empty CN", get(e.client(t, custom(t, e.ca, ""))), "")
		})
	}
}

// TestNoClientCertificate serves with client certificates optional, so a
// request without one reaches the handler: 401 with no body. With the
// standard's configuration the handshake itself fails.
func TestNoClientCertificate(t *testing.T) {
	e := newEnv(t, nil, func(c *tls.Config) { c.ClientAuth = tls.VerifyClientCertIfGiven })
	r := e.do(t, e.client(t, nil), "GET", statusPath, "")
	if r.code != 401 || r.body != "" {
		t.Fatalf("got %d %q, want 401 with no body", r.code, r.body)
	}

	strict := newEnv(t, nil, nil)
	if _, err := strict.client(t, nil).Get(strict.srv.URL + statusPath); err == nil {
		t.Fatal("TLSConfig accepted a client without a certificate")
	}
	other, err := pki.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := other.Issue(pki.SAE, "sae-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.client(t, &iss.TLS).Get(strict.srv.URL + statusPath); err == nil {
		t.Fatal("TLSConfig accepted a certificate of another CA")
	}

	h, err := NewHandler(testConfig(newFake()))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", statusPath, nil))
	if rec.Code != 401 || rec.Body.Len() != 0 {
		t.Fatalf("plain HTTP: got %d %q, want 401 with no body", rec.Code, rec.Body.String())
	}
}

func TestTLSConfig(t *testing.T) {
	e := newEnv(t, nil, nil)
	iss, err := e.ca.Issue(pki.SAE, "sae-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cfg   *tls.Config
		proto string
	}{
		{"TLS 1.2", &tls.Config{MaxVersion: tls.VersionTLS12}, "HTTP/1.1"},
		{"TLS 1.3 h2", &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}}, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.Clone()
			cfg.RootCAs, cfg.Certificates = e.ca.Pool(), []tls.Certificate{iss.TLS}
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: tc.proto == "HTTP/2.0"}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(e.srv.URL + encPath)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Proto != tc.proto {
				t.Fatalf("got %d over %s, want 200 over %s", resp.StatusCode, resp.Proto, tc.proto)
			}
		})
	}
	// A resumed session (session tickets) still carries the verified
	// chain, so the SAE is still known.
	cfg := &tls.Config{RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{iss.TLS}, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	tr := &http.Transport{TLSClientConfig: cfg}
	for i := range 2 {
		resp, err := (&http.Client{Transport: tr}).Get(e.srv.URL + statusPath)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || st["master_SAE_ID"] != "sae-1" || resp.TLS.DidResume != (i == 1) {
			t.Fatalf("connection %d: %d %v %v, resumed %v", i, resp.StatusCode, st, err, resp.TLS.DidResume)
		}
		tr.CloseIdleConnections()
	}
	old := &tls.Config{MaxVersion: tls.VersionTLS11, RootCAs: e.ca.Pool(), Certificates: []tls.Certificate{iss.TLS}}
	if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: old}}).Get(e.srv.URL + statusPath); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Limits = map[string]Limit{"sae-1": {KeysPerSecond: 1000, Burst: 10}, "sae-3": {}}
	}, nil)
	sae1 := e.sae(t, pki.SAE, "sae-1")
	enc := func(c *http.Client, n int) reply {
		return e.do(t, c, "POST", encPath, fmt.Sprintf(`{"number":%d}`, n))
	}
	calls := func() int {
		e.svc.mu.Lock()
		defer e.svc.mu.Unlock()
		return len(e.svc.encCalls)
	}
	if r := enc(sae1, 10); r.code != 200 {
		t.Fatalf("burst of 10: %d %s", r.code, r.body)
	}
	r := enc(sae1, 1)
	if want := `{"message":"sae-1 may take 1000 keys/s; retry in 1ms"}`; r.code != 503 || r.body != want || r.hdr.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: got %d %s (Retry-After %q), want 503 %s", r.code, r.body, r.hdr.Get("Retry-After"), want)
	}
	if calls() != 1 {
		t.Fatalf("service called %d times, want 1 (refused before the call)", calls())
	}
	e.clock.Advance(400 * time.Microsecond)
	r = enc(sae1, 1)
	if want := `{"message":"sae-1 may take 1000 keys/s; retry in 1ms"}`; r.code != 503 || r.body != want {
		t.Fatalf("0.4 keys later: got %d %s, want 503 %s", r.code, r.body, want)
	}
	e.clock.Advance(600 * time.Microsecond)
	if r := enc(sae1, 1); r.code != 200 {
		t.Fatalf("1ms later: %d %s", r.code, r.body)
	}
	e.clock.Advance(5 * time.Millisecond)
	r = enc(sae1, 8)
	if want := `{"message":"sae-1 may take 1000 keys/s; retry in 3ms"}`; r.code != 503 || r.body != want {
		t.Fatalf("8 keys with 5 in the bucket: got %d %s, want 503 %s", r.code, r.body, want)
	}
	e.clock.Advance(time.Hour) // refills to the burst, not beyond
	r = enc(sae1, 11)
	if want := `{"message":"sae-1 may take 1000 keys/s, at most 10 at once; 11 keys in one request can never pass: ask for fewer"}`; r.code != 503 || r.body != want || r.hdr.Get("Retry-After") != "" {
		t.Fatalf("above the burst: got %d %s, want 503 %s", r.code, r.body, want)
	}
	// A request the service fails costs nothing.
	e.svc.encErr = supply.Unavailable("pool empty")
	if r := enc(sae1, 10); r.code != 503 || r.body != `{"message":"pool empty"}` {
		t.Fatalf("service failure: %d %s", r.code, r.body)
	}
	e.svc.encErr = nil
	if r := enc(sae1, 10); r.code != 200 {
		t.Fatalf("after a failed request the burst should be whole: %d %s", r.code, r.body)
	}
	// Other SAEs are not limited by sae-1's bucket; a zero limit is none.
	for _, id := range []string{"sae-2", "sae-3"} {
		if r := enc(e.sae(t, pki.SAE, id), 100); r.code != 200 {
			t.Fatalf("%s: %d %s", id, r.code, r.body)
		}
	}
	// dec_keys is not limited.
	if r := e.do(t, sae1, "GET", "/api/v1/keys/sae-3/dec_keys?key_ID="+uuidN(1), ""); r.code != 200 && r.code != 401 {
		t.Fatalf("dec_keys: %d %s", r.code, r.body)
	}
}

func TestBucketDefaults(t *testing.T) {
	h, err := NewHandler(Config{Service: newFake(), KeySize: 256, MaxKeysPerRequest: 128,
		Limits: map[string]Limit{"a": {KeysPerSecond: 0.5}, "b": {KeysPerSecond: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	hh := h.(*handler)
	if hh.limits["a"].burst != 128 || hh.limits["b"].burst != 1000 || hh.minSize != 64 || hh.maxSize != 256 {
		t.Fatalf("bursts %v %v, sizes %d..%d", hh.limits["a"].burst, hh.limits["b"].burst, hh.minSize, hh.maxSize)
	}
	if hh.limits["a"].what != "a may take 0.5 keys/s" {
		t.Fatalf("what %q", hh.limits["a"].what)
	}
}

func TestNewHandlerErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no service", func(c *Config) { c.Service = nil }, "supply: config: no KeyService"},
		{"identity", func(c *Config) { c.Identity = 7 }, "supply: config: identity Identity(7): want IdentityURI or IdentityCN"},
		{"key size", func(c *Config) { c.KeySize = 100 }, "supply: config: key size 100 bits: want a positive multiple of 8"},
		{"sizes", func(c *Config) { c.MaxKeySize = 128 }, "supply: config: key sizes min 64, default 256, max 128 bits: want multiples of 8 with 0 < min <= default <= max"},
		{"per request", func(c *Config) { c.MaxKeysPerRequest = 0 }, "supply: config: max keys per request 0: want at least 1"},
		{"SAE count", func(c *Config) { c.MaxSAEIDCount = -1 }, "supply: config: max SAE ID count -1: want 0 (no additional slaves) or more"},
		{"body", func(c *Config) { c.MaxBodyBytes = -1 }, "supply: config: max body bytes -1: want a positive size"},
		{"limit ID", func(c *Config) { c.Limits = map[string]Limit{"a b": {KeysPerSecond: 1}} }, `supply: config: limit of SAE "a b": character ' ' at 1: use only A-Z a-z 0-9 . _ -`},
		{"limit rate", func(c *Config) { c.Limits = map[string]Limit{"a": {KeysPerSecond: -1}} }, "supply: config: limit of SAE a: -1 keys/s: want 0 (no limit) or a positive rate"},
		{"limit burst", func(c *Config) { c.Limits = map[string]Limit{"a": {KeysPerSecond: 1, Burst: -2}} }, "supply: config: limit of SAE a: burst -2: want 0 (default) or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(newFake())
			tc.mod(&cfg)
			if _, err := NewHandler(cfg); err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestParseIdentity(t *testing.T) {
	for s, want := range map[string]supply.Identity{"uri": supply.IdentityURI, "cn": supply.IdentityCN} {
		if got, err := supply.ParseIdentity(s); err != nil || got != want || got.String() != s {
			t.Errorf("ParseIdentity(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := supply.ParseIdentity("dns"); err == nil {
		t.Error("ParseIdentity(dns) succeeded")
	}
}

// TestConcurrentClients runs 200 SAEs, each with its own TLS client,
// against one handler at once.
func TestConcurrentClients(t *testing.T) {
	const n = 200
	e := newEnv(t, func(c *Config) { c.Limits = map[string]Limit{"sae-1": {KeysPerSecond: 1e9, Burst: 1 << 20}} }, nil)
	iss, err := e.ca.Issue(pki.SAE, "sae-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	slaveCert, err := e.ca.Issue(pki.SAE, "sae-2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c := e.client(t, &iss.TLS)
			for j := range 3 {
				resp, err := c.Post(e.srv.URL+encPath, "application/json", strings.NewReader(`{"number":2,"size":256}`))
				if err != nil {
					errs <- fmt.Errorf("client %d request %d: %v", i, j, err)
					return
				}
				var ct container
				err = json.NewDecoder(resp.Body).Decode(&ct)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || len(ct.Keys) != 2 {
					errs <- fmt.Errorf("client %d request %d: %d %+v %v", i, j, resp.StatusCode, ct, err)
					return
				}
				if i%10 == 0 {
					// a slave fetching one of the keys
					sc := e.client(t, &slaveCert.TLS)
					resp, err := sc.Get(e.srv.URL + decPath + "?key_ID=" + ct.Keys[0].ID)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs <- fmt.Errorf("client %d dec_keys: %d", i, resp.StatusCode)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(e.svc.encCalls); got != 3*n {
		t.Fatalf("%d enc_keys calls, want %d", got, 3*n)
	}
	assertZero(t, e.svc)
}
