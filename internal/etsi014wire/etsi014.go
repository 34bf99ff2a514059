// Package etsi014wire holds the wire types of ETSI GS QKD 014 v1.1.1
// ("Protocol and data format of REST-based key delivery API"): the JSON
// objects of clause 6, the key_ID UUID text, and the derivation of the key
// IDs qrelay gives the end-to-end keys it relays.
//
// The server (supply) and the southbound client (dataplane/etsi014client)
// share these definitions. The types are for encoding/json; the server
// writes its hot answers with a hand-written encoder that its tests hold
// to these types. internal/fakekme keeps types of its own on purpose, as
// an independent oracle of the standard.
//
// Struct fields are named after the standard's JSON names; extensions,
// whose content the standard leaves to implementations, are raw JSON.
package etsi014wire

import "encoding/json"

// PathPrefix begins the path of every route of the API (clause 5):
// PathPrefix + SAE ID + "/status", "/enc_keys" or "/dec_keys", under the
// KME's base URL.
const PathPrefix = "/api/v1/keys/"

// Status is the Status object (clause 6.1), the answer to status. Key
// sizes are in bits.
type Status struct {
	SourceKMEID      string          `json:"source_KME_ID"`
	TargetKMEID      string          `json:"target_KME_ID"`
	MasterSAEID      string          `json:"master_SAE_ID"`
	SlaveSAEID       string          `json:"slave_SAE_ID"`
	KeySize          int             `json:"key_size"`
	StoredKeyCount   int             `json:"stored_key_count"`
	MaxKeyCount      int             `json:"max_key_count"`
	MaxKeyPerRequest int             `json:"max_key_per_request"`
	MaxKeySize       int             `json:"max_key_size"`
	MinKeySize       int             `json:"min_key_size"`
	MaxSAEIDCount    int             `json:"max_SAE_ID_count"`
	StatusExtension  json.RawMessage `json:"status_extension,omitempty"`
}

// KeyRequest is the Key request object (clause 6.2), the body of a POST
// enc_keys. Every field is optional; a zero Number or Size is left out,
// which asks for the KME's default.
type KeyRequest struct {
	Number                int               `json:"number,omitempty"`
	Size                  int               `json:"size,omitempty"`
	AdditionalSlaveSAEIDs []string          `json:"additional_slave_SAE_IDs,omitempty"`
	ExtensionMandatory    []json.RawMessage `json:"extension_mandatory,omitempty"`
	ExtensionOptional     []json.RawMessage `json:"extension_optional,omitempty"`
}

// KeyContainer is the Key container object (clause 6.3), the answer to
// enc_keys and dec_keys.
type KeyContainer struct {
	Keys                  []Key           `json:"keys"`
	KeyContainerExtension json.RawMessage `json:"key_container_extension,omitempty"`
}

// Key is one key of a Key container. KeyID is the UUID text as sent
// (ParseKeyID reads it); Key is the key itself, base64 in JSON.
type Key struct {
	KeyID          string          `json:"key_ID"`
	KeyIDExtension json.RawMessage `json:"key_ID_extension,omitempty"`
	Key            []byte          `json:"key"`
	KeyExtension   json.RawMessage `json:"key_extension,omitempty"`
}

// KeyIDs is the Key IDs object (clause 6.4), the body of a POST dec_keys.
type KeyIDs struct {
	KeyIDs          []KeyIDEntry    `json:"key_IDs"`
	KeyIDsExtension json.RawMessage `json:"key_IDs_extension,omitempty"`
}

// KeyIDEntry is one element of KeyIDs.KeyIDs.
type KeyIDEntry struct {
	KeyID          string          `json:"key_ID"`
	KeyIDExtension json.RawMessage `json:"key_ID_extension,omitempty"`
}

// ErrorBody is the Error object (clause 6.5), the body of a 400 or 503
// answer (a 401 has none). It is a wire type, not a Go error.
type ErrorBody struct {
	Message string           `json:"message"`
	Details []map[string]any `json:"details,omitempty"`
}

// Messages the standard names for an ErrorBody (clause 6).
const (
	MsgSizeMultipleOf8      = "size shall be a multiple of 8"
	MsgMandatoryUnsupported = "not all extension_mandatory parameters are supported"
	MsgMandatoryUnmet       = "not all extension_mandatory request options could be met"
	MsgKeysNotFound         = "one or more keys specified are not found on KME"
)
