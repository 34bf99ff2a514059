package etsi014

import (
	"crypto/tls"
	"crypto/x509"
)

// TLSConfig is the server side of the API's mutual TLS: TLS 1.2 or newer
// (the standard's minimum), a client certificate signed by clientCAs
// required and verified on every connection, session tickets on (a
// resumed session keeps its verified chain, so the SAE ID is still known),
// ALPN offering h2 and http/1.1, and for TLS 1.2 only ECDHE AEAD suites.
func TLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		NextProtos:   []string{"h2", "http/1.1"},
		// TLS 1.2: forward-secret AEAD suites only (TLS 1.3's are all so).
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}
