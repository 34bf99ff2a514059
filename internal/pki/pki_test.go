package pki

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestIssueAndPeerID(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.Issue(Node, "node-1", time.Hour, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	sae, err := ca.Issue(SAE, "node-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := node.TLS.Leaf.Verify(opts); err != nil {
		t.Fatalf("node certificate does not verify against its CA: %v", err)
	}
	if id, err := PeerID(node.TLS.Leaf, Node); err != nil || id != "node-1" {
		t.Fatalf("PeerID(node cert, Node) = %q, %v", id, err)
	}
	// An SAE certificate whose CN is a node ID is not that node.
	if id, err := PeerID(sae.TLS.Leaf, Node); err == nil || !strings.Contains(err.Error(), "sae:node-1") {
		t.Fatalf("PeerID(SAE cert, Node) = %q, %v; want a refusal naming the SAE", id, err)
	}
	if id, err := PeerID(sae.TLS.Leaf, SAE); err != nil || id != "node-1" {
		t.Fatalf("PeerID(SAE cert, SAE) = %q, %v", id, err)
	}
	if err := node.TLS.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatalf("host SAN missing: %v", err)
	}
	// A certificate from another PKI with no qrelay URI falls back to the CN.
	foreign := &x509.Certificate{}
	foreign.Subject.CommonName = "kme-7"
	if id, err := PeerID(foreign, SAE); err != nil || id != "kme-7" {
		t.Fatalf("PeerID(foreign) = %q, %v", id, err)
	}
	foreign.Subject.CommonName = ""
	if _, err := PeerID(foreign, SAE); err == nil {
		t.Fatal("PeerID accepted a certificate naming nobody")
	}
	for _, bad := range []string{"", "a b", "x/y", strings.Repeat("a", 65)} {
		if _, err := ca.Issue(Node, bad, time.Hour); err == nil {
			t.Errorf("Issue accepted the ID %q", bad)
		}
	}
}

func TestOperator(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.Issue(Operator, "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := op.TLS.Leaf.Verify(client); err != nil {
		t.Fatalf("operator certificate does not verify as a client: %v", err)
	}
	server := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := op.TLS.Leaf.Verify(server); err == nil {
		t.Fatal("an operator certificate verifies as a server's")
	}
	if id, err := PeerID(op.TLS.Leaf, Operator); err != nil || id != "admin" {
		t.Fatalf("PeerID(operator cert, Operator) = %q, %v", id, err)
	}
	for _, k := range []Kind{Node, SAE} {
		if id, err := PeerID(op.TLS.Leaf, k); err == nil || !strings.Contains(err.Error(), "operator:admin") {
			t.Fatalf("PeerID(operator cert, %s) = %q, %v; want a refusal naming the operator", k, id, err)
		}
		c, err := ca.Issue(k, "admin", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := PeerID(c.TLS.Leaf, Operator); err == nil {
			t.Fatalf("PeerID(%s cert, Operator) = %q; want a refusal", k, id)
		}
	}
	if _, err := ca.Issue("robot", "r2", time.Hour); err == nil {
		t.Fatal("Issue accepted an unknown kind")
	}
}

func TestLoadCA(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := LoadCA(ca.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) || !back.Key.Equal(ca.Key) {
		t.Fatal("LoadCA did not give back the CA")
	}
	// A certificate issued by the loaded CA verifies against the original.
	n, err := back.Issue(Node, "node-9", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.TLS.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool()}); err != nil {
		t.Fatalf("certificate from the loaded CA: %v", err)
	}

	other, err := NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name            string
		certPEM, keyPEM []byte
		want            string
	}{
		{"empty certificate", nil, keyPEM, "no CERTIFICATE"},
		{"empty key", ca.CertPEM, nil, "no PEM block"},
		{"key swapped for the certificate", keyPEM, ca.CertPEM, "no CERTIFICATE"},
		{"another CA's key", ca.CertPEM, otherKey, "does not match"},
		{"leaf, not a CA", n.CertPEM, n.KeyPEM, "not a CA"},
		{"wrong key block", ca.CertPEM, ca.CertPEM, `"CERTIFICATE"`},
	}
	for _, c := range cases {
		if _, err := LoadCA(c.certPEM, c.keyPEM); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: LoadCA error %v; want one containing %q", c.name, err, c.want)
		}
	}
}
