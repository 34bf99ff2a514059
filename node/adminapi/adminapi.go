// Package adminapi is a node's admin API: HTTPS with mutual TLS, JSON bodies,
// for operators (qrelayctl) and their scripts. The daemon implements Backend
// and mounts NewHandler on a listener configured with TLSConfig; Client is
// the other end.
//
// Routes:
//
//	GET  /v1/status              Status
//	GET  /v1/links               []Link
//	GET  /v1/routes              []Route
//	GET  /v1/adverts             []Advert (the link-state database)
//	GET  /v1/pools               []Pool
//	GET  /v1/flows               []Flow
//	GET  /v1/tunnels             []Tunnel (a Backend that is a Tunneler)
//	POST /v1/links/{peer}/state  {"state": "out_of_service"} → 204
//	POST /v1/relay               RelayRequest → RelayResult (a Backend that is a Relayer)
//	GET  /v1/pools/{remote}/digest  PoolDigest (a Backend that is a Relayer)
//	GET  /v1/audit?kind=&peer=&since=&limit=  []audit.Record, oldest first
//
// Only operator certificates (pki.Operator, URI SAN "qrelay:operator:<id>")
// may use it: a node's or an SAE's certificate is refused with 403. Errors
// are JSON {"message": "...", "details": ["..."]} with the status code that
// says what went wrong: 400 bad request body, 403 not an operator, 404
// unknown route or peer, 405 wrong method (with an Allow header), 500 the
// node failed.
//
// JSON names are snake_case; times are RFC 3339; durations are float seconds
// with an "_s" suffix, rates bytes per second ("_bps") or bits per second
// ("_bit_s"). Floats must be finite: JSON has no Inf or NaN, so a backend
// that puts one in a response makes it a 500.
package adminapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/qrelay/qrelay/internal/audit"
)

// Backend is what a node shows and lets operators change. The daemon
// implements it; methods are called concurrently, one call per request.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Links(ctx context.Context) ([]Link, error)
	Routes(ctx context.Context) ([]Route, error)
	Adverts(ctx context.Context) ([]Advert, error) // the link-state database
	Pools(ctx context.Context) ([]Pool, error)
	Flows(ctx context.Context) ([]Flow, error)
	// Audit returns the node's audit records q selects (see
	// audit.Log.Query; the handler checks q's fields first). An error
	// wrapping ErrBadRequest is a query the log refuses.
	Audit(ctx context.Context, q audit.Query) ([]audit.Record, error)
	// SetLinkState sets the component state of the link to peer; state is
	// one of States (the handler checks it first). It returns an error
	// wrapping ErrNotFound for a peer with no link, ErrBadRequest for a state
	// the link cannot take.
	SetLinkState(ctx context.Context, peer, state string) error
}

// Errors a Backend wraps to choose the status code; any other error is a
// 500. The error's text becomes the response's message, so it should say
// what was wrong (`no link to peer "node-x"`). On the client side, errors.Is
// matches them against a 404 or a 400 from the server.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
)

// Component states of a link, as SetLinkState takes them and Link.State
// shows them.
const (
	StateInService    = "in_service"
	StateOutOfService = "out_of_service"
	StateStandby      = "standby"
	StateReserved     = "reserved"
)

// States lists the component states in the order help text shows them.
var States = []string{StateInService, StateOutOfService, StateStandby, StateReserved}

// ValidState reports whether s is one of States.
func ValidState(s string) error {
	if slices.Contains(States, s) {
		return nil
	}
	return fmt.Errorf("unknown state %q: want one of %s", s, strings.Join(States, ", "))
}

// Status is the node at a glance: GET /v1/status.
type Status struct {
	Node      string       `json:"node"`
	Version   string       `json:"version"`
	Started   time.Time    `json:"started"`
	UptimeS   float64      `json:"uptime_s"`
	Links     int          `json:"links"`     // KM links configured
	LinksUp   int          `json:"links_up"`  // KM links connected
	Reachable int          `json:"reachable"` // nodes this node has a route to
	Routes    int          `json:"routes"`
	Relay     RelayStats   `json:"relay"`
	Control   ControlStats `json:"control"`
}

