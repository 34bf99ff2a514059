package lab

import (
	"strings"
	"time"

	"github.com/qrelay/qrelay/config"
	"go.yaml.in/yaml/v3"
)

// Config is a node's config as a lab writes it: the tree of config.Config
// with the same YAML names, each field left out when zero so that
// config's defaults apply (config.Config itself writes every zero, which
// its decoder refuses, and redacts seeds). TestConfigCoversConfig keeps
// the two trees in step.
type Config struct {
	Node      Node              `yaml:"node"`
	TLS       TLS               `yaml:"tls"`
	KM        KM                `yaml:"km"`
	Links     []Link            `yaml:"links,omitempty"`
	Routes    []Route           `yaml:"routes,omitempty"`
	Storage   Storage           `yaml:"storage,omitempty"`
	Pools     Pools             `yaml:"pools,omitempty"`
	Control   Control           `yaml:"control,omitempty"`
	API       API               `yaml:"api,omitempty"`
	SAEs      []SAE             `yaml:"saes,omitempty"`
	WireGuard []WireGuardTunnel `yaml:"wireguard,omitempty"`
	Audit     Audit             `yaml:"audit,omitempty"`
}

// Node is node:.
type Node struct {
	ID  string `yaml:"id"`
	Log Log    `yaml:"log,omitempty"`
}

// Log is node.log.
type Log struct {
	Level  config.LogLevel  `yaml:"level,omitempty"`
	Format config.LogFormat `yaml:"format,omitempty"`
}

// TLS is tls:, paths relative to the lab directory.
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// KM is km:.
type KM struct {
	Listen            string        `yaml:"listen"`
	Streams           int           `yaml:"streams,omitempty"`
	Keepalive         time.Duration `yaml:"keepalive,omitempty"`
	IdleTimeout       time.Duration `yaml:"idle_timeout,omitempty"`
	CompletionTimeout time.Duration `yaml:"completion_timeout,omitempty"`
}

// Link is one entry of links:.
type Link struct {
	Peer        string           `yaml:"peer"`
	Address     string           `yaml:"address,omitempty"`
	PadCapacity config.Size      `yaml:"pad_capacity,omitempty"`
	MinStock    config.Size      `yaml:"min_stock,omitempty"`
	MaxQBER     float64          `yaml:"max_qber,omitempty"`
	State       config.LinkState `yaml:"state,omitempty"`
	Source      Source           `yaml:"source"`
}

// Source is a link's source: exactly one field set.
type Source struct {
	Simulator *Simulator `yaml:"simulator,omitempty"`
	ETSI014   *ETSI014   `yaml:"etsi014,omitempty"`
}

// Simulator is a simulated QKD link; Seed is hex, the same at both ends
// (see Seed and RandomSeed). Rate is always written: its zero is
// "unlimited".
type Simulator struct {
	Seed      string      `yaml:"seed"`
	Rate      config.Rate `yaml:"rate"`
	BlockSize config.Size `yaml:"block_size,omitempty"`
	QBER      float64     `yaml:"qber,omitempty"`
}

// ETSI014 is a link fed by a KME over ETSI GS QKD 014.
type ETSI014 struct {
	URL        string        `yaml:"url"`
	SAE        string        `yaml:"sae"`
	PeerSAE    string        `yaml:"peer_sae"`
	Cert       string        `yaml:"cert,omitempty"`
	Key        string        `yaml:"key,omitempty"`
	CA         string        `yaml:"ca,omitempty"`
	KeySize    int           `yaml:"key_size,omitempty"`
	PerRequest int           `yaml:"per_request,omitempty"`
	Timeout    time.Duration `yaml:"timeout,omitempty"`
}

// Route is one entry of routes:.
type Route struct {
	Dst string `yaml:"dst"`
	Via string `yaml:"via"`
}

// Storage is storage:.
type Storage struct {
	Mode config.StorageMode `yaml:"mode,omitempty"`
	Dir  string             `yaml:"dir,omitempty"`
}

// Pools is pools:.
type Pools struct {
	Slots     int           `yaml:"slots,omitempty"`
	SlotSize  int           `yaml:"slot_size,omitempty"`
	Low       int           `yaml:"low,omitempty"`
	High      int           `yaml:"high,omitempty"`
	TTL       time.Duration `yaml:"ttl,omitempty"`
	OrphanTTL time.Duration `yaml:"orphan_ttl,omitempty"`
}

// Control is control:.
type Control struct {
	Refresh  time.Duration `yaml:"refresh,omitempty"`
	MaxAge   time.Duration `yaml:"max_age,omitempty"`
	SPFDelay time.Duration `yaml:"spf_delay,omitempty"`
}

// API is api:; a listener with no address is left out (off).
type API struct {
	Admin   Admin      `yaml:"admin,omitempty"`
	Metrics Metrics    `yaml:"metrics,omitempty"`
	ETSI014 ETSI014API `yaml:"etsi014,omitempty"`
}

// ETSI014API is api.etsi014.
type ETSI014API struct {
	Listen            string        `yaml:"listen,omitempty"`
	SAEIdentity       string        `yaml:"sae_identity,omitempty"`
	KeySize           int           `yaml:"key_size,omitempty"`
	MaxKeysPerRequest int           `yaml:"max_keys_per_request,omitempty"`
	AssignTimeout     time.Duration `yaml:"assign_timeout,omitempty"`
}

// Admin is api.admin.
type Admin struct {
	Listen string `yaml:"listen,omitempty"`
}

// Metrics is api.metrics.
type Metrics struct {
	Listen string `yaml:"listen,omitempty"`
	PProf  bool   `yaml:"pprof,omitempty"`
}

// SAE is one entry of saes:.
type SAE struct {
	ID            string  `yaml:"id"`
	Node          string  `yaml:"node,omitempty"`
	KeysPerSecond float64 `yaml:"keys_per_second,omitempty"`
	Burst         int     `yaml:"burst,omitempty"`
}

// WireGuardTunnel is one entry of wireguard:.
type WireGuardTunnel struct {
	Name          string        `yaml:"name"`
	RemoteNode    string        `yaml:"remote_node"`
	Interface     string        `yaml:"interface"`
	PeerPublicKey string        `yaml:"peer_public_key"`
	Interval      time.Duration `yaml:"interval,omitempty"`
	OnMissingKey  string        `yaml:"on_missing_key,omitempty"`
}

// Audit is audit:.
type Audit struct {
	Window    int           `yaml:"window,omitempty"`
	Retention time.Duration `yaml:"retention,omitempty"`
}

// Marshal is c in YAML, headed by comment (one "# " line per line of it,
// none if it is empty).
func (c *Config) Marshal(comment string) ([]byte, error) {
	body, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if comment != "" {
		for _, l := range strings.Split(strings.TrimRight(comment, "\n"), "\n") {
			b.WriteString(strings.TrimRight("# "+l, " ") + "\n")
		}
	}
	b.Write(body)
	return []byte(b.String()), nil
}

// SAE returns the entry of saes: for id, or nil.
func (c *Config) SAE(id string) *SAE {
	for i := range c.SAEs {
		if c.SAEs[i].ID == id {
			return &c.SAEs[i]
		}
	}
	return nil
}
