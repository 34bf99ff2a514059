package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qrelay/qrelay/internal/ids"
)

// idRule is the ID rule of internal/ids in words.
var idRule = fmt.Sprintf("1 to %d characters from A-Z a-z 0-9 . _ -", ids.MaxLen)

// Limits.
const (
	MaxStreams = 16
	MaxQBER    = 0.5 // exclusive: at 50% errors there is no secret key at all
)

func (c *Config) validate(ck *checker, o ParseOptions) {
	self := c.Node.ID
	selfOK := checkID(ck, "node.id", self, "this node's ID")
	if !slices.Contains([]LogLevel{LogDebug, LogInfo, LogWarn, LogError}, c.Node.Log.Level) {
		ck.add("node.log.level", "%s is not a log level; use debug, info, warn or error", quote(string(c.Node.Log.Level)))
	}
	if !slices.Contains([]LogFormat{LogText, LogJSON}, c.Node.Log.Format) {
		ck.add("node.log.format", "%s is not a log format; use text or json", quote(string(c.Node.Log.Format)))
	}

	files := &fileChecker{ck: ck, skip: o.SkipFileChecks}
	files.ca("tls.ca", c.TLS.CA, true, "the PEM CA certificate that signs node certificates")
	files.pair("tls.cert", c.TLS.Cert, "tls.key", c.TLS.Key, true, "this node's PEM certificate", "its PEM private key")

	c.validateKM(ck)
	peers := c.validateLinks(ck, files, self, selfOK)
	c.validateRoutes(ck, self, peers)
	c.validateStorage(ck)
	c.validatePools(ck)
	c.validateControl(ck)
	c.validateAPI(ck)

	saes := map[string]int{}
	for i, s := range c.SAEs {
		p := index("saes", i)
		if s.Node != "" {
			checkID(ck, p+".node", s.Node, "the node that serves the SAE")
		}
		if s.KeysPerSecond < 0 || math.IsNaN(s.KeysPerSecond) || math.IsInf(s.KeysPerSecond, 0) {
			ck.add(p+".keys_per_second", "%v: want 0 (no limit) or a positive rate", s.KeysPerSecond)
		}
		if s.Burst < 0 {
			ck.add(p+".burst", "%d is negative", s.Burst)
		} else if s.KeysPerSecond > 0 && c.API.ETSI014.MaxKeysPerRequest > 0 && s.Burst < c.API.ETSI014.MaxKeysPerRequest && s.Burst > 0 {
			// A burst below the largest request would refuse some requests for ever.
			ck.add(p+".burst", "%d is below api.etsi014.max_keys_per_request (%d): a request that large could never pass; raise it", s.Burst, c.API.ETSI014.MaxKeysPerRequest)
		}
		if !checkID(ck, p+".id", s.ID, "the SAE's ID, as in its certificate") {
			continue
		}
		if j, dup := saes[s.ID]; dup {
			ck.add(p+".id", "%s is also saes[%d]; list each SAE once", quote(s.ID), j)
			continue
		}
		saes[s.ID] = i
	}
	c.validateWireGuard(ck, self)
	c.validateAudit(ck)
}

func (c *Config) validateAudit(ck *checker) {
	if w := c.Audit.Window; w < 1 || w > MaxAuditWindow {
		ck.add("audit.window", "%d is out of range; keep 1 to %d records (about 100 bytes each) in memory", w, MaxAuditWindow)
	}
	if r := c.Audit.Retention; r < MinAuditRetention {
		ck.add("audit.retention", "%v is too short; keep records for at least %v, like \"168h\" (a week)", r, MinAuditRetention)
	}
}

// MinRotationInterval is the shortest WireGuard rotation period (tests).
const MinRotationInterval = time.Second

