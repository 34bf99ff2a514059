package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/internal/pki"
)

const testSeed = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// base is a minimal valid config, 8 lines long; cases append to it.
const wgTunnel = "wireguard:\n  - name: t1\n    remote_node: b\n    interface: wg0\n    peer_public_key: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n"

const base = `node:
  id: a
tls:
  ca: ca.pem
  cert: a.pem
  key: a.key
km:
  listen: 127.0.0.1:7001
`

// link is a valid link to b, lines 9 to 15 after base.
const link = `links:
  - peer: b
    address: 127.0.0.1:7002
    source:
      simulator:
        seed: "` + testSeed + `"
        rate: 10Mbit/s
`

var structural = ParseOptions{SkipFileChecks: true, Filename: "node.yaml"}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		path string // the field the error must name
		line int    // and its line
		msg  string // a substring of the message
	}{
		{"unknown top-level key", base + "colour: blue\n", "colour", 9, `unknown field "colour"`},
		{"unknown key suggests", base + "kms: {}\n", "kms", 9, `did you mean "km"?`},
		{"unknown nested key", base + link + `  - peer: c
    source:
      simulator:
        sedd: "` + testSeed + `"
        rate: 1Mbit/s
`, "links[1].source.simulator.sedd", 19, `unknown field "sedd"; did you mean "seed"?`},
		{"duplicate key", "node:\n  id: a\n  id: b\n" + base[len("node:\n  id: a\n"):], "node.id", 3, "given twice (first at line 2)"},
		{"duplicate section", base + "km:\n  listen: 127.0.0.1:7002\n", "km", 9, "given twice (first at line 7)"},
		{"list where mapping wanted", "node:\n  - id: a\n" + base[len("node:\n  id: a\n"):], "node", 1, "want a mapping (key: value lines), got a list"},
		{"scalar where mapping wanted", base + "pools: big\n", "pools", 9, "want a mapping (key: value lines), got a single value"},
		{"mapping where list wanted", base + "links:\n  peer: b\n", "links", 9, "want a list (lines starting with \"- \"), got a mapping"},
		{"list where number wanted", base + "pools:\n  slots: [1, 2]\n", "pools.slots", 10, "want a whole number, got a list"},
		{"not a number", base + "pools:\n  slots: lots\n", "pools.slots", 10, `"lots" is not a whole number`},
		{"missing node id", "node:\n  log: {level: debug}\n" + base[len("node:\n  id: a\n"):], "node.id", 1, "required: this node's ID"},
		{"missing km section", base[:strings.Index(base, "km:")], "km.listen", 0, "required: the UDP host:port"},
		{"missing tls cert", strings.Replace(base, "  cert: a.pem\n", "", 1), "tls.cert", 3, "required: this node's PEM certificate"},
		{"duration without unit", base + "  keepalive: 5\n", "km.keepalive", 9, `"5" has no unit; write it like "5s"`},
		{"bad duration", base + "  idle_timeout: soon\n", "km.idle_timeout", 9, `"soon" is not a duration`},
		{"negative duration", base + "pools:\n  ttl: -1s\n", "pools.ttl", 10, "is negative"},
		{"negative orphan ttl", base + "pools:\n  orphan_ttl: -5m\n", "pools.orphan_ttl", 10, `"-5m" is negative`},
		{"explicit zero is not defaulted", base + "  streams: 0\n", "km.streams", 9, "0 is out of range; use 1 to 16"},
		{"too many streams", base + "  streams: 17\n", "km.streams", 9, "17 is out of range"},
		{"idle timeout below keepalive", base + "  keepalive: 2s\n  idle_timeout: 2s\n", "km.idle_timeout", 10, "must exceed km.keepalive (2s)"},
		{"idle timeout below default keepalive", base + "  idle_timeout: 200ms\n", "km.idle_timeout", 9, "must exceed km.keepalive (300ms)"},
		{"bad listen", strings.Replace(base, "127.0.0.1:7001", "127.0.0.1", 1), "km.listen", 8, "is not host:port"},
		{"decimal size suffix", base + link + "    pad_capacity: 64MB\n", "links[0].pad_capacity", 16, "decimal suffixes such as MB are not accepted"},
		{"size with a space", base + link + "    min_stock: 256 KiB\n", "links[0].min_stock", 16, `"256 KiB" is not a size`},
		{"capacity not a power of two", base + link + "    pad_capacity: 96MiB\n", "links[0].pad_capacity", 16, `"96MiB" is not a power of two`},
		{"capacity below 1MiB", base + link + "    pad_capacity: 512KiB\n", "links[0].pad_capacity", 16, "a multiple of 1MiB"},
		{"min stock not below capacity", base + link + "    pad_capacity: 1MiB\n    min_stock: 1MiB\n", "links[0].min_stock", 17, "must be less than 80% of pad_capacity (1MiB)"},
		{"min stock leaves no room to refill", base + link + "    pad_capacity: 1MiB\n    min_stock: 820KiB\n", "links[0].min_stock", 17, "must be less than 80% of pad_capacity (1MiB)"},
		{"max qber too high", base + link + "    max_qber: 0.5\n", "links[0].max_qber", 16, "0.5 is out of range"},
		{"bad rate", base + strings.Replace(link, "10Mbit/s", `"10 Mbps"`, 1), "links[0].source.simulator.rate", 15, `"10 Mbps" is not a rate; write it like`},
		{"zero rate", base + strings.Replace(link, "10Mbit/s", "0Mbit/s", 1), "links[0].source.simulator.rate", 15, `write a positive rate, or "unlimited"`},
		{"missing rate", base + strings.Replace(link, "        rate: 10Mbit/s\n", "", 1), "links[0].source.simulator.rate", 13, "required: the simulated secret key rate"},
		{"link to self", base + strings.Replace(link, "peer: b", "peer: a", 1), "links[0].peer", 10, `"a" is this node's own ID; a link joins two different nodes`},
		{"duplicate peer", base + link + strings.TrimPrefix(link, "links:\n"), "links[1].peer", 16, `"b" is also the peer of links[0]`},
		{"bad peer id", base + strings.Replace(link, "peer: b", `peer: "b/c"`, 1), "links[0].peer", 10, "is not a valid ID"},
		{"dialer without address", base + strings.Replace(link, "    address: 127.0.0.1:7002\n", "", 1), "links[0].address", 10, `required: this node dials b (the lower ID dials, and "a" < "b")`},
		{"address without host", base + strings.Replace(link, "127.0.0.1:7002", ":7002", 1), "links[0].address", 11, "has no host"},
		{"bad state", base + link + "    state: up\n", "links[0].state", 16, `"up" is not a link state; use in_service, out_of_service, standby or reserved`},
		{"both sources", base + link + `      etsi014:
        url: https://kme.example
        sae: x
        peer_sae: y
        cert: c.pem
        key: c.key
`, "links[0].source", 12, "has both simulator and etsi014"},
		{"no source", base + "links:\n  - peer: b\n    address: 127.0.0.1:7002\n", "links[0].source", 10, "required: give the link one key source"},
		{"empty simulator", base + "links:\n  - peer: b\n    address: 127.0.0.1:7002\n    source:\n      simulator:\n", "links[0].source.simulator.seed", 13, "required: 64 hex digits"},
		{"http etsi014 url", base + `links:
  - peer: b
    address: 127.0.0.1:7002
    source:
      etsi014:
        url: http://kme.example:8443
        sae: x
        peer_sae: y
        cert: c.pem
        key: c.key
`, "links[0].source.etsi014.url", 14, `"http://kme.example:8443" is not https`},
		{"etsi014 missing key", base + `links:
  - peer: b
    address: 127.0.0.1:7002
    source:
      etsi014:
        url: https://kme.example:8443
        sae: x
        peer_sae: x
        cert: c.pem
`, "links[0].source.etsi014.key", 13, "required: its PEM private key"},
		{"etsi014 same SAEs", base + `links:
  - peer: b
    address: 127.0.0.1:7002
    source:
      etsi014:
        url: https://kme.example:8443
        sae: x
        peer_sae: x
        cert: c.pem
        key: c.key
`, "links[0].source.etsi014.peer_sae", 16, `"x" is also sae`},
		{"block size not a multiple of 8", base + link + "        block_size: 4095\n", "links[0].source.simulator.block_size", 16, `"4095" is not a positive multiple of 8`},
		{"simulated qber above max", base + link + "        qber: 0.2\n", "links[0].source.simulator.qber", 16, "is above links[0].max_qber (0.11)"},
		{"route via non-neighbour", base + link + "routes:\n  - dst: e\n    via: c\n", "routes[0].via", 18, `"c" is not a neighbour; route via a peer in links (b)`},
		{"route to self", base + link + "routes:\n  - dst: a\n    via: b\n", "routes[0].dst", 17, "is this node's own ID"},
		{"duplicate route", base + link + "routes:\n  - {dst: e, via: b}\n  - {dst: e, via: b}\n", "routes[1].dst", 18, `"e" already has a route (routes[0])`},
		{"pprof on non-loopback", base + "api:\n  metrics:\n    listen: 0.0.0.0:9101\n    pprof: true\n", "api.metrics.pprof", 12, `refused: api.metrics.listen "0.0.0.0:9101" is not a loopback address`},
		{"pprof on all interfaces", base + "api:\n  metrics:\n    listen: :9101\n    pprof: true\n", "api.metrics.pprof", 12, "is not a loopback address"},
		{"pprof without listener", base + "api:\n  metrics:\n    pprof: true\n", "api.metrics.pprof", 11, "needs api.metrics.listen"},
		{"etsi014 bad identity", base + "api:\n  etsi014:\n    listen: 127.0.0.1:8443\n    sae_identity: dns\n", "api.etsi014.sae_identity", 12, `"dns": want uri`},
		{"etsi014 key size not whole bytes", base + "api:\n  etsi014:\n    listen: 127.0.0.1:8443\n    key_size: 260\n", "api.etsi014.key_size", 12, "260 bits: want a multiple of 8"},
		{"etsi014 key size above slot", base + "api:\n  etsi014:\n    listen: 127.0.0.1:8443\n    key_size: 512\n", "api.etsi014.key_size", 12, "do not fit pools.slot_size (32 bytes)"},
		{"etsi014 same port as admin", base + "api:\n  admin: {listen: 127.0.0.1:8443}\n  etsi014:\n    listen: 127.0.0.1:8443\n", "api.etsi014.listen", 12, "is also the admin or metrics listener"},
		{"sae bad node", base + "saes:\n  - id: s1\n    node: no/de\n", "saes[0].node", 11, "character '/'"},
		{"sae negative rate", base + "saes:\n  - id: s1\n    keys_per_second: -1\n", "saes[0].keys_per_second", 11, "-1: want 0"},
		{"bad bool", base + "api:\n  metrics:\n    pprof: yes please\n", "api.metrics.pprof", 11, `"yes please" is not true or false`},
		{"durable without dir", base + "storage:\n  mode: durable\n", "storage.dir", 9, "required with mode: durable"},
		{"dir without durable", base + "storage:\n  dir: /var/lib/qrelay\n", "storage.dir", 10, "is only used with mode: durable"},
		{"bad storage mode", base + "storage:\n  mode: disk\n", "storage.mode", 10, `"disk" is not a storage mode`},
		{"low above high", base + "pools:\n  low: 100\n  high: 50\n", "pools.low", 10, "100 is above pools.high (50)"},
		{"high above slots", base + "pools:\n  slots: 64\n  high: 65\n", "pools.high", 11, "65 is above pools.slots (64)"},
		{"low above default high", base + "pools:\n  slots: 64\n  low: 65\n", "pools.low", 11, "65 is above pools.high (32)"},
		{"slot size", base + "pools:\n  slot_size: 33\n", "pools.slot_size", 10, "not a positive multiple of 8"},
		{"max age not above refresh", base + "control:\n  refresh: 3m\n", "control.max_age", 9, "must exceed control.refresh (3m0s)"},
		{"bad log level", strings.Replace(base, "  id: a\n", "  id: a\n  log: {level: verbose}\n", 1), "node.log.level", 3, `"verbose" is not a log level; use debug, info, warn or error`},
		{"bad log format", strings.Replace(base, "  id: a\n", "  id: a\n  log:\n    format: xml\n", 1), "node.log.format", 4, `"xml" is not a log format; use text or json`},
		{"bad node id", strings.Replace(base, "id: a", `id: "node a"`, 1), "node.id", 2, `"node a" is not a valid ID`},
		{"duplicate sae", base + "saes:\n  - id: s1\n  - id: s1\n", "saes[1].id", 11, `"s1" is also saes[0]`},
		{"bad sae", base + "saes:\n  - id: \"\"\n", "saes[0].id", 10, "required: the SAE's ID"},
		{"wireguard bad key", base + "wireguard:\n  - name: t1\n    remote_node: b\n    interface: wg0\n    peer_public_key: abc\n", "wireguard[0].peer_public_key", 13, `"abc" is not a WireGuard public key`},
		{"wireguard to self", base + strings.Replace(wgTunnel, "remote_node: b", "remote_node: a", 1), "wireguard[0].remote_node", 11, `"a" is this node`},
		{"wireguard no interface", base + strings.Replace(wgTunnel, "    interface: wg0\n", "", 1), "wireguard[0].interface", 10, "required: the local WireGuard interface"},
		{"wireguard interval", base + wgTunnel + "    interval: 500ms\n", "wireguard[0].interval", 14, "500ms is too short; the shortest rotation interval is 1s"},
		{"wireguard policy", base + wgTunnel + "    on_missing_key: ignore\n", "wireguard[0].on_missing_key", 14, `"ignore": use fail_closed`},
		{"wireguard duplicate name", base + wgTunnel + strings.Replace(wgTunnel, "wireguard:\n", "", 1), "wireguard[1].name", 14, `"t1" is also wireguard[0]`},
		{"wireguard small slots", base + wgTunnel + "pools:\n  slot_size: 16\n", "pools.slot_size", 15, "smaller than a WireGuard preshared key"},
		{"audit window zero", base + "audit:\n  window: 0\n", "audit.window", 10, "0 is out of range; keep 1 to 16777216 records"},
		{"audit window too large", base + "audit:\n  window: 16777217\n", "audit.window", 10, "16777217 is out of range"},
		{"audit retention too short", base + "audit:\n  retention: 30s\n", "audit.retention", 10, "30s is too short; keep records for at least 1m0s"},
		{"audit retention without unit", base + "audit:\n  retention: 7\n", "audit.retention", 10, `"7" has no unit`},
		{"audit unknown field", base + "audit:\n  windows: 10\n", "audit.windows", 10, `unknown field "windows"; did you mean "window"?`},
		{"alias", base + "pools:\n  slots: &n 64\n  high: *n\n", "pools.slots", 10, "anchors and aliases"},
		{"merge key", base + "<<: {pools: {}}\n", "<<", 9, "merge keys (<<) are not supported"},
		{"custom tag", base + "pools:\n  slots: !big 64\n", "pools.slots", 10, `custom YAML tag "!big"`},
		{"non-scalar key", base + "? [a, b]\n: 1\n", "", 9, "a key must be a plain name"},
		{"seed too short", base + strings.Replace(link, testSeed, testSeed[:62], 1), "links[0].source.simulator.seed", 14, "must be 64 hex digits (32 bytes), got 62 characters"},
		{"seed not hex", base + strings.Replace(link, testSeed, "zz"+testSeed[2:], 1), "links[0].source.simulator.seed", 14, "character 1 is not a hex digit"},
		{"seed all zero", base + strings.Replace(link, testSeed, strings.Repeat("0", 64), 1), "links[0].source.simulator.seed", 14, "is all zeros"},
		{"seed as a list", base + strings.Replace(link, `"`+testSeed+`"`, "[1, 2]", 1), "links[0].source.simulator.seed", 14, "want a seed of 64 hex digits, got a list"},
		{"multiple documents", base + "---\nnode:\n  id: b\n", "", 9, "a second YAML document starts here"},
		{"empty document after separator", base + "---\n", "", 0, "second YAML document"},
		{"empty file", "", "", 0, "the config is empty"},
		{"comments only", "# nothing yet\n", "", 0, "the config is empty"},
		{"top-level list", "- a\n- b\n", "", 1, "want a mapping (key: value lines) at the top level, got a list"},
		{"top-level scalar", "qrelay\n", "", 1, "at the top level, got a single value"},
		{"not YAML", base + "links: [\n", "", 0, "not valid YAML"},
		{"tab indentation", "node:\n\tid: a\n", "", 2, "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := structural.Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s\nparsed as:\n%s", tt.yaml, c)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, want *ValidationError: %v", err, err)
			}
			var found bool
			for _, fe := range ve.Errors {
				if fe.Path == tt.path && strings.Contains(fe.Msg, tt.msg) && (tt.line == 0 || fe.Line == tt.line) {
					found = true
				}
				if fe.File != "node.yaml" {
					t.Errorf("error %q has File %q, want node.yaml", fe, fe.File)
				}
			}
			if !found {
				t.Errorf("no error at node.yaml:%d: %s: ...%s...\ngot:\n%v", tt.line, tt.path, tt.msg, err)
			}
			if strings.Contains(strings.ToLower(err.Error()), testSeed[2:40]) {
				t.Errorf("error quotes the seed:\n%v", err)
			}
		})
	}
}

