package kmlink

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/quic-go/quic-go"

	"github.com/qrelay/qrelay/internal/pki"
)

// maxRefusals bounds the memory of refusals already logged.
const maxRefusals = 1024

// Node IDs are not DNS names, so neither end relies on crypto/tls hostname
// verification: both verify the chain against Config.Roots and the node ID
// (pki.PeerID) themselves, in VerifyConnection, which also runs on resumed
// sessions (and session tickets are off anyway).

// serverTLS is the TLS configuration for links this node accepts. It
// requires a client certificate; GetConfigForClient makes a configuration
// per connection so that refusals can name the remote address.
func (t *Transport) serverTLS() *tls.Config {
	c := t.serverTLSFor("")
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		addr := "unknown address"
		if hello.Conn != nil {
			addr = hello.Conn.RemoteAddr().String()
		}
		if !slices.Contains(hello.SupportedProtos, ALPN) {
			t.refuse(addr, "", fmt.Sprintf("it offers ALPN %q, this node speaks only %q", hello.SupportedProtos, ALPN), alpnFix(hello.SupportedProtos))
			// crypto/tls refuses it with a no_application_protocol alert.
		}
		return t.serverTLSFor(addr), nil
	}
	return c
}

// alpnFix says what to do about a client that offers the ALPNs protos,
// none of them ALPN.
func alpnFix(protos []string) string {
	for _, p := range protos {
		if strings.HasPrefix(p, "qrelay/") {
			return fmt.Sprintf("the peer speaks another version of the KM link protocol (%s; this node %s): run qrelay versions of the same KM link protocol at both ends", p, ALPN)
		}
	}
	return "only qrelay nodes with a compatible KM link protocol may connect to this port"
}

func (t *Transport) serverTLSFor(addr string) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{t.cfg.Certificate},
		NextProtos:             []string{ALPN},
		ClientAuth:             tls.RequireAnyClientCert, // verified below against Config.Roots
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if _, err := t.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageClientAuth); err != nil {
				t.refuse(addr, claimedID(cs.PeerCertificates), err.Error(),
					"give the peer a node certificate issued by a CA this node trusts (qrelayctl pki)")
				return err
			}
			if cs.NegotiatedProtocol != ALPN {
				return fmt.Errorf("kmlink: node %s: ALPN %q negotiated with %s, want %q", t.cfg.NodeID, cs.NegotiatedProtocol, addr, ALPN)
			}
			return nil
		},
	}
}

// clientTLS is the TLS configuration to dial peer p.
func (t *Transport) clientTLS(p *peer) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cfg.Certificate},
		NextProtos:   []string{ALPN},
		ServerName:   p.id,
		// The chain and the node ID are verified in VerifyConnection: a
		// node ID is not a host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := t.verifyPeer(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			if id != p.id {
				return fmt.Errorf("kmlink: the certificate at %s names node %s, not node %s; check the address configured for node %s", p.addr, id, p.id, p.id)
			}
			if cs.NegotiatedProtocol != ALPN {
				return fmt.Errorf("kmlink: node %s at %s negotiated ALPN %q, want %q", p.id, p.addr, cs.NegotiatedProtocol, ALPN)
			}
			return nil
		},
	}
}

// verifyPeer verifies a peer's certificate chain against Config.Roots for
// usage and returns the node ID it names.
func (t *Transport) verifyPeer(certs []*x509.Certificate, usage x509.ExtKeyUsage) (string, error) {
	if len(certs) == 0 {
		return "", errors.New("kmlink: the peer presented no certificate")
	}
	leaf := certs[0]
	opts := x509.VerifyOptions{
		Roots:         t.cfg.Roots,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return "", fmt.Errorf("kmlink: certificate of %q (issuer %q) does not verify against the CA roots of node %s: %w",
			claimedID(certs), leaf.Issuer.CommonName, t.cfg.NodeID, err)
	}
	id, err := nodeID(leaf)
	if err != nil {
		return "", fmt.Errorf("kmlink: peer certificate: %w", err)
	}
	return id, nil
}

// nodeID is the node ID a certificate names (pki.PeerID). As PeerID falls
// back to the subject CN, a certificate that names another kind (an SAE)
// in a qrelay URI SAN is refused here, lest it pass as a node's.
func nodeID(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		if u.Scheme == "qrelay" && !strings.HasPrefix(u.Opaque, string(pki.Node)+":") {
			return "", fmt.Errorf("certificate of %q names %q, not a node", cert.Subject.CommonName, u.String())
		}
	}
	id, err := pki.PeerID(cert, pki.Node)
	if err != nil {
		return "", err
	}
	if err := pki.ValidID(id); err != nil {
		return "", fmt.Errorf("certificate names node %q: %w", id, err)
	}
	return id, nil
}

// claimedID is the node ID an unverified chain claims, for logs.
func claimedID(certs []*x509.Certificate) string {
	if len(certs) == 0 {
		return ""
	}
	id, _ := pki.PeerID(certs[0], pki.Node)
	return id
}

// refuse logs a refused connection once per remote address and claimed ID.
func (t *Transport) refuse(addr, claimed, reason, fix string) {
	key := addr + "\x00" + claimed
	t.mu.Lock()
	_, seen := t.refused[key]
	if !seen {
		if len(t.refused) >= maxRefusals {
			clear(t.refused)
		}
		t.refused[key] = struct{}{}
	}
	t.mu.Unlock()
	if !seen {
		t.log.Warn("kmlink: refused connection", "addr", addr, "peer", claimed, "reason", reason, "fix", fix)
	}
}

// resetKey derives the QUIC stateless reset key from the node's private
// key, so that it survives a restart: a restarted node can then reset its
// peers' stale connections at once instead of leaving them to time out.
// It returns nil (no stateless resets) for keys that cannot be exported.
func resetKey(cert tls.Certificate) *quic.StatelessResetKey {
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil
	}
	k, err := hkdf.Key(sha256.New, der, nil, "qrelay kmlink stateless reset key", len(quic.StatelessResetKey{}))
	if err != nil {
		return nil
	}
	var key quic.StatelessResetKey
	copy(key[:], k)
	return &key
}