func (c *Config) validateWireGuard(ck *checker, self string) {
	names := map[string]int{}
	peers := map[string]int{}
	for i, w := range c.WireGuard {
		p := index("wireguard", i)
		if checkID(ck, p+".name", w.Name, "the tunnel's name, the same at both nodes") {
			if j, dup := names[w.Name]; dup {
				ck.add(p+".name", "%s is also wireguard[%d]; each tunnel has its own name", quote(w.Name), j)
			}
			names[w.Name] = i
		}
		if checkID(ck, p+".remote_node", w.RemoteNode, "the node at the other end of the tunnel") && w.RemoteNode == self {
			ck.add(p+".remote_node", "%s is this node; the other end of a tunnel is served by another node", quote(w.RemoteNode))
		}
		if w.Interface == "" {
			ck.add(p+".interface", "required: the local WireGuard interface, like \"wg0\"")
		} else if len(w.Interface) > 15 || strings.ContainsAny(w.Interface, "/ \t\n") {
			ck.add(p+".interface", "%s is not an interface name (at most 15 characters, no '/' or spaces)", quote(w.Interface))
		}
		if key, err := base64.StdEncoding.DecodeString(w.PeerPublicKey); err != nil || len(key) != 32 {
			ck.add(p+".peer_public_key", "%s is not a WireGuard public key; give the other end's key in base64 (44 characters, as `wg pubkey` prints it)", quote(w.PeerPublicKey))
		} else {
			k := w.Interface + " " + w.PeerPublicKey
			if j, dup := peers[k]; dup {
				ck.add(p+".peer_public_key", "this peer of %s is also wireguard[%d]; one tunnel per peer", w.Interface, j)
			}
			peers[k] = i
		}
		if w.Interval < MinRotationInterval {
			ck.add(p+".interval", "%v is too short; the shortest rotation interval is %v", w.Interval, MinRotationInterval)
		}
		if w.OnMissingKey != FailClosed && w.OnMissingKey != KeepCurrent {
			ck.add(p+".on_missing_key", "%s: use fail_closed (a random PSK until keys come back) or keep_current", quote(w.OnMissingKey))
		}
	}
	if len(c.WireGuard) > 0 && c.Pools.SlotSize > 0 && c.Pools.SlotSize < 32 {
		ck.add("pools.slot_size", "%d bytes is smaller than a WireGuard preshared key (32 bytes), which wireguard: needs", c.Pools.SlotSize)
	}
}

// checkID reports whether id is a valid node or SAE ID, adding an error
// if not.
func checkID(ck *checker, path, id, what string) bool {
	if id == "" {
		ck.add(path, "required: %s, %s", what, idRule)
		return false
	}
	if err := ids.Valid(id); err != nil {
		ck.add(path, "%s is not a valid ID (%v); an ID is %s", quote(id), err, idRule)
		return false
	}
	return true
}

func (c *Config) validateKM(ck *checker) {
	km := c.KM
	if km.Listen == "" {
		ck.add("km.listen", "required: the UDP host:port KM links listen on, like \"0.0.0.0:7001\"")
	} else if err := checkHostPort(km.Listen, true); err != nil {
		ck.add("km.listen", "%v", err)
	}
	if km.Streams < 1 || km.Streams > MaxStreams {
		ck.add("km.streams", "%d is out of range; use 1 to %d", km.Streams, MaxStreams)
	}
	positive(ck, "km.keepalive", km.Keepalive)
	if positive(ck, "km.idle_timeout", km.IdleTimeout) && km.Keepalive > 0 && km.IdleTimeout <= km.Keepalive {
		ck.add("km.idle_timeout", "%v must exceed km.keepalive (%v), or an idle link times out between keepalives; raise it or lower keepalive", km.IdleTimeout, km.Keepalive)
	}
	positive(ck, "km.completion_timeout", km.CompletionTimeout)
}

// positive reports whether d > 0, adding an error if not.
func positive(ck *checker, path string, d time.Duration) bool {
	if d <= 0 {
		ck.add(path, "%v is too short; give a positive duration like \"5s\"", d)
		return false
	}
	return true
}

