// Package pki issues the certificates of a lab network: one CA, a
// certificate per node (for KM links and the admin API), per SAE (for key
// delivery) and per operator (for the admin API's clients). Production
// networks bring their own PKI; qrelay only needs the identity rules below,
// which are shared with the code that checks them.
//
// Identity: a node's, an SAE's or an operator's ID is the certificate's
// subject common name, repeated as a URI SAN "qrelay:node:<id>",
// "qrelay:sae:<id>" or "qrelay:operator:<id>" so that verifiers need not
// trust a CN alone. Node and SAE certificates carry both server and client
// key usage (a KM link is mutual TLS in both directions); operator
// certificates are for clients only.
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

	"github.com/qrelay/qrelay/internal/ids"
)

// Kind says what an identity names.
type Kind string

const (
	Node     Kind = "node"
	SAE      Kind = "sae"
	Operator Kind = "operator" // a person or script driving the admin API
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

// KeyPEM is the CA's private key as a PKCS #8 "PRIVATE KEY" PEM block, for
// a lab CA directory from which LoadCA can issue more certificates later.
// Whoever writes it to disk makes the file readable by its owner only.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadCA loads a CA written as CertPEM and KeyPEM. The certificate must be a
// CA's and the key (PKCS #8 or SEC 1 "EC PRIVATE KEY") must be an ECDSA key
// matching it.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("pki: CA certificate: no CERTIFICATE PEM block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("pki: certificate %q is not a CA's (basic constraints say CA:false)", cert.Subject.CommonName)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("pki: CA key: no PEM block")
	}
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("pki: CA key: PEM block %q, want PRIVATE KEY or EC PRIVATE KEY", kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: CA key is a %T, want an ECDSA key", key)
	}
	if !ec.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("pki: CA key does not match the certificate of %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: ec, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

// Issued is a certificate with its key, in tls and PEM form.
type Issued struct {
	TLS     tls.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Issue makes a certificate for the node, SAE or operator id, valid for
// validity. hosts (DNS names or IP addresses) are added as SANs so that
// HTTPS clients can verify a server by address; the ID itself is checked
// with PeerID.
func (ca *CA) Issue(kind Kind, id string, validity time.Duration, hosts ...string) (*Issued, error) {
	if kind != Node && kind != SAE && kind != Operator {
		return nil, fmt.Errorf("pki: kind %q: want %q, %q or %q", kind, Node, SAE, Operator)
	}
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
		ExtKeyUsage:  extKeyUsage(kind),
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

// extKeyUsage is what a certificate of kind may be used for: an operator
// only ever connects as a client, so its certificate cannot serve.
func extKeyUsage(kind Kind) []x509.ExtKeyUsage {
	if kind == Operator {
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
}

// ValidID reports whether id can name a node, an SAE or an operator: it
// is ids.Valid, the one ID rule, kept here for the callers that check an
// ID they put in or read from a certificate.
func ValidID(id string) error { return ids.Valid(id) }

// PeerID returns the node, SAE or operator ID a verified certificate names:
// the "qrelay:<kind>:<id>" URI SAN if there is one, else the subject CN. A
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
		a := "a"
		if kind == Operator {
			a = "an"
		}
		return "", fmt.Errorf("certificate is for %q, not %s %s: use %s %s certificate", other, a, kind, a, kind)
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
