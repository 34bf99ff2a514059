package etsi014client

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/internal/fakekme"
	"github.com/qrelay/qrelay/internal/waitfor"
)

// TestBackground: a source whose KME is down at start is down, with the
// reason, and serves once the KME answers; a Get asked meanwhile waits for
// it rather than failing.
func TestBackground(t *testing.T) {
	p := fakekme.NewPair(t, fakekme.Config{})
	p.A.Down(true)
	p.B.Down(true)
	m := NewBackground(Config{BaseURL: p.A.URL, SlaveSAE: p.B.SAE, Master: true, Certificate: p.ClientCert(t, p.A.SAE), Roots: p.Roots(), Logger: quiet()})
	defer m.Close()
	s := NewBackground(Config{BaseURL: p.B.URL, MasterSAE: p.A.SAE, Certificate: p.ClientCert(t, p.B.SAE), Roots: p.Roots(), Logger: quiet()})
	defer s.Close()

	if st := m.Status(); st.Up || st.Kind != "etsi014" || !strings.Contains(st.Reason, p.A.URL) {
		t.Fatalf("status while the KME is down: %+v; want down, naming the KME", st)
	}
	if _, err := m.Fetch(t.Context(), 32); !errors.Is(err, qkd.ErrDown) {
		t.Fatalf("Fetch while the KME is down: %v; want qkd.ErrDown", err)
	}
	p.A.Down(false)
	waitfor.Bool(t, "the master connected", 20*time.Second, func() bool { return m.Status().Up })
	got, err := m.Fetch(t.Context(), 32)
	if err != nil || len(got) == 0 {
		t.Fatalf("Fetch once connected: %d blocks, %v", len(got), err)
	}

	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		b, err := s.Get(t.Context(), blockIDs(got))
		res <- result{len(b), err}
	}()
	p.B.Down(false)
	r := <-res
	if r.err != nil || r.n != len(got) {
		t.Fatalf("Get asked before the slave's KME answered: %d blocks, %v; want %d", r.n, r.err, len(got))
	}
}