// validateLinks checks the links and returns the valid peer IDs with the
// index of their link.
func (c *Config) validateLinks(ck *checker, files *fileChecker, self string, selfOK bool) map[string]int {
	peers := map[string]int{}
	for i := range c.Links {
		l := &c.Links[i]
		p := index("links", i)
		peerOK := checkID(ck, p+".peer", l.Peer, "the neighbour's node ID")
		if peerOK && l.Peer == self {
			ck.add(p+".peer", "%s is this node's own ID; a link joins two different nodes", quote(l.Peer))
			peerOK = false
		} else if j, dup := peers[l.Peer]; peerOK && dup {
			ck.add(p+".peer", "%s is also the peer of links[%d]; configure one link per neighbour", quote(l.Peer), j)
			peerOK = false
		} else if peerOK {
			peers[l.Peer] = i
		}
		switch {
		case l.Address != "":
			if err := checkHostPort(l.Address, false); err != nil {
				ck.add(p+".address", "%v", err)
			}
		case peerOK && selfOK && c.Dials(l.Peer):
			ck.add(p+".address", "required: this node dials %s (the lower ID dials, and %s < %s); give %s's KM address as host:port", l.Peer, quote(self), quote(l.Peer), l.Peer)
		}
		capOK := l.PadCapacity >= MiB && l.PadCapacity%MiB == 0 && l.PadCapacity&(l.PadCapacity-1) == 0
		if !capOK {
			ck.add(p+".pad_capacity", "%s is not a power of two and a multiple of 1MiB; use 1MiB, 2MiB, 4MiB, ..., like \"64MiB\"", quote(l.PadCapacity.String()))
		}
		// Routing admits a link again at 1.125 × min_stock, and background
		// pool refills leave 1.25 × min_stock on it (supply/filler.go): a
		// ring that cannot hold more than that would never fill a pool.
		if capOK && l.MinStock+l.MinStock/4 >= l.PadCapacity {
			ck.add(p+".min_stock", "%s must be less than 80%% of pad_capacity (%s): routing avoids the link below it, and background key-pool refills leave 1.25 times it on the link", quote(l.MinStock.String()), l.PadCapacity)
		}
		if l.MinStock < 0 {
			ck.add(p+".min_stock", "%d is negative", l.MinStock)
		}
		qberOK := l.MaxQBER > 0 && l.MaxQBER < MaxQBER
		if !qberOK {
			ck.add(p+".max_qber", "%v is out of range; it is a fraction above 0 and below 0.5, like 0.11", l.MaxQBER)
		}
		if !slices.Contains([]LinkState{InService, OutOfService, Standby, Reserved}, l.State) {
			ck.add(p+".state", "%s is not a link state; use in_service, out_of_service, standby or reserved", quote(string(l.State)))
		}
		sim, etsi := l.Source.Simulator, l.Source.ETSI014
		switch {
		case sim != nil && etsi != nil:
			ck.add(p+".source", "has both simulator and etsi014; a link takes key from exactly one source, so remove one")
		case sim == nil && etsi == nil:
			ck.add(p+".source", "required: give the link one key source, simulator: (a lab simulation) or etsi014: (a QKD device's KME)")
		}
		if sim != nil {
			c.validateSimulator(ck, p, sim, l, capOK, qberOK)
		}
		if etsi != nil {
			validateETSI014(ck, files, p+".source.etsi014", etsi)
		}
	}
	return peers
}

func (c *Config) validateSimulator(ck *checker, link string, s *Simulator, l *Link, capOK, qberOK bool) {
	p := link + ".source.simulator"
	if s.Seed.IsZero() {
		ck.add(p+".seed", "required: %d hex digits, the same at both ends of the link; make one with \"openssl rand -hex %d\"", 2*SeedSize, SeedSize)
	}
	if c.set != nil && !c.set[p+".rate"] {
		ck.add(p+".rate", "required: the simulated secret key rate, like \"10Mbit/s\", or \"unlimited\"")
	} else if s.Rate < 0 || math.IsNaN(float64(s.Rate)) || math.IsInf(float64(s.Rate), 0) {
		ck.add(p+".rate", "%v bit/s is not a rate; %s", float64(s.Rate), rateHelp)
	}
	switch {
	case s.BlockSize <= 0 || s.BlockSize%8 != 0:
		ck.add(p+".block_size", "%s is not a positive multiple of 8 bytes; use a size like \"4KiB\"", quote(s.BlockSize.String()))
	case capOK && s.BlockSize > l.PadCapacity:
		ck.add(p+".block_size", "%s is larger than %s.pad_capacity (%s); a block must fit in the pad", s.BlockSize, link, l.PadCapacity)
	}
	switch {
	case !(s.QBER >= 0 && s.QBER < MaxQBER):
		ck.add(p+".qber", "%v is out of range; it is a fraction from 0 to below 0.5, like 0.02", s.QBER)
	case qberOK && s.QBER > l.MaxQBER:
		ck.add(p+".qber", "%v is above %s.max_qber (%v), so every simulated block would be discarded; lower it or raise max_qber", s.QBER, link, l.MaxQBER)
	}
}