// The error text puts file, line and path first, as editors and people
// expect them.
func TestErrorFormat(t *testing.T) {
	_, err := structural.Parse([]byte(base + strings.Replace(link, "10Mbit/s", `"10 Mbps"`, 1)))
	want := `node.yaml:15: links[0].source.simulator.rate: "10 Mbps" is not a rate; write it like "500kbit/s", "10Mbit/s" or "2.5Gbit/s" (units bit/s, kbit/s, Mbit/s, Gbit/s), or "unlimited"`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	_, err = ParseOptions{SkipFileChecks: true}.Parse([]byte(base + link + "    peer: c\n"))
	want = `line 16: links[0].peer: given twice (first at line 10); keep one`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 16 || fe.Path != "links[0].peer" {
		t.Errorf("errors.As: %+v", fe)
	}
}

func TestAllProblemsReported(t *testing.T) {
	yaml := `node:
  id: a
  colour: blue
tls:
  ca: ca.pem
  cert: a.pem
km:
  listen: 127.0.0.1:7001
  streams: 99
links:
  - peer: a
    source:
      simulator:
        seed: "` + strings.Repeat("0", 64) + `"
        rate: fast
pools:
  low: 10
  high: 5
`
	_, err := structural.Parse([]byte(yaml))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		"node.yaml:3: node.colour: unknown field",
		"node.yaml:4: tls.key: required",
		"node.yaml:9: km.streams: 99 is out of range",
		"node.yaml:11: links[0].peer: \"a\" is this node's own ID",
		"node.yaml:14: links[0].source.simulator.seed: is all zeros",
		"node.yaml:15: links[0].source.simulator.rate: \"fast\" is not a rate",
		"node.yaml:17: pools.low: 10 is above pools.high (5)",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || len(ve.Errors) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d:\ngot  %s\nwant %s...", i, lines[i], w)
		}
	}
}