// RelayStats counts the relay engine's work since the node started.
type RelayStats struct {
	KeysDelivered   uint64 `json:"keys_delivered"`    // end-to-end keys into pools
	KeyBytesRelayed uint64 `json:"key_bytes_relayed"` // end-to-end key bytes sent or forwarded
	KeysLost        uint64 `json:"keys_lost"`
	FramesSent      uint64 `json:"frames_sent"`
	FramesReceived  uint64 `json:"frames_received"`
	FramesForwarded uint64 `json:"frames_forwarded"`
	BadTags         uint64 `json:"bad_tags"`  // frames whose one-time MAC failed
	Replays         uint64 `json:"replays"`   // frames at a pad position already used
	Malformed       uint64 `json:"malformed"` // frames that did not parse
	PadMACBytes     uint64 `json:"pad_mac_bytes"`
	PadBurnt        uint64 `json:"pad_burnt"`        // pad bytes consumed by refused frames
	PadWaits        uint64 `json:"pad_waits"`        // times a sender waited for pad
	Pending         int    `json:"pending"`          // frames sent, not yet acknowledged
	DiscardsPending int    `json:"discards_pending"` // discards of lost keys not yet confirmed
}

// ControlStats counts the control plane's work since the node started.
type ControlStats struct {
	AdvertsOriginated uint64    `json:"adverts_originated"`
	AdvertsSent       uint64    `json:"adverts_sent"`
	AdvertsReceived   uint64    `json:"adverts_received"`
	SPFRuns           uint64    `json:"spf_runs"`
	Reroutes          uint64    `json:"reroutes"`
	LastChange        time.Time `json:"last_change,omitzero"` // of the routing table
}

// Link is one KM link as its node sees it: GET /v1/links.
type Link struct {
	Peer      string    `json:"peer"`
	Address   string    `json:"address"`
	State     string    `json:"state"` // component state: one of States
	Up        bool      `json:"up"`    // the QUIC connection is established
	Master    bool      `json:"master"`
	Since     time.Time `json:"since,omitzero"` // of the last change of Up
	LastError string    `json:"last_error,omitempty"`
	Usable    bool      `json:"usable"` // path computation may use it
	Cost      float64   `json:"cost"`
	Excluded  string    `json:"excluded,omitempty"` // why it is not usable
	Tx        Pad       `json:"tx"`
	Rx        Pad       `json:"rx"`
	QKD       QKD       `json:"qkd"`
}

// Pad is one direction's pad ring. Stock and Capacity are bytes; the rates
// are bytes per second.
type Pad struct {
	Stock      uint64  `json:"stock"`
	Capacity   uint64  `json:"capacity"`
	FillBps    float64 `json:"fill_bps"`
	ConsumeBps float64 `json:"consume_bps"`
}

// QKD is the QKD link under a KM link.
type QKD struct {
	Kind           string  `json:"kind"` // "sim", "etsi014", ...
	Simulated      bool    `json:"simulated"`
	Up             bool    `json:"up"`
	Reason         string  `json:"reason,omitempty"` // why it is down
	QBER           float64 `json:"qber"`
	SecretRateBitS float64 `json:"secret_rate_bit_s"`
}

// Route is the route to one destination node: GET /v1/routes.
type Route struct {
	Dst     string   `json:"dst"`
	NextHop string   `json:"next_hop"`
	Path    []string `json:"path"` // from this node to Dst, both included
	Cost    float64  `json:"cost"`
	Static  bool     `json:"static"` // from config, not computed
}

// Advert is one node's latest link-state advert: GET /v1/adverts.
type Advert struct {
	Origin string       `json:"origin"`
	Seq    uint64       `json:"seq"`
	AgeS   float64      `json:"age_s"`
	Links  []AdvertLink `json:"links"`
}

