package supply

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/qrelay/qrelay/internal/audit"
	"github.com/qrelay/qrelay/ringstore"
)

var (
	errNotAssigned = errors.New("not handed out to any master SAE yet")
	errNotYours    = errors.New("assigned to another SAE")
)

// route checks that master is this node's SAE and finds slave's node.
func (svc *Service) route(master, slave string) (string, error) {
	if node, ok := svc.saeNode(master); !ok || node != svc.cfg.NodeID {
		return "", ErrUnauthorized // a certificate the CA signed, for an SAE this node does not serve
	}
	node, ok := svc.saeNode(slave)
	switch {
	case !ok:
		return "", BadRequest(fmt.Sprintf("slave SAE %q is unknown to KME %s: it must be listed in the node's saes: with the node that serves it", slave, svc.cfg.NodeID))
	case node == svc.cfg.NodeID:
		return "", BadRequest(fmt.Sprintf("slave SAE %q is served by this KME (%s) too: qrelay delivers keys between SAEs of different nodes", slave, node))
	}
	return node, nil
}

func (svc *Service) keySize() int { return svc.cfg.KeySize }

// Status implements KeyService.
func (svc *Service) Status(ctx context.Context, master, slave string) (Status, error) {
	remote, err := svc.route(master, slave)
	if err != nil {
		return Status{}, err
	}
	p, err := svc.sink.pool(remote, RoleOut)
	if err != nil {
		return Status{}, err
	}
	st := p.Stats()
	e := svc.cfg
	return Status{
		SourceKMEID: svc.cfg.NodeID, TargetKMEID: remote, MasterSAEID: master, SlaveSAEID: slave,
		KeySize: e.KeySize, StoredKeyCount: st.Stock, MaxKeyCount: st.Capacity,
		MaxKeyPerRequest: e.MaxKeysPerRequest, MaxKeySize: e.KeySize, MinKeySize: e.KeySize,
		MaxSAEIDCount: 0,
	}, nil
}

// EncKeys implements KeyService: the keys leave this node's out
// pool for the slave's node only once that node has recorded who may
// fetch them.
func (svc *Service) EncKeys(ctx context.Context, req EncRequest) ([]Key, error) {
	remote, err := svc.route(req.Master, req.Slave)
	if err != nil {
		return nil, err
	}
	if len(req.AdditionalSlaves) > 0 {
		return nil, BadRequest("additional_slave_SAE_IDs is not supported: max_SAE_ID_count is 0")
	}
	if req.Size != svc.keySize() {
		return nil, BadRequest(fmt.Sprintf("size %d is not served: this KME serves keys of %d bits (key_size, min_key_size and max_key_size in status)", req.Size, svc.keySize()))
	}
	// While the pools shared with remote are reconciled after a restart,
	// wait for it a little, then answer 503.
	gctx, cancel := context.WithTimeout(ctx, svc.cfg.AssignTimeout)
	leave, err := svc.gate.enter(gctx, remote)
	cancel()
	if err != nil {
		return nil, Unavailable(fmt.Sprintf("the key pools shared with node %s are being reconciled after a restart (%v)", remote, err))
	}
	defer leave()
	p, err := svc.sink.pool(remote, RoleOut)
	if err != nil {
		return nil, err
	}
	// Reserved keys first: assigned at both ends already, unless the
	// slave's node restarted since (then the pools' reconciliation drops
	// them where they are gone).
	var keys []ringstore.Key
	r := svc.reservationFor(remote, req.Master, req.Slave)
	if svc.syncer.poolsAgreed(remote) {
		if ids := r.take(req.Number); ids != nil {
			keys, err = p.TakeByIDs(ids)
			if err != nil {
				// Expired meanwhile (pools.ttl): ask the slow way.
				svc.log.Debug("reserved keys gone; assigning others", "remote", remote, "err", err)
				keys = nil
			}
		}
	}
	if keys == nil {
		if keys, err = svc.assignNow(ctx, p, remote, req); err != nil {
			return nil, err
		}
	}
	svc.took(remote, len(keys))
	out := make([]Key, len(keys))
	ids := make([]ringstore.KeyID, len(keys))
	size := svc.keySize() / 8
	for i, key := range keys {
		out[i] = Key{ID: key.ID.String(), Bytes: key.Bytes[:size]}
		ids[i] = key.ID
	}
	svc.audit.KeysHanded(remote, req.Master, audit.RoleMaster, ids)
	return out, nil
}