// A misspelt key is reported once, not also as the missing field it was
// meant to be.
func TestMisspeltNotAlsoMissing(t *testing.T) {
	_, err := structural.Parse([]byte(base + strings.Replace(link, "seed:", "sedd:", 1)))
	want := `node.yaml:14: links[0].source.simulator.sedd: unknown field "sedd"; did you mean "seed"? (fields in links[0].source.simulator: seed, rate, block_size, qber)`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestMinimal(t *testing.T) {
	c, err := Parse([]byte(base), "/etc/qrelay")
	if err == nil {
		t.Fatalf("accepted a config whose files do not exist:\n%s", c)
	}
	c, err = ParseOptions{SkipFileChecks: true, BaseDir: "/etc/qrelay"}.Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Node:    Node{ID: "a", Log: Log{Level: LogInfo, Format: LogText}},
		TLS:     TLS{CA: "/etc/qrelay/ca.pem", Cert: "/etc/qrelay/a.pem", Key: "/etc/qrelay/a.key"},
		KM:      KM{Listen: "127.0.0.1:7001", Streams: 2, Keepalive: 300 * time.Millisecond, IdleTimeout: 1200 * time.Millisecond, CompletionTimeout: 10 * time.Second},
		Storage: Storage{Mode: Memory},
		Pools:   Pools{Slots: 65536, SlotSize: 32, Low: 16384, High: 32768, OrphanTTL: 10 * time.Minute},
		Control: Control{Refresh: 30 * time.Second, MaxAge: 2 * time.Minute, SPFDelay: 10 * time.Millisecond},
		Audit:   Audit{Window: 1 << 20, Retention: 7 * 24 * time.Hour},
	}
	if got := public(c); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// public is c without what decode recorded, for comparisons.
func public(c *Config) *Config {
	p := *c
	p.set, p.lines, p.file = nil, nil, ""
	return &p
}

func TestDefaults(t *testing.T) {
	// A Config built in Go: zero fields count as left out.
	c := &Config{
		Links: []Link{
			{Peer: "b", Source: Source{Simulator: &Simulator{}}},
			{Peer: "c", Source: Source{ETSI014: &ETSI014{}}},
		},
		Pools: Pools{Slots: 1024},
	}
	c.Defaults()
	want := &Config{
		Node: Node{Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat}},
		KM:   KM{Streams: DefaultStreams, Keepalive: DefaultKeepalive, IdleTimeout: DefaultIdleTimeout, CompletionTimeout: DefaultCompletionTimeout},
		Links: []Link{
			{Peer: "b", PadCapacity: 64 * MiB, MinStock: 256 * KiB, MaxQBER: 0.11, State: InService,
				Source: Source{Simulator: &Simulator{BlockSize: 4 * KiB, QBER: 0.02}}},
			{Peer: "c", PadCapacity: 64 * MiB, MinStock: 256 * KiB, MaxQBER: 0.11, State: InService,
				Source: Source{ETSI014: &ETSI014{KeySize: 256, PerRequest: 64, Timeout: 5 * time.Second}}},
		},
		Storage: Storage{Mode: Memory},
		Pools:   Pools{Slots: 1024, SlotSize: 32, Low: 256, High: 512, OrphanTTL: 10 * time.Minute}, // low = slots/4, high = slots/2
		Control: Control{Refresh: 30 * time.Second, MaxAge: 2 * time.Minute, SPFDelay: 10 * time.Millisecond},
		Audit:   Audit{Window: DefaultAuditWindow, Retention: DefaultAuditRetention},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%s\nwant\n%s", c, want)
	}
	c.Defaults()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Defaults is not idempotent:\n%s", c)
	}
}