func validateETSI014(ck *checker, files *fileChecker, p string, e *ETSI014) {
	if e.URL == "" {
		ck.add(p+".url", "required: the KME's base URL, like \"https://kme-a.example:8443\"")
	} else if u, err := url.Parse(e.URL); err != nil {
		ck.add(p+".url", "%s is not a URL; write it like \"https://kme-a.example:8443\"", quote(e.URL))
	} else if u.Scheme != "https" {
		ck.add(p+".url", "%s is not https; ETSI GS QKD 014 runs over HTTPS with mutual TLS, so write https://...", quote(e.URL))
	} else if u.Host == "" || u.Hostname() == "" {
		ck.add(p+".url", "%s has no host; write it like \"https://kme-a.example:8443\"", quote(e.URL))
	} else if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		ck.add(p+".url", "%s has a user, query or fragment; give only scheme, host, port and path", quote(e.URL))
	}
	ownOK := checkSAEName(ck, p+".sae", e.SAE, "this node's SAE ID at its KME")
	if checkSAEName(ck, p+".peer_sae", e.PeerSAE, "the peer node's SAE ID at its KME") && ownOK && e.SAE == e.PeerSAE {
		ck.add(p+".peer_sae", "%s is also sae (this node's own); the two ends of a link are different SAEs", quote(e.PeerSAE))
	}
	files.pair(p+".cert", e.Cert, p+".key", e.Key, true, "the PEM client certificate for the KME", "its PEM private key")
	files.ca(p+".ca", e.CA, false, "")
	if e.KeySize <= 0 || e.KeySize%8 != 0 {
		ck.add(p+".key_size", "%d is not a positive multiple of 8; it is in bits, like 256", e.KeySize)
	}
	if e.PerRequest < 1 {
		ck.add(p+".per_request", "%d is out of range; ask for at least 1 key per request", e.PerRequest)
	}
	positive(ck, p+".timeout", e.Timeout)
}

// checkSAEName checks an SAE ID as a KME knows it: it goes into request
// paths, so it must be plain text without '/', '?', '#', '%' or spaces.
func checkSAEName(ck *checker, path, id, what string) bool {
	if id == "" {
		ck.add(path, "required: %s", what)
		return false
	}
	if len(id) > 256 || strings.IndexFunc(id, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("/?#%", r)
	}) >= 0 {
		ck.add(path, "%s is not an SAE ID; use up to 256 printable ASCII characters without spaces, '/', '?', '#' or '%%'", quote(id))
		return false
	}
	return true
}

func (c *Config) validateRoutes(ck *checker, self string, peers map[string]int) {
	dsts := map[string]int{}
	for i, r := range c.Routes {
		p := index("routes", i)
		if checkID(ck, p+".dst", r.Dst, "the destination node's ID") {
			if r.Dst == self {
				ck.add(p+".dst", "%s is this node's own ID; a route leads to another node", quote(r.Dst))
			} else if j, dup := dsts[r.Dst]; dup {
				ck.add(p+".dst", "%s already has a route (routes[%d]); give one route per destination", quote(r.Dst), j)
			} else {
				dsts[r.Dst] = i
			}
		}
		if checkID(ck, p+".via", r.Via, "the neighbour to route through") {
			if _, ok := peers[r.Via]; !ok {
				ck.add(p+".via", "%s is not a neighbour; route via a peer in links (%s)", quote(r.Via), peerList(peers))
			}
		}
	}
}

func peerList(peers map[string]int) string {
	if len(peers) == 0 {
		return "this node has none"
	}
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return strings.Join(ids, ", ")
}

func (c *Config) validateStorage(ck *checker) {
	s := c.Storage
	switch s.Mode {
	case Memory:
		if s.Dir != "" {
			ck.add("storage.dir", "is only used with mode: durable; remove it, or set storage.mode: durable")
		}
	case Durable:
		if s.Dir == "" {
			ck.add("storage.dir", "required with mode: durable: the directory for pads and pools, like \"/var/lib/qrelay/%s\"", c.Node.ID)
		}
	default:
		ck.add("storage.mode", "%s is not a storage mode; use memory or durable", quote(string(s.Mode)))
	}
}

