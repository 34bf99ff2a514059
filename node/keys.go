package node

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/ringstore"
	"github.com/qrelay/qrelay/supply"
)

// saeNode returns the node that serves SAE id, per the config.
func (n *Node) saeNode(id string) (string, bool) {
	for _, s := range n.SAEs() {
		if s.ID == id {
			return s.Node, true
		}
	}
	return "", false
}

// keyService is the node behind its ETSI GS QKD 014 API.
type keyService struct{ n *Node }

var (
	errNotAssigned = errors.New("not handed out to any master SAE yet")
	errNotYours    = errors.New("assigned to another SAE")
)

// route checks that master is this node's SAE and finds slave's node.
func (k keyService) route(master, slave string) (string, error) {
	n := k.n
	if node, ok := n.saeNode(master); !ok || node != n.cfg.Node.ID {
		return "", supply.ErrUnauthorized // a certificate the CA signed, for an SAE this node does not serve
	}
	node, ok := n.saeNode(slave)
	switch {
	case !ok:
		return "", supply.BadRequest(fmt.Sprintf("slave SAE %q is unknown to KME %s: it must be listed in the node's saes: with the node that serves it", slave, n.cfg.Node.ID))
	case node == n.cfg.Node.ID:
		return "", supply.BadRequest(fmt.Sprintf("slave SAE %q is served by this KME (%s) too: qrelay delivers keys between SAEs of different nodes", slave, node))
	}
	return node, nil
}

func (k keyService) keySize() int { return k.n.cfg.API.ETSI014.KeySize }

// Status implements supply.KeyService.
func (k keyService) Status(ctx context.Context, master, slave string) (supply.Status, error) {
	remote, err := k.route(master, slave)
	if err != nil {
		return supply.Status{}, err
	}
	p, err := k.n.sink.pool(remote, roleOut)
	if err != nil {
		return supply.Status{}, err
	}
	st := p.Stats()
	e := k.n.cfg.API.ETSI014
	return supply.Status{
		SourceKMEID: k.n.cfg.Node.ID, TargetKMEID: remote, MasterSAEID: master, SlaveSAEID: slave,
		KeySize: e.KeySize, StoredKeyCount: st.Stock, MaxKeyCount: st.Capacity,
		MaxKeyPerRequest: e.MaxKeysPerRequest, MaxKeySize: e.KeySize, MinKeySize: e.KeySize,
		MaxSAEIDCount: 0,
	}, nil
}

// EncKeys implements supply.KeyService: the keys leave this node's out
// pool for the slave's node only once that node has recorded who may
// fetch them.
func (k keyService) EncKeys(ctx context.Context, req supply.EncRequest) ([]supply.Key, error) {
	n := k.n
	remote, err := k.route(req.Master, req.Slave)
	if err != nil {
		return nil, err
	}
	if len(req.AdditionalSlaves) > 0 {
		return nil, supply.BadRequest("additional_slave_SAE_IDs is not supported: max_SAE_ID_count is 0")
	}
	if req.Size != k.keySize() {
		return nil, supply.BadRequest(fmt.Sprintf("size %d is not served: this KME serves keys of %d bits (key_size, min_key_size and max_key_size in status)", req.Size, k.keySize()))
	}
	// While the pools shared with remote are reconciled after a restart,
	// wait for it a little, then answer 503.
	gctx, cancel := context.WithTimeout(ctx, n.cfg.API.ETSI014.AssignTimeout)
	leave, err := n.gate.enter(gctx, remote)
	cancel()
	if err != nil {
		return nil, supply.Unavailable(fmt.Sprintf("the key pools shared with node %s are being reconciled after a restart (%v)", remote, err))
	}
	defer leave()
	p, err := n.sink.pool(remote, roleOut)
	if err != nil {
		return nil, err
	}
	// Reserved keys first: assigned at both ends already, unless the
	// slave's node restarted since (then the pools' reconciliation drops
	// them where they are gone).
	var keys []ringstore.Key
	r := n.reservationFor(remote, req.Master, req.Slave)
	if n.syncer.poolsAgreed(remote) {
		if ids := r.take(req.Number); ids != nil {
			keys, err = p.TakeByIDs(ids)
			if err != nil {
				// Expired meanwhile (pools.ttl): ask the slow way.
				n.log.Debug("reserved keys gone; assigning others", "remote", remote, "err", err)
				keys = nil
			}
		}
	}
	if keys == nil {
		if keys, err = k.assignNow(ctx, p, remote, req); err != nil {
			return nil, err
		}
	}
	n.took(remote, len(keys))
	out := make([]supply.Key, len(keys))
	ids := make([]ringstore.KeyID, len(keys))
	size := k.keySize() / 8
	for i, key := range keys {
		out[i] = supply.Key{ID: key.ID.String(), Bytes: key.Bytes[:size]}
		ids[i] = key.ID
	}
	n.audit.KeysHanded(remote, req.Master, audit.RoleMaster, ids)
	return out, nil
}

