package node

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/qrelay/qrelay/dataplane/relay"
	"github.com/qrelay/qrelay/ringstore"
)

// Pool roles. A node keeps two end-to-end key pools per remote node, split
// by which end relayed the keys:
//
//   - out: keys this node sourced. Its SAEs take them as masters
//     (enc_keys), and this node tells the remote which slave may fetch
//     them.
//   - in: keys the remote node sourced. The remote's SAEs take them as
//     masters; this node records the assignment it is sent and hands them
//     to the named slave (dec_keys).
//
// The out pool of one end holds the same keys as the in pool of the other,
// so the two ends never hand out the same key as master, and each end
// refills its own out pool by relaying.
const (
	roleOut = "out"
	roleIn  = "in"
)

// poolSet is the node's relay.Sink: a lazy pool sink per role.
type poolSet struct {
	self    string
	out, in *relay.PoolSink
}

func newPoolSet(self string, open func(remote, role string) (*ringstore.Pool, error)) *poolSet {
	return &poolSet{
		self: self,
		out:  relay.NewLazyPoolSink(func(remote string) (*ringstore.Pool, error) { return open(remote, roleOut) }),
		in:   relay.NewLazyPoolSink(func(remote string) (*ringstore.Pool, error) { return open(remote, roleIn) }),
	}
}

func (s *poolSet) sink(b *relay.Batch) *relay.PoolSink {
	if b.Src == s.self {
		return s.out
	}
	return s.in
}

// Deliver implements relay.Sink.
func (s *poolSet) Deliver(remote string, b *relay.Batch) error { return s.sink(b).Deliver(remote, b) }

// Discard implements relay.Sink.
func (s *poolSet) Discard(remote string, b *relay.Batch, count int) (int, error) {
	return s.sink(b).Discard(remote, b, count)
}

// pool returns the pool of remote in role, opening it if need be.
func (s *poolSet) pool(remote, role string) (*ringstore.Pool, error) {
	if role == roleOut {
		return s.out.Open(remote)
	}
	return s.in.Open(remote)
}

// existing returns the pool of remote in role if it is open, or if it
// is a durable pool on disk (meta not nil) after opening it; nil if there
// is none. It is for looking at a pool without creating it.
func (s *poolSet) existing(remote, role string, meta *ringstore.Meta) (*ringstore.Pool, error) {
	sink := s.in
	if role == roleOut {
		sink = s.out
	}
	if p := sink.Pool(remote); p != nil {
		return p, nil
	}
	if meta == nil {
		return nil, nil
	}
	ok, err := ringstore.PoolExists(meta, poolName(remote, role))
	if err != nil || !ok {
		return nil, err
	}
	return sink.Open(remote)
}

// poolEntry is one open pool.
type poolEntry struct {
	remote, role string
	pool         *ringstore.Pool
}

// all lists the open pools, by remote then role.
func (s *poolSet) all() []poolEntry {
	var out []poolEntry
	for _, r := range []struct {
		role string
		sink *relay.PoolSink
	}{{roleIn, s.in}, {roleOut, s.out}} {
		for remote, p := range r.sink.Pools() {
			out = append(out, poolEntry{remote, r.role, p})
		}
	}
	slices.SortFunc(out, func(a, b poolEntry) int {
		if c := strings.Compare(a.remote, b.remote); c != 0 {
			return c
		}
		return strings.Compare(a.role, b.role)
	})
	return out
}

// poolName names the pool of remote in role for files and metadata: the
// role's letter, a dash and the remote's ID, or a hash of the ID when that
// would exceed the 64 characters a pool name may have.
func poolName(remote, role string) string {
	name := role[:1] + "-" + remote
	if len(name) > 64 {
		sum := sha256.Sum256([]byte(remote))
		name = role[:1] + "-h" + hex.EncodeToString(sum[:20])
	}
	return name
}

// openStoredPools opens, in the background and in parallel, the durable
// pools a node finds on disk at start: reading a pool's index takes a
// moment, and the first relay, enc_keys or reconciliation with each node
// would otherwise wait for it. Pools whose name is a hash of a long node
// ID are left to open when first needed.
func (n *Node) openStoredPools() {
	if n.meta == nil {
		return
	}
	entries, err := os.ReadDir(filepath.Join(n.cfg.Storage.Dir, "pools"))
	if err != nil {
		return // none yet
	}
	for _, e := range entries {
		name, ok1 := strings.CutPrefix(e.Name(), "pool-")
		name, ok2 := strings.CutSuffix(name, ".slots")
		if !ok1 || !ok2 {
			continue
		}
		letter, remote, _ := strings.Cut(name, "-")
		role := map[string]string{"o": roleOut, "i": roleIn}[letter]
		if role == "" || remote == "" || poolName(remote, role) != name {
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if _, err := n.sink.pool(remote, role); err != nil {
				n.log.Warn("end-to-end key pool not opened at start; it is tried again when needed", "remote", remote, "role", role, "err", err)
			}
		}()
	}
}

// openPool opens the pool shared with node remote in role, the first time
// it is needed.
func (n *Node) openPool(remote, role string) (*ringstore.Pool, error) {
	pc := n.cfg.Pools
	c := ringstore.PoolConfig{
		Name:     poolName(remote, role),
		Slots:    pc.Slots,
		SlotSize: pc.SlotSize,
		TTL:      pc.TTL,
	}
	if n.meta != nil {
		c.Dir = filepath.Join(n.cfg.Storage.Dir, "pools")
		c.Meta = n.meta
		if err := os.MkdirAll(c.Dir, 0o700); err != nil {
			return nil, err
		}
	}
	if role == roleOut {
		// The filler keeps an out pool between the watermarks; OnLow
		// wakes it at once when stock falls below the configured one.
		c.Low, c.High = pc.Low, pc.High
		c.OnLow = func(int) { n.wakeFiller(remote) }
	}
	p, err := ringstore.OpenPool(c)
	if err == nil {
		n.log.Info("end-to-end key pool opened", "remote", remote, "role", role, "slots", pc.Slots, "durable", n.meta != nil)
	}
	return p, err
}
