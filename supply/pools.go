package supply

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
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
	RoleOut = "out"
	RoleIn  = "in"
)

// poolSet is the node's relay.Sink: a lazy pool sink per role.
type poolSet struct {
	self    string
	out, in *relay.PoolSink
}

func newPoolSet(self string, open func(remote, role string) (*ringstore.Pool, error)) *poolSet {
	return &poolSet{
		self: self,
		out:  relay.NewLazyPoolSink(func(remote string) (*ringstore.Pool, error) { return open(remote, RoleOut) }),
		in:   relay.NewLazyPoolSink(func(remote string) (*ringstore.Pool, error) { return open(remote, RoleIn) }),
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
	if role == RoleOut {
		return s.out.Open(remote)
	}
	return s.in.Open(remote)
}

// existing returns the pool of remote in role if it is open, or if it
// is a durable pool on disk (meta not nil) after opening it; nil if there
// is none. It is for looking at a pool without creating it.
func (s *poolSet) existing(remote, role string, meta *ringstore.Meta) (*ringstore.Pool, error) {
	sink := s.in
	if role == RoleOut {
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

// PoolEntry is one open pool: the remote node it is shared with and its
// role (RoleOut, RoleIn).
type PoolEntry struct {
	Remote, Role string
	Pool         *ringstore.Pool
}

// all lists the open pools, by remote then role.
func (s *poolSet) all() []PoolEntry {
	var out []PoolEntry
	for _, r := range []struct {
		role string
		sink *relay.PoolSink
	}{{RoleIn, s.in}, {RoleOut, s.out}} {
		for remote, p := range r.sink.Pools() {
			out = append(out, PoolEntry{remote, r.role, p})
		}
	}
	slices.SortFunc(out, func(a, b PoolEntry) int {
		if c := strings.Compare(a.Remote, b.Remote); c != 0 {
			return c
		}
		return strings.Compare(a.Role, b.Role)
	})
	return out
}

// poolName names the pool of remote in role for files and metadata: the
// role's letter, a dash and the remote's ID, or a hash of the ID when that
// would exceed the 64 characters a pool name may have.
func poolName(remote, role string) string {
	name := role[:1] + "-" + remote
	if len(name) > ringstore.MaxPoolNameLen {
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
func (svc *Service) openStoredPools() {
	if svc.meta == nil {
		return
	}
	entries, err := os.ReadDir(svc.cfg.PoolDir)
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
		role := map[string]string{"o": RoleOut, "i": RoleIn}[letter]
		if role == "" || remote == "" || poolName(remote, role) != name {
			continue
		}
		svc.wg.Add(1)
		go func() {
			defer svc.wg.Done()
			if _, err := svc.sink.pool(remote, role); err != nil {
				svc.log.Warn("end-to-end key pool not opened at start; it is tried again when needed", "remote", remote, "role", role, "err", err)
			}
		}()
	}
}

// openPool opens the pool shared with node remote in role, the first time
// it is needed.
func (svc *Service) openPool(remote, role string) (*ringstore.Pool, error) {
	pc := svc.cfg.Pools
	c := ringstore.PoolConfig{
		Name:     poolName(remote, role),
		Slots:    pc.Slots,
		SlotSize: pc.SlotSize,
		TTL:      pc.TTL,
	}
	if svc.meta != nil {
		c.Dir = svc.cfg.PoolDir
		c.Meta = svc.meta
		if err := os.MkdirAll(c.Dir, 0o700); err != nil {
			return nil, err
		}
	}
	if role == RoleOut {
		// The filler keeps an out pool between the watermarks; OnLow
		// wakes it at once when stock falls below the configured one.
		c.Low, c.High = pc.Low, pc.High
		c.OnLow = func(int) { svc.wakeFiller(remote) }
	}
	p, err := ringstore.OpenPool(c)
	if err == nil {
		svc.log.Info("end-to-end key pool opened", "remote", remote, "role", role, "slots", pc.Slots, "durable", svc.meta != nil)
	}
	return p, err
}
