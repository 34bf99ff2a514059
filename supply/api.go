package supply

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/qrelay/qrelay/internal/etsi014wire"
)

// KeyService is the node behind the API: pools, assignment to the slave's node.
type KeyService interface {
	// Status describes the link from master SAE to slave SAE (the caller is master).
	Status(ctx context.Context, master, slave string) (Status, error)
	// EncKeys hands out req.Number fresh keys of req.Size bits for
	// master→slave(s); the keys are removed from the pool and the assignment
	// is acknowledged by the slave's node before it returns.
	EncKeys(ctx context.Context, req EncRequest) ([]Key, error)
	// DecKeys returns the keys with the given IDs to the slave that was
	// named when they were handed out.
	DecKeys(ctx context.Context, req DecRequest) ([]Key, error)
}

// EncRequest is a validated enc_keys request: Master is the caller, Slave
// the SAE in the URL, Size in bits (a multiple of 8).
type EncRequest struct {
	Master, Slave    string
	AdditionalSlaves []string
	Number, Size     int
}

// DecRequest is a validated dec_keys request: Slave is the caller, Master
// the SAE in the URL. IDs are as the SAE sent them (UUID text, any case),
// distinct and at most Config.MaxKeysPerRequest.
type DecRequest struct {
	Slave, Master string
	IDs           []string
}

// Key is one key handed to an SAE. The handler zeroises Bytes once the
// response is written, so the service must not reuse them.
type Key struct {
	ID    string // UUID text
	Bytes []byte
}

// Status is the standard's Status object (key sizes in bits).
type Status = etsi014wire.Status

// ErrUnauthorized is returned by a KeyService to refuse the caller: the
// answer is 401 with no body (for dec_keys: the caller is not the slave SAE
// the keys were handed out for).
var ErrUnauthorized = errors.New("supply: SAE not authorised")

// Error is a refusal with the standard's Error body. Code is 400 (the
// request is wrong) or 503 (the KME cannot serve it now); any other code is
// answered as 503.
type Error struct {
	Code    int
	Message string
	Details []map[string]any
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// BadRequest is a 400 refusal.
func BadRequest(msg string, details ...map[string]any) *Error {
	return &Error{Code: http.StatusBadRequest, Message: msg, Details: details}
}

// Unavailable is a 503 refusal.
func Unavailable(msg string, details ...map[string]any) *Error {
	return &Error{Code: http.StatusServiceUnavailable, Message: msg, Details: details}
}

// Messages the standard names (ETSI GS QKD 014 v1.1.1, clause 6).
const (
	MsgSizeMultipleOf8      = etsi014wire.MsgSizeMultipleOf8
	MsgMandatoryUnsupported = etsi014wire.MsgMandatoryUnsupported
	MsgMandatoryUnmet       = etsi014wire.MsgMandatoryUnmet
	MsgKeysNotFound         = etsi014wire.MsgKeysNotFound
)

// Identity says where an SAE's ID comes from in its client certificate.
type Identity int

const (
	// IdentityURI takes the URI SAN "qrelay:sae:<id>", else the subject
	// CN (pki.PeerID with pki.SAE): a certificate naming a node or an
	// operator is refused.
	IdentityURI Identity = iota
	// IdentityCN takes the subject CN only, for PKIs that do not write
	// qrelay URI SANs; a certificate whose qrelay URI SAN names a node or
	// an operator is still refused.
	IdentityCN
)

// ParseIdentity reads the configuration words "uri" and "cn".
func ParseIdentity(s string) (Identity, error) {
	switch s {
	case "uri":
		return IdentityURI, nil
	case "cn":
		return IdentityCN, nil
	}
	return 0, fmt.Errorf("supply: SAE identity %q: want uri (the URI SAN qrelay:sae:<id>, else the CN) or cn (the CN only)", s)
}

func (i Identity) String() string {
	switch i {
	case IdentityURI:
		return "uri"
	case IdentityCN:
		return "cn"
	}
	return fmt.Sprintf("Identity(%d)", int(i))
}
