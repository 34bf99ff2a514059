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
