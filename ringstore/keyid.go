package ringstore

import "github.com/qrelay/qrelay/internal/etsi014wire"

// KeyID names one end-to-end key: an ETSI GS QKD 014 key_ID, a UUID
// derived rather than carried (etsi014wire.KeyID has the rule and the text
// form). The zero KeyID is the nil UUID and names no key.
type KeyID = etsi014wire.KeyID

// KeyIDNamespace is the namespace UUID of derived key IDs
// (etsi014wire.KeyIDNamespace). It must never change: every key ID on every
// node depends on it.
const KeyIDNamespace = etsi014wire.KeyIDNamespace

// DeriveKeyID is the key ID of key seq of flow from node src to node dst
// (etsi014wire.DeriveKeyID). It does not allocate for node IDs of up to 48
// bytes each.
func DeriveKeyID(src, dst string, flow, seq uint64) KeyID {
	return etsi014wire.DeriveKeyID(src, dst, flow, seq)
}

// ParseKeyID parses a key ID in canonical 8-4-4-4-12 form, in either case
// (etsi014wire.ParseKeyID).
func ParseKeyID(s string) (KeyID, error) { return etsi014wire.ParseKeyID(s) }
