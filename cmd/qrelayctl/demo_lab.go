package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/internal/freeport"
	"github.com/qrelay/qrelay/internal/lab"
	"github.com/qrelay/qrelay/internal/pki"
	"github.com/qrelay/qrelay/node/adminapi"
)

// demoLab is what makeLab wrote: a PKI and one config per node.
type demoLab struct {
	dir      string
	roots    *x509.CertPool
	operator tls.Certificate
	saes     map[string]tls.Certificate
	nodes    []*labNode
}

// labNode is one node of the lab.
type labNode struct {
	id               string
	cfgPath, logPath string
	km, admin, etsi  string // listen addresses; etsi "" for none
	api              *adminapi.Client
	etsiURL          string
}

func (l *demoLab) node(id string) *labNode {
	for _, n := range l.nodes {
		if n.id == id {
			return n
		}
	}
	panic("demo: no node " + id)
}

// makeLab writes into dir a lab PKI (CA, node, SAE and operator
// certificates) and the three nodes' configs, on free loopback ports and
// with fresh random seeds, and checks each config as qrelayd will.
func makeLab(dir string, rate config.Rate, keysPerRequest int) (*demoLab, error) {
	l, err := lab.New(dir, "qrelay demo CA", demoCertLifetime)
	if err != nil {
		return nil, err
	}
	caKey, err := l.CA.KeyPEM()
	if err != nil {
		return nil, err
	}
	if _, err := l.Write("ca.key", caKey); err != nil {
		return nil, err
	}
	d := &demoLab{dir: dir, roots: l.CA.Pool(), saes: map[string]tls.Certificate{}}
	if d.operator, err = l.Issue(pki.Operator, demoOperator, "operator"); err != nil {
		return nil, err
	}
	for _, id := range []string{demoMasterSAE, demoSlaveSAE} {
		if d.saes[id], err = l.Issue(pki.SAE, id, id); err != nil {
			return nil, err
		}
	}
	cfgs := map[string]*lab.Config{}
	for _, id := range demoNodes {
		cfg, err := l.Node(id)
		if err != nil {
			return nil, err
		}
		n := &labNode{
			id:      id,
			cfgPath: filepath.Join(dir, lab.ConfigFile(id)),
			logPath: filepath.Join(dir, "node-"+id+".log"),
			km:      cfg.KM.Listen,
		}
		if n.admin, err = freeport.Pick("tcp"); err != nil {
			return nil, err
		}
		cfg.API.Admin.Listen = n.admin
		cfg.Pools.Slots = 65536
		switch id {
		case demoMasterNode:
			cfg.SAEs = []lab.SAE{{ID: demoMasterSAE}, {ID: demoSlaveSAE, Node: demoSlaveNode}}
		case demoSlaveNode:
			cfg.SAEs = []lab.SAE{{ID: demoSlaveSAE}, {ID: demoMasterSAE, Node: demoMasterNode}}
		}
		if len(cfg.SAEs) > 0 {
			if n.etsi, err = freeport.Pick("tcp"); err != nil {
				return nil, err
			}
			n.etsiURL = "https://" + n.etsi
			cfg.API.ETSI014 = lab.ETSI014API{Listen: n.etsi, KeySize: demoKeyBits, MaxKeysPerRequest: max(keysPerRequest, config.DefaultMaxKeysPerRequest)}
		}
		n.api = adminapi.NewClient("https://"+n.admin, d.operator, d.roots)
		d.nodes = append(d.nodes, n)
		cfgs[id] = cfg
	}
	// Large blocks keep a fast simulated link cheap to run.
	block := 4 * config.KiB
	if rate == config.Unlimited || rate >= 50e6 {
		block = 64 * config.KiB
	}
	for _, e := range demoEdges {
		seed := lab.RandomSeed()
		lab.Connect(cfgs[e[0]], cfgs[e[1]], "", func(_, _ string) lab.Link {
			return lab.Link{PadCapacity: 16 * config.MiB, Source: lab.Source{Simulator: &lab.Simulator{Seed: seed, Rate: rate, BlockSize: block}}}
		})
	}
	for _, n := range d.nodes {
		comment := fmt.Sprintf("Node %s of the demo network, written by \"qrelayctl demo\".\n"+
			"Its QKD links are SIMULATED: no quantum security; each link's seed\n"+
			"is the same at both ends. config/example.yaml documents every field.", n.id)
		if _, _, err := l.WriteConfig(cfgs[n.id], comment); err != nil {
			return nil, err
		}
		if _, err := config.Load(n.cfgPath); err != nil {
			return nil, fmt.Errorf("the demo wrote a config qrelayd refuses (a bug in the demo): %w", err)
		}
	}
	return d, nil
}