// A value the file gives is kept even when it is zero; what it leaves out
// is defaulted, derived defaults included.
func TestExplicitZeroKept(t *testing.T) {
	c, err := structural.Parse([]byte(base + link + "        qber: 0\n" + `pools:
  slots: 100
  low: 0
control:
  spf_delay: 0s
`))
	if err != nil {
		t.Fatal(err)
	}
	if q := c.Links[0].Source.Simulator.QBER; q != 0 {
		t.Errorf("qber = %v, want 0", q)
	}
	if c.Pools.Low != 0 || c.Pools.High != 50 {
		t.Errorf("low, high = %d, %d; want 0, 50 (half of slots)", c.Pools.Low, c.Pools.High)
	}
	if c.Control.SPFDelay != 0 {
		t.Errorf("spf_delay = %v, want 0", c.Control.SPFDelay)
	}
}

func TestGoodConfigs(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(*Config) error
	}{
		{"lone node", base + "links: []\n", func(c *Config) error {
			if len(c.Links) != 0 {
				return fmt.Errorf("links = %v", c.Links)
			}
			return nil
		}},
		{"higher ID need not give an address", strings.Replace(base, "id: a", "id: z", 1) + strings.Replace(link, "    address: 127.0.0.1:7002\n", "", 1), func(c *Config) error {
			if c.Dials("b") {
				return errors.New("z dials b")
			}
			return nil
		}},
		{"unlimited rate", base + strings.Replace(link, "10Mbit/s", "unlimited", 1), func(c *Config) error {
			if r := c.Links[0].Source.Simulator.Rate; r != Unlimited {
				return fmt.Errorf("rate = %v", r)
			}
			return nil
		}},
		{"durable with relative dir", base + "storage: {mode: durable, dir: state}\n", func(c *Config) error {
			if c.Storage.Dir != "/etc/qrelay/state" {
				return fmt.Errorf("dir = %q", c.Storage.Dir)
			}
			return nil
		}},
		{"audit", base + "audit: {window: 1, retention: 1m}\n", func(c *Config) error {
			if c.Audit != (Audit{Window: 1, Retention: time.Minute}) {
				return fmt.Errorf("audit = %+v", c.Audit)
			}
			return nil
		}},
		{"pprof on localhost", base + "api: {metrics: {listen: 'localhost:9101', pprof: true}}\n", nil},
		{"pprof on ::1", base + "api: {metrics: {listen: '[::1]:9101', pprof: true}}\n", nil},
		{"listen on any port", strings.Replace(base, "127.0.0.1:7001", ":0", 1), nil},
		{"null sections", base + "links:\nroutes:\nsaes:\nstorage:\n", nil},
		{"document markers", "---\n" + base + "...\n", nil},
		{"sizes and rates", base + link + "        block_size: 8B\n    pad_capacity: 1GiB\n    min_stock: 4096\n", func(c *Config) error {
			if l := c.Links[0]; l.PadCapacity != GiB || l.MinStock != 4096 || l.Source.Simulator.BlockSize != 8 {
				return fmt.Errorf("capacity %d, stock %d, block %d", l.PadCapacity, l.MinStock, l.Source.Simulator.BlockSize)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseOptions{SkipFileChecks: true, BaseDir: "/etc/qrelay"}.Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				if err := tt.check(c); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestExample(t *testing.T) {
	c, err := structural.Parse(Example())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Links) != 2 || c.Links[0].Source.Simulator == nil || c.Links[1].Source.ETSI014 == nil {
		t.Fatalf("example links: %+v", c.Links)
	}
	// The example documents every field: walk Config by reflection and
	// require that the example gives each leaf (so a new field fails here
	// until it is documented, defaulted and validated).
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		switch {
		case typ == durationType || typ == sizeType || typ == rateType || typ == seedType:
		case typ.Kind() == reflect.Pointer:
			walk(typ.Elem(), path)
			return
		case typ.Kind() == reflect.Slice:
			walk(typ.Elem(), path+"[0]")
			return
		case typ.Kind() == reflect.Struct:
			names, _ := fieldNames(typ)
			for name, i := range names {
				walk(typ.Field(i).Type, child(path, name))
			}
			return
		}
		p := path
		if strings.HasPrefix(p, "links[0].source.etsi014") {
			p = "links[1]" + strings.TrimPrefix(p, "links[0]")
		}
		if p == "storage.dir" {
			return // only with mode: durable; shown commented out
		}
		if !c.set[p] {
			t.Errorf("Example() does not show %s", p)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	if !strings.Contains(string(Example()), "# dir:") {
		t.Error("Example() does not show storage.dir")
	}
}

// Redacted never shows a seed, and with the seeds put back it parses to
// the same Config.
func TestRedactedRoundTrip(t *testing.T) {
	c, err := structural.Parse(Example())
	if err != nil {
		t.Fatal(err)
	}
	seed := c.Links[0].Source.Simulator.Seed
	hexSeed := fmt.Sprintf("%x", seed[:])
	for _, s := range []string{c.String(), c.Redacted(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %x %s", *c, *c, *c, seed, seed)} {
		if strings.Contains(s, hexSeed) || strings.Contains(s, "0x0, 0x1, 0x2") {
			t.Fatalf("seed printed:\n%s", s)
		}
	}
	c2, err := structural.Parse([]byte(restoreSeeds(c)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(public(c), public(c2)) {
		t.Errorf("round trip changed the config:\n%s\nto\n%s", c, c2)
	}
}

// restoreSeeds is c.Redacted() with each "<redacted>" replaced by the seed.
func restoreSeeds(c *Config) string {
	s := c.Redacted()
	for _, l := range c.Links {
		if sim := l.Source.Simulator; sim != nil {
			s = strings.Replace(s, redacted, fmt.Sprintf("%x", sim.Seed[:]), 1)
		}
	}
	return s
}

func TestUnits(t *testing.T) {
	sizes := map[string]Size{"0": 0, "4096": 4096, "8B": 8, "512KiB": 512 * KiB, "64MiB": 64 * MiB, "1GiB": GiB, "1536KiB": 1536 * KiB}
	for s, want := range sizes {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
		if got, _ := ParseSize(want.String()); got != want {
			t.Errorf("%q: String %q does not read back", s, want)
		}
	}
	for _, s := range []string{"", "64MB", "64 MiB", "-1", "1.5MiB", "1TiB", "64mib", "99999999999999999999", "9000000000GiB"} {
		if _, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted", s)
		}
	}
	rates := map[string]Rate{"unlimited": 0, "10Mbit/s": 10e6, "2.5Gbit/s": 2.5e9, "500kbit/s": 500e3, "1bit/s": 1, "0.5bit/s": 0.5, "1234.5678Mbit/s": 1234.5678e6}
	for s, want := range rates {
		if got, err := ParseRate(s); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", s, got, err, want)
		}
		if got, _ := ParseRate(want.String()); got != want {
			t.Errorf("%q: String %q does not read back", s, want)
		}
	}
	if s := Rate(2.5e9).String(); s != "2.5Gbit/s" {
		t.Errorf("2.5e9 formats as %q", s)
	}
	for _, s := range []string{"10 Mbit/s", "10Mbps", "10MB/s", "-1Mbit/s", "1e3bit/s", "0bit/s", "Mbit/s", "10Mbit"} {
		if _, err := ParseRate(s); err == nil {
			t.Errorf("ParseRate(%q) accepted", s)
		}
	}
}

// writeNodeFiles makes a CA, a node certificate for a and an SAE client
// certificate in dir, as qrelayctl pki would.
func writeNodeFiles(t *testing.T, dir string) {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.Issue(pki.Node, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(pki.SAE, "sae-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"ca.pem": ca.CertPEM, "node-a.pem": node.CertPEM, "node-a.key": node.KeyPEM,
		"kme-client.pem": client.CertPEM, "kme-client.key": client.KeyPEM, "kme-ca.pem": ca.CertPEM,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadWithFiles(t *testing.T) {
	dir := t.TempDir()
	writeNodeFiles(t, dir)
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, Example(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "ca.pem"); c.TLS.CA != want {
		t.Errorf("tls.ca = %q, want %q", c.TLS.CA, want)
	}
	if want := filepath.Join(dir, "kme-client.key"); c.Links[1].Source.ETSI014.Key != want {
		t.Errorf("etsi014.key = %q, want %q", c.Links[1].Source.ETSI014.Key, want)
	}
}

func TestFileChecks(t *testing.T) {
	dir := t.TempDir()
	writeNodeFiles(t, dir)
	other := t.TempDir()
	writeNodeFiles(t, other) // a second CA, so its key matches no certificate here
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, path, msg string
	}{
		{"missing cert file", "cert: node-a.pem", "cert: nope.pem", "tls.cert", "cannot read " + filepath.Join(dir, "nope.pem") + ": no such file or directory; check the path"},
		{"missing ca file", "ca: ca.pem", "ca: nope.pem", "tls.ca", "no such file or directory"},
		{"ca not PEM", "ca: ca.pem", "ca: junk.pem", "tls.ca", "holds no PEM certificate"},
		{"key is a certificate", "key: node-a.key", "key: node-a.pem", "tls.key", "holds a certificate, not a private key"},
		{"cert is a key", "cert: node-a.pem", "cert: node-a.key", "tls.cert", "holds a private key, not a certificate"},
		{"key does not match", "key: node-a.key", "key: " + filepath.Join(other, "node-a.key"), "tls.key", "does not go with"},
		{"etsi014 ca missing", "ca: kme-ca.pem", "ca: gone.pem", "links[1].source.etsi014.ca", "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := strings.Replace(string(Example()), tt.from, tt.to, 1)
			path := filepath.Join(dir, "node.yaml")
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v", err)
			}
			if len(ve.Errors) != 1 || ve.Errors[0].Path != tt.path || !strings.Contains(ve.Errors[0].Msg, tt.msg) || ve.Errors[0].Line == 0 {
				t.Errorf("want one error at %s: ...%s...; got\n%v", tt.path, tt.msg, err)
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("error does not start with the file name: %v", err)
			}
			// The structure alone is fine.
			if _, err := (ParseOptions{SkipFileChecks: true}).Load(path); err != nil {
				t.Errorf("with SkipFileChecks: %v", err)
			}
		})
	}
}

func TestValidateBuilt(t *testing.T) {
	c := &Config{Node: Node{ID: "a"}, TLS: TLS{CA: "x", Cert: "y", Key: "z"}, KM: KM{Listen: ":7001"}}
	c.Defaults()
	if err := c.Validate(ParseOptions{SkipFileChecks: true}); err != nil {
		t.Fatal(err)
	}
	c.Links = append(c.Links, Link{Peer: "a"})
	c.Defaults()
	err := c.Validate(ParseOptions{SkipFileChecks: true})
	if err == nil || !strings.Contains(err.Error(), `links[0].peer: "a" is this node's own ID`) {
		t.Errorf("got %v", err)
	}
}
