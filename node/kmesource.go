package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/ringstore"
)

// kmeSource is the ETSI 014 source of a link that connects to its KME in
// the background: a node whose QKD device is unreachable at start still
// starts, with that link's QKD down (and so out of routing), and the link
// comes into use once the KME answers. A KME that refuses our settings
// (key size, request size) keeps the link down with that reason in its
// status, for the operator to see in `qrelayctl links`.
type kmeSource struct {
	cfg etsi014client.Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed once c is set

	mu      sync.Mutex
	c       *etsi014client.Client
	lastErr error
}

// kmeRetryMin and kmeRetryMax bound the backoff between connection
// attempts.
const (
	kmeRetryMin = 500 * time.Millisecond
	kmeRetryMax = 30 * time.Second
)

func newKMESource(cfg etsi014client.Config, log *slog.Logger) *kmeSource {
	s := &kmeSource{cfg: cfg, log: log, done: make(chan struct{}), ready: make(chan struct{}),
		lastErr: fmt.Errorf("connecting to the KME at %s: %w", cfg.BaseURL, qkd.ErrDown)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.connect()
	return s
}

func (s *kmeSource) connect() {
	defer close(s.done)
	wait := kmeRetryMin
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		c, err := etsi014client.New(ctx, s.cfg)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.c, s.lastErr = c, nil
			s.mu.Unlock()
			close(s.ready)
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		if errors.Is(err, etsi014client.ErrRecord) {
			// The link's record of delivered key IDs is unreadable:
			// trying again cannot help, and the link must not take keys
			// without it.
			s.mu.Lock()
			s.lastErr = fmt.Errorf("%w: %v", qkd.ErrDown, err)
			s.mu.Unlock()
			s.log.Error("QKD link's record of delivered key IDs is unreadable; the link stays out of use until it is repaired", "kme", s.cfg.BaseURL, "err", err)
			return
		}
		s.mu.Lock()
		s.lastErr = fmt.Errorf("%w: %v", qkd.ErrDown, err)
		s.mu.Unlock()
		s.log.Warn("QKD device's KME not reachable; the link stays out of use until it answers", "kme", s.cfg.BaseURL, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, kmeRetryMax)
	}
}

func (s *kmeSource) client() (*etsi014client.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c, s.lastErr
}

// Fetch fails at once, with qkd.ErrDown, until the KME has answered.
func (s *kmeSource) Fetch(ctx context.Context, max int) ([]ringstore.Block, error) {
	c, err := s.client()
	if c == nil {
		return nil, err
	}
	return c.Fetch(ctx, max)
}

// Get waits for the KME to answer, then asks it.
func (s *kmeSource) Get(ctx context.Context, ids []string) ([]ringstore.Block, error) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		_, err := s.client()
		return nil, fmt.Errorf("%v (%w)", err, ctx.Err())
	}
	c, _ := s.client()
	return c.Get(ctx, ids)
}

func (s *kmeSource) Status() qkd.Status {
	c, err := s.client()
	if c != nil {
		return c.Status()
	}
	return qkd.Status{Kind: "etsi014", Up: false, Reason: err.Error()}
}

func (s *kmeSource) Close() error {
	s.cancel()
	<-s.done
	if c, _ := s.client(); c != nil {
		return c.Close()
	}
	return nil
}
