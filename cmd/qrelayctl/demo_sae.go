package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/qrelay/qrelay/dataplane/etsi014client"
	"github.com/qrelay/qrelay/ringstore"
)

// saeStats counts what the SAE pair got. It is safe for concurrent use.
type saeStats struct {
	mu sync.Mutex
	c  saeCounts
}

// saeCounts is a copy of the counters.
type saeCounts struct {
	delivered  uint64 // keys both SAEs got, with the same bytes
	mismatches uint64 // keys whose bytes differed
	waits      uint64 // 503 answers: not enough keys yet
	errors     uint64 // other failed requests
	lastErr    string
}

func (s *saeStats) counts() saeCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *saeStats) add(f func(*saeCounts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.c)
}

// isWait reports whether err is a 503: the node has not enough keys yet,
// as is normal while the pools fill.
func isWait(err error) bool {
	var se *etsi014client.StatusError
	return errors.As(err, &se) && se.Code == http.StatusServiceUnavailable
}

// record counts a failed request: a wait (503) or an error.
func (s *saeStats) record(err error) {
	s.add(func(c *saeCounts) {
		if isWait(err) {
			c.waits++
			return
		}
		c.errors++
		c.lastErr = err.Error()
	})
}

// Backoffs of the SAE pair after a 503 and after another error.
const (
	saeWaitBackoff  = 100 * time.Millisecond
	saeErrorBackoff = 500 * time.Millisecond
)

// runSAEPair runs the application pair until ctx ends: the master SAE
// asks its node for new keys, the slave SAE asks its node for the same
// keys by ID, and the bytes are compared. Key bytes are zeroised after
// the comparison and never printed.
func runSAEPair(ctx context.Context, lab *demoLab, perRequest int, stats *saeStats) {
	a, c := lab.node(demoMasterNode), lab.node(demoSlaveNode)
	quiet := slog.New(slog.DiscardHandler)
	master := connectSAE(ctx, stats, etsi014client.Config{
		BaseURL: a.etsiURL, SlaveSAE: demoSlaveSAE, MasterSAE: demoMasterSAE, Master: true,
		Certificate: lab.saes[demoMasterSAE], Roots: lab.roots, KeySize: demoKeyBits, PerRequest: perRequest,
		Timeout: 5 * time.Second, Logger: quiet,
	})
	if master == nil {
		return
	}
	defer master.Close()
	slave := connectSAE(ctx, stats, etsi014client.Config{
		BaseURL: c.etsiURL, SlaveSAE: demoSlaveSAE, MasterSAE: demoMasterSAE, Master: false,
		Certificate: lab.saes[demoSlaveSAE], Roots: lab.roots, KeySize: demoKeyBits, PerRequest: perRequest,
		Timeout: 5 * time.Second, Logger: quiet,
	})
	if slave == nil {
		return
	}
	defer slave.Close()
	for ctx.Err() == nil {
		keys, err := master.Fetch(ctx, perRequest*demoKeyBits/8)
		if err != nil {
			if ctx.Err() == nil {
				stats.record(err)
				sleep(ctx, backoff(err))
			}
			continue
		}
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.ID
		}
		got, err := getKeys(ctx, slave, ids, stats)
		if err != nil {
			for _, k := range keys {
				clear(k.Data)
			}
			if ctx.Err() == nil {
				stats.record(err)
				sleep(ctx, backoff(err))
			}
			continue
		}
		var same, differ uint64
		for i, k := range keys {
			if subtle.ConstantTimeCompare(k.Data, got[i].Data) == 1 {
				same++
			} else {
				differ++
			}
			clear(k.Data)
			clear(got[i].Data)
		}
		stats.add(func(c *saeCounts) { c.delivered += same; c.mismatches += differ })
	}
}

// getKeys is the slave's dec_keys, retried a few times on 503.
func getKeys(ctx context.Context, slave *etsi014client.Client, ids []string, stats *saeStats) ([]ringstore.Block, error) {
	for try := 0; ; try++ {
		got, err := slave.Get(ctx, ids)
		if err == nil || !isWait(err) || try == 4 {
			return got, err
		}
		stats.record(err)
		sleep(ctx, saeWaitBackoff)
	}
}

// connectSAE makes an ETSI 014 client, retrying until the node answers
// or ctx ends (nil then).
func connectSAE(ctx context.Context, stats *saeStats, cfg etsi014client.Config) *etsi014client.Client {
	for {
		c, err := etsi014client.New(ctx, cfg)
		if err == nil {
			return c
		}
		if ctx.Err() != nil {
			return nil
		}
		stats.record(fmt.Errorf("connecting to %s: %w", cfg.BaseURL, err))
		sleep(ctx, backoff(err))
	}
}

func backoff(err error) time.Duration {
	if isWait(err) {
		return saeWaitBackoff
	}
	return saeErrorBackoff
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
