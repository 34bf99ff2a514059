// Package lab builds qrelay networks on one machine, for the demo and for
// the tests that run nodes in process (node) or as processes
// (cmd/qrelayd): a directory with a lab PKI (internal/pki), one typed
// config per node (Config, written as YAML that config's strict decoder
// reads), KM links with the same seed at both ends, loopback ports from
// internal/freeport, and a supervisor for node processes (Proc).
package lab

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/internal/freeport"
	"github.com/qrelay/qrelay/internal/pki"
)

// CAFile is the name, in a lab directory, of the CA certificate that
// signs every node, SAE and operator certificate of the lab.
const CAFile = "ca.pem"

// Lab is a lab directory and the CA of its certificates.
type Lab struct {
	Dir      string
	CA       *pki.CA
	Lifetime time.Duration // of every certificate
}

// New makes a CA called caName whose certificates live for lifetime, and
// writes its certificate to dir/ca.pem.
func New(dir, caName string, lifetime time.Duration) (*Lab, error) {
	ca, err := pki.NewCA(caName, lifetime)
	if err != nil {
		return nil, err
	}
	l := &Lab{Dir: dir, CA: ca, Lifetime: lifetime}
	if _, err := l.Write(CAFile, ca.CertPEM); err != nil {
		return nil, err
	}
	return l, nil
}

// Write writes data to the file name of the lab directory, readable by
// this user only, and returns its path.
func (l *Lab) Write(name string, data []byte) (string, error) {
	p := filepath.Join(l.Dir, name)
	return p, os.WriteFile(p, data, 0o600)
}

// Issue issues a certificate of kind for id, valid for hosts, and, unless
// file is "", writes it and its key to file.pem and file.key.
func (l *Lab) Issue(kind pki.Kind, id, file string, hosts ...string) (tls.Certificate, error) {
	c, err := l.CA.Issue(kind, id, l.Lifetime, hosts...)
	if err != nil {
		return tls.Certificate{}, err
	}
	if file == "" {
		return c.TLS, nil
	}
	_, e1 := l.Write(file+".pem", c.CertPEM)
	_, e2 := l.Write(file+".key", c.KeyPEM)
	return c.TLS, errors.Join(e1, e2)
}

// Node issues node id's certificate for 127.0.0.1 (node-<id>.pem and
// .key) and returns the start of its config: its ID, its TLS files and a
// KM listen address on a free loopback port.
func (l *Lab) Node(id string) (*Config, error) {
	file := "node-" + id
	if _, err := l.Issue(pki.Node, id, file, "127.0.0.1"); err != nil {
		return nil, err
	}
	km, err := freeport.Pick("udp")
	if err != nil {
		return nil, err
	}
	return &Config{
		Node: Node{ID: id},
		TLS:  TLS{CA: CAFile, Cert: file + ".pem", Key: file + ".key"},
		KM:   KM{Listen: km},
	}, nil
}

// ConfigFile is the name of node id's config in the lab directory.
func ConfigFile(id string) string { return "node-" + id + ".yaml" }

// WriteConfig writes c, headed by comment, to the lab directory as
// ConfigFile(c.Node.ID) and returns its path and contents.
func (l *Lab) WriteConfig(c *Config, comment string) (string, []byte, error) {
	data, err := c.Marshal(comment)
	if err != nil {
		return "", nil, err
	}
	p, err := l.Write(ConfigFile(c.Node.ID), data)
	return p, data, err
}

// Connect adds the KM link between a and b to both configs. end(me, peer)
// gives each end's link (pads, source); Connect fills in the peer and, at
// the lower ID, which dials, the address dial, or the higher ID's KM
// listen address if dial is "".
func Connect(a, b *Config, dial string, end func(me, peer string) Link) {
	lo, hi := a, b
	if hi.Node.ID < lo.Node.ID {
		lo, hi = hi, lo
	}
	if dial == "" {
		dial = hi.KM.Listen
	}
	ll := end(lo.Node.ID, hi.Node.ID)
	ll.Peer, ll.Address = hi.Node.ID, dial
	hl := end(hi.Node.ID, lo.Node.ID)
	hl.Peer, hl.Address = lo.Node.ID, ""
	lo.Links = append(lo.Links, ll)
	hi.Links = append(hi.Links, hl)
}

// Seed is the simulator seed numbered n, as the tests use: n in hex,
// 64 digits.
func Seed(n int) string { return fmt.Sprintf("%064x", n) }

// RandomSeed is a fresh random simulator seed.
func RandomSeed() string {
	var s [config.SeedSize]byte
	rand.Read(s[:])
	return hex.EncodeToString(s[:])
}
