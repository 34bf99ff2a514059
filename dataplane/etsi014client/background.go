package etsi014client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/qkd"
	"github.com/qrelay/qrelay/ringstore"
)

// Background is a qkd.Source that connects to its KME in the background,
// for a key manager whose QKD device may be unreachable when it starts:
// the link's QKD is down (and so out of routing) until the KME answers,
// then the Client serves. A KME that refuses the settings (key size,
// request size) keeps it down with that reason in its status, for the
// operator to see.
type Background struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed once c is set

	mu      sync.Mutex
	c       *Client
	lastErr error
}

// connectRetryMin and connectRetryMax bound the backoff between
// connection attempts.
const (
	connectRetryMin = 500 * time.Millisecond
	connectRetryMax = 30 * time.Second
)

// NewBackground starts connecting to the KME cfg names, as New does, until
// it answers or Close.
func NewBackground(cfg Config) *Background {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Background{cfg: cfg, log: log, done: make(chan struct{}), ready: make(chan struct{}),
		lastErr: fmt.Errorf("connecting to the KME at %s: %w", cfg.BaseURL, qkd.ErrDown)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.connect()
	return s
}

func (s *Background) connect() {
	defer close(s.done)
	wait := connectRetryMin
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
		c, err := New(ctx, s.cfg)
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
		if errors.Is(err, ErrRecord) {
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
		wait = min(2*wait, connectRetryMax)
	}
}

func (s *Background) client() (*Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c, s.lastErr
}

// Fetch fails at once, with qkd.ErrDown, until the KME has answered.
func (s *Background) Fetch(ctx context.Context, max int) ([]ringstore.Block, error) {
	c, err := s.client()
	if c == nil {
		return nil, err
	}
	return c.Fetch(ctx, max)
}

// Get waits for the KME to answer, then asks it.
func (s *Background) Get(ctx context.Context, ids []string) ([]ringstore.Block, error) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		_, err := s.client()
		return nil, fmt.Errorf("%v (%w)", err, ctx.Err())
	}
	c, _ := s.client()
	return c.Get(ctx, ids)
}

// Status is the Client's, or down with the last connection error.
func (s *Background) Status() qkd.Status {
	c, err := s.client()
	if c != nil {
		return c.Status()
	}
	return qkd.Status{Kind: "etsi014", Up: false, Reason: err.Error()}
}

// Close stops connecting and closes the Client, if any.
func (s *Background) Close() error {
	s.cancel()
	<-s.done
	if c, _ := s.client(); c != nil {
		return c.Close()
	}
	return nil
}