// assignNow takes keys not reserved and waits for the slave's node to
// record who may fetch them.
func (k keyService) assignNow(ctx context.Context, p *ringstore.Pool, remote string, req supply.EncRequest) ([]ringstore.Key, error) {
	n := k.n
	keys, err := p.TakeNextFree(req.Number, ringstore.Assignment{Master: req.Master, Slaves: []string{req.Slave}})
	if errors.Is(err, ringstore.ErrPoolEmpty) {
		n.wakeFiller(remote)
		return nil, supply.Unavailable(fmt.Sprintf("the key pool for SAEs of node %s holds %d keys, %d asked: it is being refilled by relay; retry shortly",
			remote, p.Stats().Stock, req.Number))
	}
	if err != nil {
		return nil, err
	}
	ids := make([]ringstore.KeyID, len(keys))
	for i, key := range keys {
		ids[i] = key.ID
	}
	actx, cancel := context.WithTimeout(ctx, n.cfg.API.ETSI014.AssignTimeout)
	err = n.assigner.assign(actx, remote, req.Master, []string{req.Slave}, ids)
	cancel()
	if err != nil {
		for _, key := range keys {
			clear(key.Bytes)
		}
		n.assigner.cancel(remote, ids)
		n.metrics.assignFailed(remote)
		return nil, supply.Unavailable(fmt.Sprintf("node %s did not confirm who may fetch the keys (%v); they were discarded: retry", remote, err))
	}
	return keys, nil
}

// DecKeys implements supply.KeyService: only the slave named when the
// keys were handed out gets them, and a refused request takes nothing.
func (k keyService) DecKeys(ctx context.Context, req supply.DecRequest) ([]supply.Key, error) {
	n := k.n
	if node, ok := n.saeNode(req.Slave); !ok || node != n.cfg.Node.ID {
		return nil, supply.ErrUnauthorized
	}
	remote, ok := n.saeNode(req.Master)
	if !ok || remote == n.cfg.Node.ID {
		return nil, supply.BadRequest("one or more keys specified are not found on KME",
			map[string]any{"master_SAE_ID": req.Master, "reason": "not an SAE of another node this KME knows"})
	}
	ids := make([]ringstore.KeyID, len(req.IDs))
	for i, s := range req.IDs {
		id, err := ringstore.ParseKeyID(s)
		if err != nil {
			return nil, supply.BadRequest(fmt.Sprintf("key_ID %d: %v", i, err))
		}
		ids[i] = id
	}
	p, err := n.sink.pool(remote, roleIn)
	if err != nil {
		return nil, err
	}
	keys, err := p.TakeByIDsIf(ids, func(id ringstore.KeyID, a ringstore.Assignment) error {
		switch {
		case a.Master == "":
			return errNotAssigned
		case a.Master != req.Master || !slices.Contains(a.Slaves, req.Slave):
			return errNotYours
		}
		return nil
	})
	switch {
	case errors.Is(err, errNotYours):
		n.log.Warn("dec_keys refused: keys assigned to another SAE", "sae", req.Slave, "master", req.Master, "keys", len(ids))
		return nil, supply.ErrUnauthorized
	case errors.Is(err, errNotAssigned), errors.Is(err, ringstore.ErrUnknownKey):
		return nil, supply.BadRequest("one or more keys specified are not found on KME", map[string]any{"reason": err.Error()})
	case errors.Is(err, ringstore.ErrDuplicateKey):
		return nil, supply.BadRequest("a key_ID is given twice", map[string]any{"reason": err.Error()})
	case err != nil:
		return nil, err
	}
	n.audit.KeysHanded(remote, req.Slave, audit.RoleSlave, ids)
	out := make([]supply.Key, len(keys))
	size := k.keySize() / 8
	for i, key := range keys {
		out[i] = supply.Key{ID: key.ID.String(), Bytes: key.Bytes[:min(size, len(key.Bytes))]}
	}
	return out, nil
}