func (c *Config) validatePools(ck *checker) {
	p := c.Pools
	slotsOK := p.Slots >= 1
	if !slotsOK {
		ck.add("pools.slots", "%d is out of range; a pool needs at least 1 slot", p.Slots)
	}
	if p.SlotSize <= 0 || p.SlotSize%8 != 0 {
		ck.add("pools.slot_size", "%d is not a positive multiple of 8; it is the largest key in bytes, like 32", p.SlotSize)
	}
	const rule = "watermarks count keys, 0 <= low <= high <= slots"
	switch {
	case p.Low < 0:
		ck.add("pools.low", "%d is negative; %s", p.Low, rule)
	case p.High < 1:
		ck.add("pools.high", "%d is out of range; a pool must fill to at least 1 key (%s)", p.High, rule)
	case p.Low > p.High:
		ck.add("pools.low", "%d is above pools.high (%d); %s", p.Low, p.High, rule)
	case slotsOK && p.High > p.Slots:
		ck.add("pools.high", "%d is above pools.slots (%d); %s", p.High, p.Slots, rule)
	}
	if p.TTL < 0 {
		ck.add("pools.ttl", "%v is negative; use 0s for keys that never expire", p.TTL)
	}
}

func (c *Config) validateControl(ck *checker) {
	ct := c.Control
	if positive(ck, "control.refresh", ct.Refresh) && ct.MaxAge <= ct.Refresh {
		ck.add("control.max_age", "%v must exceed control.refresh (%v), or adverts expire before they are refreshed", ct.MaxAge, ct.Refresh)
	}
	if ct.SPFDelay < 0 {
		ck.add("control.spf_delay", "%v is negative; use 0s to recompute routes at once", ct.SPFDelay)
	}
}

func (c *Config) validateAPI(ck *checker) {
	a := c.API
	if a.Admin.Listen != "" {
		if err := checkHostPort(a.Admin.Listen, true); err != nil {
			ck.add("api.admin.listen", "%v", err)
		}
	}
	m := a.Metrics
	metricsOK := true
	if m.Listen != "" {
		if err := checkHostPort(m.Listen, true); err != nil {
			ck.add("api.metrics.listen", "%v", err)
			metricsOK = false
		} else if m.Listen == a.Admin.Listen {
			ck.add("api.metrics.listen", "%s is also api.admin.listen; give the two listeners different ports", quote(m.Listen))
		}
	}
	if e := a.ETSI014; e.Listen != "" {
		if err := checkHostPort(e.Listen, true); err != nil {
			ck.add("api.etsi014.listen", "%v", err)
		} else if e.Listen == a.Admin.Listen || e.Listen == m.Listen {
			ck.add("api.etsi014.listen", "%s is also the admin or metrics listener; give each listener its own port", quote(e.Listen))
		}
		if e.SAEIdentity != "uri" && e.SAEIdentity != "cn" {
			ck.add("api.etsi014.sae_identity", "%s: want uri (the URI SAN qrelay:sae:<id>, else the CN) or cn (the CN only)", quote(e.SAEIdentity))
		}
		if e.KeySize < 64 || e.KeySize%8 != 0 {
			ck.add("api.etsi014.key_size", "%d bits: want a multiple of 8, at least 64", e.KeySize)
		} else if c.Pools.SlotSize > 0 && e.KeySize > c.Pools.SlotSize*8 {
			ck.add("api.etsi014.key_size", "%d bits do not fit pools.slot_size (%d bytes); raise slot_size to %d", e.KeySize, c.Pools.SlotSize, e.KeySize/8)
		}
		// 2048 is the most keys a pool hands out in one call
		// (ringstore.MaxBatch), and one request is one call.
		if e.MaxKeysPerRequest < 1 || e.MaxKeysPerRequest > 2048 {
			ck.add("api.etsi014.max_keys_per_request", "%d: want 1 to 2048", e.MaxKeysPerRequest)
		}
		if e.AssignTimeout <= 0 {
			ck.add("api.etsi014.assign_timeout", "%v: want a positive duration", e.AssignTimeout)
		}
	}
	switch {
	case !m.PProf:
	case m.Listen == "":
		ck.add("api.metrics.pprof", "needs api.metrics.listen: pprof is served on the metrics listener, which is off")
	case metricsOK && !isLoopback(m.Listen):
		ck.add("api.metrics.pprof", "refused: api.metrics.listen %s is not a loopback address, and pprof must not be reachable from the network; listen on 127.0.0.1, [::1] or localhost, or set pprof: false", quote(m.Listen))
	}
}