// assignNow takes keys not reserved and waits for the slave's node to
// record who may fetch them.
func (svc *Service) assignNow(ctx context.Context, p *ringstore.Pool, remote string, req EncRequest) ([]ringstore.Key, error) {
	owner, err := ownerOf(Assignment{Master: req.Master, Slaves: []string{req.Slave}})
	if err != nil {
		return nil, BadRequest(err.Error())
	}
	keys, err := p.TakeNextFree(req.Number, owner)
	if errors.Is(err, ringstore.ErrPoolEmpty) {
		svc.wakeFiller(remote)
		return nil, Unavailable(fmt.Sprintf("the key pool for SAEs of node %s holds %d keys, %d asked: it is being refilled by relay; retry shortly",
			remote, p.Stats().Stock, req.Number))
	}
	if err != nil {
		return nil, err
	}
	ids := make([]ringstore.KeyID, len(keys))
	for i, key := range keys {
		ids[i] = key.ID
	}
	actx, cancel := context.WithTimeout(ctx, svc.cfg.AssignTimeout)
	err = svc.assigner.assign(actx, remote, req.Master, []string{req.Slave}, ids)
	cancel()
	if err != nil {
		for _, key := range keys {
			clear(key.Bytes)
		}
		svc.assigner.cancel(remote, ids)
		svc.metrics.AssignFailed(remote)
		return nil, Unavailable(fmt.Sprintf("node %s did not confirm who may fetch the keys (%v); they were discarded: retry", remote, err))
	}
	return keys, nil
}

// DecKeys implements KeyService: only the slave named when the
// keys were handed out gets them, and a refused request takes nothing.
func (svc *Service) DecKeys(ctx context.Context, req DecRequest) ([]Key, error) {
	if node, ok := svc.saeNode(req.Slave); !ok || node != svc.cfg.NodeID {
		return nil, ErrUnauthorized
	}
	remote, ok := svc.saeNode(req.Master)
	if !ok || remote == svc.cfg.NodeID {
		return nil, BadRequest("one or more keys specified are not found on KME",
			map[string]any{"master_SAE_ID": req.Master, "reason": "not an SAE of another node this KME knows"})
	}
	ids := make([]ringstore.KeyID, len(req.IDs))
	for i, s := range req.IDs {
		id, err := ringstore.ParseKeyID(s)
		if err != nil {
			return nil, BadRequest(fmt.Sprintf("key_ID %d: %v", i, err))
		}
		ids[i] = id
	}
	p, err := svc.sink.pool(remote, RoleIn)
	if err != nil {
		return nil, err
	}
	var owners assignments
	keys, err := p.TakeByIDsIf(ids, func(id ringstore.KeyID, o ringstore.Owner) error {
		a, err := owners.of(o)
		switch {
		case err != nil:
			return fmt.Errorf("%w: %v", errNotYours, err)
		case a.Master == "":
			return errNotAssigned
		case a.Master != req.Master || !slices.Contains(a.Slaves, req.Slave):
			return errNotYours
		}
		return nil
	})
	switch {
	case errors.Is(err, errNotYours):
		svc.log.Warn("dec_keys refused: keys assigned to another SAE", "sae", req.Slave, "master", req.Master, "keys", len(ids))
		return nil, ErrUnauthorized
	case errors.Is(err, errNotAssigned), errors.Is(err, ringstore.ErrUnknownKey):
		return nil, BadRequest("one or more keys specified are not found on KME", map[string]any{"reason": err.Error()})
	case errors.Is(err, ringstore.ErrDuplicateKey):
		return nil, BadRequest("a key_ID is given twice", map[string]any{"reason": err.Error()})
	case err != nil:
		return nil, err
	}
	svc.audit.KeysHanded(remote, req.Slave, audit.RoleSlave, ids)
	out := make([]Key, len(keys))
	size := svc.keySize() / 8
	for i, key := range keys {
		out[i] = Key{ID: key.ID.String(), Bytes: key.Bytes[:min(size, len(key.Bytes))]}
	}
	return out, nil
}
