// Package etsi014 is the ETSI GS QKD 014 front end of the key supply: it
// implements the ETSI GS QKD 014 v1.1.1 REST key delivery API ("Protocol
// and data format of REST-based key delivery API"), in which this node is
// the KME and applications are SAEs.
//
// The handler answers the three routes of the standard:
//
//	GET        /api/v1/keys/{slave_SAE_ID}/status
//	POST, GET  /api/v1/keys/{slave_SAE_ID}/enc_keys   (GET: ?number=N&size=S)
//	POST, GET  /api/v1/keys/{master_SAE_ID}/dec_keys  (GET: ?key_ID=UUID)
//
// over HTTPS with mutual TLS (TLSConfig). The caller's SAE ID always comes
// from its verified client certificate (Identity), never from the request;
// a request without one is answered 401 with no body, as the standard says.
// Requests are validated here (sizes, counts, key IDs, extensions, strict
// JSON) before the supply.KeyService behind the API is called; the service owns
// the pools, the assignment of keys to the slave SAE's node and the rule
// that only the named slave may fetch a key with dec_keys. enc_keys is rate
// limited per master SAE with a token bucket of keys (Limit).
//
// Key material is written straight from the service's Key.Bytes into a
// pooled response buffer as base64; after the response is written the
// handler zeroises both the Key.Bytes and the buffer region that held the
// base64 text. Copies that net/http and crypto/tls keep in their own
// buffers are outside its reach. Key bytes are never logged.
//
// The wire types (Status, Key container, Error) and the key_ID UUID text
// are internal/etsi014wire's; the hot answers are written by hand in the
// form encoding/json gives those types, which encode_test.go checks.
//
// Error bodies follow the standard's Error object:
// {"message": "...", "details": [...]}; 400 for a request the standard or
// this KME refuses, 503 when the KME cannot serve it now (the service
// failed, the pool is short, the SAE's rate limit is reached).
package etsi014