// AdvertLink is one link of an advert, as its origin saw it.
type AdvertLink struct {
	Peer    string  `json:"peer"`
	Up      bool    `json:"up"`
	Usable  bool    `json:"usable"`
	Cost    float64 `json:"cost"`
	TxStock uint64  `json:"tx_stock"` // bytes
	RxStock uint64  `json:"rx_stock"` // bytes
	QBER    float64 `json:"qber"`
	State   string  `json:"state"`
}

// Pool is the end-to-end key pool for one remote node: GET /v1/pools.
// Stock, Capacity and the watermarks are keys; Added, Taken and Expired
// count keys since the node started.
type Pool struct {
	Remote string `json:"remote"`
	// Role is "out" (keys this node relayed; its SAEs take them as
	// masters, and a background relay keeps it between the watermarks)
	// or "in" (keys the remote relayed, handed to the slaves it names).
	Role     string `json:"role"`
	Stock    int    `json:"stock"`
	Capacity int    `json:"capacity"`
	Low      int    `json:"low"`
	High     int    `json:"high"`
	Added    uint64 `json:"added"`
	Taken    uint64 `json:"taken"`
	Expired  uint64 `json:"expired"`
}

// Flow is one relay flow this node sources: GET /v1/flows.
type Flow struct {
	Dst     string `json:"dst"`
	ID      uint64 `json:"id"`
	NextSeq uint64 `json:"next_seq"`
	Pending int    `json:"pending"` // keys sent, not yet acknowledged
}

// Tunnel is one WireGuard tunnel whose preshared key the node rotates from
// a key stream it shares with the node at the other end: GET /v1/tunnels
// (a Backend that is a Tunneler).
type Tunnel struct {
	Interface    string  `json:"interface"` // the local WireGuard interface
	Name         string  `json:"name"`      // the tunnel's and its key stream's, the same at both nodes
	Peer         string  `json:"peer"`      // the peer's WireGuard public key, base64
	Remote       string  `json:"remote"`    // the node serving the other end
	IntervalS    float64 `json:"interval_s"`
	OnMissingKey string  `json:"on_missing_key"` // "fail_closed" or "keep_current"
	// Drives is true on the side that starts a handshake after each
	// install (one side of a tunnel: the stream's owner).
	Drives bool `json:"drives"`
	// Epoch is that of the PSK installed last (a stream key, or a random
	// one if FailedClosed); epoch n starts n × interval after the Unix
	// epoch.
	Epoch         uint64    `json:"epoch"`
	LastRotation  time.Time `json:"last_rotation,omitzero"`  // when a stream key was last installed
	LastHandshake time.Time `json:"last_handshake,omitzero"` // as last read from the interface
	Rotations     uint64    `json:"rotations"`               // stream keys installed since the node started
	Failures      uint64    `json:"failures"`                // epochs without their key, failed writes
	LastError     string    `json:"last_error,omitempty"`    // the last failure, even if rotations succeeded since
	// FailedClosed is true while the PSK installed is a random one: no new
	// session until a key comes.
	FailedClosed bool         `json:"failed_closed"`
	Stream       TunnelStream `json:"stream"`
}

// TunnelStream counts the work of a tunnel's key stream since the node
// started; Held is the keys it holds now.
type TunnelStream struct {
	Held     int    `json:"held"`     // keys held for indices not yet released
	Served   uint64 `json:"served"`   // keys handed to the rotator
	Released uint64 `json:"released"` // keys zeroised once no longer needed
	Refused  uint64 `json:"refused"`  // indices the other node refused, or this one could not take
}

// Tunneler is what a node that rotates WireGuard preshared keys implements
// on top of Backend; a Backend that is not one answers GET /v1/tunnels
// with a 404.
type Tunneler interface {
	// Tunnels reports the node's tunnels, by interface and name.
	Tunnels(ctx context.Context) ([]Tunnel, error)
}

// StateRequest is the body of POST /v1/links/{peer}/state.
type StateRequest struct {
	State string `json:"state"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}