// checkHostPort checks a host:port. A listen address may leave the host
// out (all interfaces) and use port 0 (any free port).
func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%s is not host:port; write it like \"127.0.0.1:7001\" or \"[::1]:7001\"", quote(s))
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("%s has port %s; a port is a number from 1 to 65535", quote(s), quote(port))
	}
	if n == 0 && !listen {
		return fmt.Errorf("%s has port 0; give the peer's real port", quote(s))
	}
	if host == "" {
		if listen {
			return nil
		}
		return fmt.Errorf("%s has no host; write it like \"192.0.2.7:7001\" or \"node-b.example:7001\"", quote(s))
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%s has host %s, which is neither an IP address nor a DNS name", quote(s), quote(host))
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// fileChecker checks that PEM files exist and parse.
type fileChecker struct {
	ck   *checker
	skip bool
}

const pathHint = "check the path (a relative path is relative to the config file's directory)"

func (f *fileChecker) read(path, file string) ([]byte, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		f.ck.add(path, "cannot read %s: %v; %s", file, err, pathHint)
		return nil, false
	}
	return data, true
}

// ca checks a file of one or more PEM CA certificates.
func (f *fileChecker) ca(path, file string, required bool, what string) {
	if file == "" {
		if required {
			f.ck.add(path, "required: %s", what)
		}
		return
	}
	if f.skip {
		return
	}
	data, ok := f.read(path, file)
	if ok {
		if _, err := parseCerts(data); err != nil {
			f.ck.add(path, "%s: %v", file, err)
		}
	}
}

// pair checks a PEM certificate chain and its private key, and that they
// match.
func (f *fileChecker) pair(certPath, certFile, keyPath, keyFile string, required bool, certWhat, keyWhat string) {
	if required && certFile == "" {
		f.ck.add(certPath, "required: %s", certWhat)
	}
	if required && keyFile == "" {
		f.ck.add(keyPath, "required: %s", keyWhat)
	}
	if f.skip {
		return
	}
	var certPEM, keyPEM []byte
	if certFile != "" {
		if data, ok := f.read(certPath, certFile); ok {
			if _, err := parseCerts(data); err != nil {
				f.ck.add(certPath, "%s: %v", certFile, err)
			} else {
				certPEM = data
			}
		}
	}
	if keyFile != "" {
		if data, ok := f.read(keyPath, keyFile); ok {
			if err := parseKey(data); err != nil {
				f.ck.add(keyPath, "%s: %v", keyFile, err)
			} else {
				keyPEM = data
			}
		}
	}
	if certPEM != nil && keyPEM != nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			f.ck.add(keyPath, "%s does not go with %s (%v); give the key the certificate was issued for", keyFile, certFile, err)
		}
	}
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.HasSuffix(b.Type, "PRIVATE KEY") {
				return nil, errors.New("holds a private key, not a certificate; are cert and key swapped?")
			}
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" block); give a PEM certificate file")
	}
	return certs, nil
}

// parseKey checks for one PEM private key. Errors never quote the key.
func parseKey(data []byte) error {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return errors.New("holds no PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" block); give a PEM key file")
		}
		switch b.Type {
		case "CERTIFICATE":
			return errors.New("holds a certificate, not a private key; are cert and key swapped?")
		case "ENCRYPTED PRIVATE KEY":
			return errors.New("holds an encrypted private key; qrelayd needs it unencrypted (protect it with file permissions)")
		case "PRIVATE KEY":
			if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
				return errors.New("its PKCS #8 private key does not parse")
			}
			return nil
		case "EC PRIVATE KEY":
			if _, err := x509.ParseECPrivateKey(b.Bytes); err != nil {
				return errors.New("its EC private key does not parse")
			}
			return nil
		case "RSA PRIVATE KEY":
			if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
				return errors.New("its RSA private key does not parse")
			}
			return nil
		}
	}
}
