// Package config reads the qrelayd node configuration: one YAML file per
// node, validated strictly at start (DESIGN.md, "Running").
//
// Parse and Load run three steps:
//
//  1. Decode walks the YAML node tree against the Config structs. Unknown
//     keys, duplicate keys, a list where a mapping is wanted, anchors and
//     aliases, and values that do not parse (durations, sizes, rates, seeds,
//     numbers) are refused here.
//  2. Defaults fills every field the file left out (see the Default*
//     constants). A value the file gives is never replaced, so "streams: 0"
//     is refused rather than quietly made 2.
//  3. Validate checks ranges, IDs, addresses and the rules between fields
//     (idle_timeout > keepalive, routes via a configured peer, ...), and,
//     unless ParseOptions.SkipFileChecks is set, that each certificate and
//     key file exists and parses.
//
// Every problem found is returned at once, one per line, as a
// *ValidationError whose entries name the file, line, field path and what
// to do, for example
//
//	node.yaml:14: links[1].source.simulator.rate: "10 Mbps" is not a rate; write it like ...
//
// Simulator seeds are key material: they never appear in errors, in
// Config.String or in any fmt verb (see Seed).
package config

import (
	"bytes"
	_ "embed"
	"math"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is one node's configuration. Field comments give the YAML name;
// the commented example (Example) documents each field.
type Config struct {
	Node    Node    `yaml:"node"`
	TLS     TLS     `yaml:"tls"`
	KM      KM      `yaml:"km"`
	Links   []Link  `yaml:"links"`
	Routes  []Route `yaml:"routes"`
	Storage Storage `yaml:"storage"`
	Pools   Pools   `yaml:"pools"`
	Control Control `yaml:"control"`
	API     API     `yaml:"api"`
	SAEs    []SAE   `yaml:"saes"`
	// WireGuard lists the tunnels whose preshared keys this node rotates.
	WireGuard []WireGuardTunnel `yaml:"wireguard"`
	Audit     Audit             `yaml:"audit"`

	// Filled by decode: the paths the file gave (so Defaults leaves them
	// alone even when zero) and the line of each path.
	set   map[string]bool
	lines map[string]int
	file  string
}

// Node names this node and sets up its logging.
type Node struct {
	ID  string `yaml:"id"`
	Log Log    `yaml:"log"`
}

// Log configures log/slog output.
type Log struct {
	Level  LogLevel  `yaml:"level"`
	Format LogFormat `yaml:"format"`
}

// LogLevel is debug, info, warn or error.
type LogLevel string

// Log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat is text or json.
type LogFormat string

// Log formats.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// TLS is this node's identity, used for KM links and the admin API: PEM
// files, resolved against the config file's directory.
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// KM configures the QUIC listener and sessions between key managers.
type KM struct {
	Listen            string        `yaml:"listen"`
	Streams           int           `yaml:"streams"`
	Keepalive         time.Duration `yaml:"keepalive"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	CompletionTimeout time.Duration `yaml:"completion_timeout"`
}

// Link is a KM link to a neighbouring node and the QKD source that fills
// its pads.
type Link struct {
	Peer        string    `yaml:"peer"`
	Address     string    `yaml:"address"`
	PadCapacity Size      `yaml:"pad_capacity"`
	MinStock    Size      `yaml:"min_stock"`
	MaxQBER     float64   `yaml:"max_qber"`
	State       LinkState `yaml:"state"`
	Source      Source    `yaml:"source"`
}

// LinkState is a link's administrative state.
type LinkState string

// Link states.
const (
	InService    LinkState = "in_service"
	OutOfService LinkState = "out_of_service"
	Standby      LinkState = "standby"
	Reserved     LinkState = "reserved"
)

// Source is where a link's key comes from: exactly one field is set.
type Source struct {
	Simulator *Simulator `yaml:"simulator,omitempty"`
	ETSI014   *ETSI014   `yaml:"etsi014,omitempty"`
}

// Simulator is a simulated QKD link. Both ends must have the same Seed.
type Simulator struct {
	Seed      Seed    `yaml:"seed"`
	Rate      Rate    `yaml:"rate"`
	BlockSize Size    `yaml:"block_size"`
	QBER      float64 `yaml:"qber"`
}

// ETSI014 takes key from a QKD device's KME over ETSI GS QKD 014.
type ETSI014 struct {
	URL        string        `yaml:"url"`
	SAE        string        `yaml:"sae"`      // this node's SAE ID at its KME (its client certificate says so too)
	PeerSAE    string        `yaml:"peer_sae"` // the peer node's SAE ID at the peer's KME: enc_keys and dec_keys name it
	Cert       string        `yaml:"cert"`
	Key        string        `yaml:"key"`
	CA         string        `yaml:"ca"`
	KeySize    int           `yaml:"key_size"`
	PerRequest int           `yaml:"per_request"`
	Timeout    time.Duration `yaml:"timeout"`
}

// Route is a static route; it overrides the computed route to Dst.
type Route struct {
	Dst string `yaml:"dst"`
	Via string `yaml:"via"`
}

// Storage says where pads and pools live.
type Storage struct {
	Mode StorageMode `yaml:"mode"`
	Dir  string      `yaml:"dir"`
}

// StorageMode is memory or durable.
type StorageMode string

// Storage modes.
const (
	Memory  StorageMode = "memory"
	Durable StorageMode = "durable"
)

// Pools sizes the per-remote-node key pools. Low and High are watermarks
// counted in keys.
type Pools struct {
	Slots    int           `yaml:"slots"`
	SlotSize int           `yaml:"slot_size"`
	Low      int           `yaml:"low"`
	High     int           `yaml:"high"`
	TTL      time.Duration `yaml:"ttl"`
	// OrphanTTL is how long an in pool keeps, after a restart of the
	// node that sourced them, the keys that node assigned but that this
	// node's slave SAEs have not fetched (supply/pool_sync.go): they may
	// have gone to a master SAE, or be reservations the restart lost, and
	// nothing tells the two apart. 0 keeps them until pools.ttl.
	OrphanTTL time.Duration `yaml:"orphan_ttl"`
}

// Control times the link-state routing protocol.
type Control struct {
	Refresh  time.Duration `yaml:"refresh"`
	MaxAge   time.Duration `yaml:"max_age"`
	SPFDelay time.Duration `yaml:"spf_delay"`
}

// API configures the admin and metrics listeners; an empty Listen turns
// the listener off.
type API struct {
	Admin   Admin      `yaml:"admin"`
	Metrics Metrics    `yaml:"metrics"`
	ETSI014 ETSI014API `yaml:"etsi014"`
}

// ETSI014API is the ETSI GS QKD 014 key delivery API this node serves to
// its SAEs: HTTPS with mutual TLS, SAE certificates signed by the tls: CA.
type ETSI014API struct {
	Listen string `yaml:"listen"`
	// SAEIdentity says where an SAE's ID comes from in its client
	// certificate: "uri" (the URI SAN qrelay:sae:<id>, else the CN) or
	// "cn" (the CN only).
	SAEIdentity string `yaml:"sae_identity"`
	// KeySize is the size of the keys served, in bits (a multiple of 8,
	// at most pools.slot_size × 8). Status reports it as key_size,
	// min_key_size and max_key_size.
	KeySize           int `yaml:"key_size"`
	MaxKeysPerRequest int `yaml:"max_keys_per_request"`
	// AssignTimeout bounds how long enc_keys waits for the slave's node to
	// acknowledge the assignment before answering 503.
	AssignTimeout time.Duration `yaml:"assign_timeout"`
}

// Admin is the HTTPS admin API, mutual TLS with the tls: CA.
type Admin struct {
	Listen string `yaml:"listen"`
}

// Metrics is the plain-HTTP /metrics listener.
type Metrics struct {
	Listen string `yaml:"listen"`
	PProf  bool   `yaml:"pprof"`
}

// SAE is an application: one this node serves, or one a remote node
// serves that this node's SAEs exchange keys with.
type SAE struct {
	ID string `yaml:"id"`
	// Node is the node that serves the SAE (default: this node).
	Node string `yaml:"node"`
	// KeysPerSecond limits the keys a local SAE may take, with Burst
	// keys at once (default: KeysPerSecond rounded up, at least the
	// largest request); 0 means no limit.
	KeysPerSecond float64 `yaml:"keys_per_second"`
	Burst         int     `yaml:"burst"`
}

// WireGuardTunnel is one WireGuard peer whose preshared key this node
// rotates from a key stream shared with the node at the other end of the
// tunnel, which lists the same tunnel name.
type WireGuardTunnel struct {
	// Name names the tunnel and its key stream; the same at both nodes.
	Name string `yaml:"name"`
	// RemoteNode is the node that serves the other end of the tunnel.
	RemoteNode string `yaml:"remote_node"`
	// Interface is the local WireGuard interface (the kernel's, or a
	// wireguard-go device's UAPI socket), set through wgctrl.
	Interface string `yaml:"interface"`
	// PeerPublicKey is the other end's WireGuard public key (base64).
	PeerPublicKey string `yaml:"peer_public_key"`
	// Interval is the rotation period; both ends must give the same.
	Interval time.Duration `yaml:"interval"`
	// OnMissingKey says what happens when an epoch's key is not there in
	// time: "fail_closed" (a random PSK: no new session without a QKD
	// key) or "keep_current" (keep the last PSK, logged as an error).
	OnMissingKey string `yaml:"on_missing_key"`
}

// Audit sizes the node's audit record: pad ranges appended, used and
// burnt per link, and key IDs handed to SAEs (docs/audit.md).
type Audit struct {
	// Window is, with storage mode memory, the most records kept in
	// memory (the oldest go first).
	Window int `yaml:"window"`
	// Retention is, with storage mode durable, how long records are kept
	// in the metadata store.
	Retention time.Duration `yaml:"retention"`
}

// Limits of audit:.
const (
	MaxAuditWindow     = 1 << 24 // records of about 100 bytes each
	MinAuditRetention  = time.Minute
	DefaultAuditWindow = 1 << 20
	// DefaultAuditRetention is a week.
	DefaultAuditRetention = 7 * 24 * time.Hour
)

// OnMissingKey values.
const (
	FailClosed  = "fail_closed"
	KeepCurrent = "keep_current"
)

// Defaults for fields the file leaves out.
const (
	DefaultLogLevel  = LogInfo
	DefaultLogFormat = LogText
	DefaultStreams   = 2
	// A silent link (a fibre cut, a dead node) is declared down after
	// the idle timeout; routes move within milliseconds after that. 1.2 s
	// keeps relay restoration under 2 s, and four keepalives per timeout
	// ride out a lost packet or two.
	DefaultKeepalive         = 300 * time.Millisecond
	DefaultIdleTimeout       = 1200 * time.Millisecond
	DefaultCompletionTimeout = 10 * time.Second
	DefaultPadCapacity       = 64 * MiB
	DefaultMinStock          = 256 * KiB
	DefaultMaxQBER           = 0.11
	DefaultState             = InService
	DefaultBlockSize         = 4 * KiB
	DefaultSimulatorQBER     = 0.02
	DefaultKeySize           = 256 // bits
	DefaultPerRequest        = 64
	DefaultETSI014Timeout    = 5 * time.Second
	DefaultStorageMode       = Memory
	DefaultSlots             = 65536
	DefaultSlotSize          = 32                // bytes
	DefaultRotationInterval  = 120 * time.Second // WireGuard's REKEY_AFTER_TIME
	DefaultRefresh           = 30 * time.Second
	DefaultMaxAge            = 2 * time.Minute
	DefaultSPFDelay          = 10 * time.Millisecond
	DefaultSAEIdentity       = "uri"
	DefaultETSI014KeySize    = 256 // bits
	DefaultMaxKeysPerRequest = 128
	DefaultAssignTimeout     = 2 * time.Second
	DefaultOrphanTTL         = 10 * time.Minute
	// Pools.Low defaults to Slots/4 and Pools.High to Slots/2.
)

// ParseOptions changes how a config is read.
type ParseOptions struct {
	// BaseDir is the directory relative file paths resolve against. Load
	// sets it to the config file's directory; Parse takes it as given ("" leaves
	// paths relative to the working directory).
	BaseDir string
	// Filename prefixes each error ("node.yaml:14: ..."). Load sets it to
	// the path it was given.
	Filename string
	// SkipFileChecks validates the structure only: certificate and key
	// files need not exist. For tests, the example config and "qrelayd
	// -check" on a machine without the node's files; a daemon about to start
	// must not set it.
	SkipFileChecks bool
}

// Load reads and validates the config file at path, resolving relative
// file paths against its directory.
func Load(path string) (*Config, error) { return ParseOptions{}.Load(path) }

// Parse validates a config held in memory, resolving relative file paths
// against baseDir.
func Parse(data []byte, baseDir string) (*Config, error) {
	return ParseOptions{BaseDir: baseDir}.Parse(data)
}

// Load reads the config file at path. BaseDir and Filename default to the
// file's directory and path.
func (o ParseOptions) Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if o.BaseDir == "" {
		o.BaseDir = filepath.Dir(path)
	}
	if o.Filename == "" {
		o.Filename = path
	}
	return o.Parse(data)
}

// Parse decodes data, applies Defaults and validates the result. On error
// it returns a *ValidationError listing every problem.
func (o ParseOptions) Parse(data []byte) (*Config, error) {
	ck := newChecker(o.Filename)
	c := &Config{set: map[string]bool{}, lines: ck.lines, file: o.Filename}
	if !decodeFile(ck, data, c, o.BaseDir) {
		return nil, ck.err()
	}
	c.Defaults()
	c.validate(ck, o)
	if err := ck.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks c as Parse does after Defaults, for a Config built or
// changed in Go. Only SkipFileChecks is read from opts.
func (c *Config) Validate(opts ParseOptions) error {
	ck := newChecker(c.file)
	if c.lines != nil {
		ck.lines = c.lines
	}
	c.validate(ck, opts)
	return ck.err()
}

// Defaults fills the fields the file left out with the Default* values.
// A field the file gave keeps its value even when it is zero. On a Config
// built in Go, a zero field counts as left out. Defaults is idempotent.
func (c *Config) Defaults() {
	def(c, "node.log.level", &c.Node.Log.Level, DefaultLogLevel)
	def(c, "node.log.format", &c.Node.Log.Format, DefaultLogFormat)
	def(c, "km.streams", &c.KM.Streams, DefaultStreams)
	def(c, "km.keepalive", &c.KM.Keepalive, DefaultKeepalive)
	def(c, "km.idle_timeout", &c.KM.IdleTimeout, DefaultIdleTimeout)
	def(c, "km.completion_timeout", &c.KM.CompletionTimeout, DefaultCompletionTimeout)
	for i := range c.Links {
		l := &c.Links[i]
		p := index("links", i)
		def(c, p+".pad_capacity", &l.PadCapacity, DefaultPadCapacity)
		def(c, p+".min_stock", &l.MinStock, DefaultMinStock)
		def(c, p+".max_qber", &l.MaxQBER, DefaultMaxQBER)
		def(c, p+".state", &l.State, DefaultState)
		if s := l.Source.Simulator; s != nil {
			p := p + ".source.simulator"
			def(c, p+".block_size", &s.BlockSize, DefaultBlockSize)
			def(c, p+".qber", &s.QBER, DefaultSimulatorQBER)
		}
		if e := l.Source.ETSI014; e != nil {
			p := p + ".source.etsi014"
			def(c, p+".key_size", &e.KeySize, DefaultKeySize)
			def(c, p+".per_request", &e.PerRequest, DefaultPerRequest)
			def(c, p+".timeout", &e.Timeout, DefaultETSI014Timeout)
		}
	}
	def(c, "storage.mode", &c.Storage.Mode, DefaultStorageMode)
	def(c, "pools.slots", &c.Pools.Slots, DefaultSlots)
	def(c, "pools.slot_size", &c.Pools.SlotSize, DefaultSlotSize)
	def(c, "pools.low", &c.Pools.Low, c.Pools.Slots/4)
	// Half the slots: a node's in pool from a remote holds the keys the
	// remote's out pool has plus those assigned and not yet fetched, so
	// the out pool must leave room for them.
	def(c, "pools.high", &c.Pools.High, c.Pools.Slots/2)
	def(c, "pools.orphan_ttl", &c.Pools.OrphanTTL, DefaultOrphanTTL)
	def(c, "control.refresh", &c.Control.Refresh, DefaultRefresh)
	def(c, "control.max_age", &c.Control.MaxAge, DefaultMaxAge)
	def(c, "control.spf_delay", &c.Control.SPFDelay, DefaultSPFDelay)
	if c.API.ETSI014.Listen != "" {
		e := &c.API.ETSI014
		def(c, "api.etsi014.sae_identity", &e.SAEIdentity, DefaultSAEIdentity)
		def(c, "api.etsi014.key_size", &e.KeySize, DefaultETSI014KeySize)
		def(c, "api.etsi014.max_keys_per_request", &e.MaxKeysPerRequest, DefaultMaxKeysPerRequest)
		def(c, "api.etsi014.assign_timeout", &e.AssignTimeout, DefaultAssignTimeout)
	}
	for i := range c.WireGuard {
		w := &c.WireGuard[i]
		p := index("wireguard", i)
		def(c, p+".interval", &w.Interval, DefaultRotationInterval)
		def(c, p+".on_missing_key", &w.OnMissingKey, FailClosed)
	}
	def(c, "audit.window", &c.Audit.Window, DefaultAuditWindow)
	def(c, "audit.retention", &c.Audit.Retention, DefaultAuditRetention)
	for i := range c.SAEs {
		s := &c.SAEs[i]
		p := index("saes", i)
		def(c, p+".node", &s.Node, c.Node.ID)
		if s.KeysPerSecond > 0 {
			def(c, p+".burst", &s.Burst, max(int(math.Ceil(s.KeysPerSecond)), c.API.ETSI014.MaxKeysPerRequest))
		}
	}
}

// def sets *p to v if the file did not give path (or, for a Config built
// in Go, if *p is zero).
func def[T comparable](c *Config, path string, p *T, v T) {
	var zero T
	if c.set == nil {
		if *p == zero {
			*p = v
		}
		return
	}
	if !c.set[path] {
		*p = v
	}
}

// Dials reports whether this node opens the KM link to peer: the node with
// the lower ID dials, so only it needs the peer's address.
func (c *Config) Dials(peer string) bool { return c.Node.ID < peer }

// Redacted returns c as YAML with every simulator seed replaced by
// "<redacted>", for logs and "qrelayd -check".
func (c *Config) Redacted() string {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return "config: " + err.Error()
	}
	enc.Close()
	return b.String()
}

// String is Redacted.
func (c *Config) String() string { return c.Redacted() }

//go:embed example.yaml
var example []byte

// Example returns a commented example config that documents every field.
// Its file paths are placeholders, so it validates with SkipFileChecks.
func Example() []byte { return bytes.Clone(example) }
