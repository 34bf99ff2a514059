// Package pki issues the certificates of a lab network: one CA, a
// certificate per node (for KM links and the admin API) and per SAE (for
// key delivery). Production networks bring their own PKI; qrelay only needs
// the identity rules below, which are shared with the code that checks them.
//
// Identity: a node's or an SAE's ID is the certificate's subject common name,
// repeated as a URI SAN "qrelay:node:<id>" or "qrelay:sae:<id>" so that
// verifiers need not trust a CN alone. Node certificates carry both
// server and client key usage (a KM link is mutual TLS in both directions).
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// Kind says what an identity names.
type Kind string

const (
	Node Kind = "node"
	SAE  Kind = "sae"
)

// CA is a lab certificate authority held in memory.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewCA makes a self-signed CA named name, valid for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"qrelay lab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Pool is a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issued is a certificate with its key, in tls and PEM form.
type Issued struct {
	TLS     tls.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Issue makes a certificate for the node or SAE id, valid for validity.
// hosts (DNS names or IP addresses) are added as SANs so that HTTPS clients
// can verify a server by address; the ID itself is checked with PeerID.
func (ca *CA) Issue(kind Kind, id string, validity time.Duration, hosts ...string) (*Issued, error) {
	if err := ValidID(id); err != nil {
		return nil, fmt.Errorf("pki: %s ID %q: %w", kind, id, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: key for %s %q: %w", kind, id, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: id, Organization: []string{"qrelay lab"}, OrganizationalUnit: []string{string(kind)}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:         []*url.URL{{Scheme: "qrelay", Opaque: string(kind) + ":" + id}},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate for %s %q: %w", kind, id, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issued{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// ValidID reports whether id can name a node or an SAE: 1 to 64 characters
// from [A-Za-z0-9._-]. The same rule names files and metadata keys.
func ValidID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("length %d: want 1 to 64 characters", len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("character %q at %d: use only A-Z a-z 0-9 . _ -", c, i)
		}
	}
	return nil
}

// PeerID returns the node or SAE ID a verified certificate names: the
// "qrelay:<kind>:<id>" URI SAN if there is one, else the subject CN. A
// certificate with a qrelay URI SAN of another kind is refused, so an SAE
// certificate whose CN happens to be a node ID never passes as that node.
func PeerID(cert *x509.Certificate, kind Kind) (string, error) {
	prefix := string(kind) + ":"
	other := ""
	for _, u := range cert.URIs {
		if u.Scheme != "qrelay" {
			continue
		}
		if strings.HasPrefix(u.Opaque, prefix) {
			return u.Opaque[len(prefix):], nil
		}
		other = u.Opaque
	}
	if other != "" {
		return "", fmt.Errorf("certificate is for %q, not a %s: use a %s certificate", other, kind, kind)
	}
	if cert.Subject.CommonName == "" {
		return "", errors.New("certificate names no " + string(kind) + " ID: no qrelay:" + prefix + "<id> URI SAN and an empty subject CN")
	}
	return cert.Subject.CommonName, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("pki: crypto/rand failed: " + err.Error())
	}
	return n
}
