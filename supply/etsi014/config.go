package etsi014

import (
	"log/slog"
	"time"

	"github.com/qrelay/qrelay/supply"
)

// Config configures NewHandler.
type Config struct {
	Service  supply.KeyService
	Identity supply.Identity

	// KeySize is the default key size in bits (a multiple of 8);
	// MinKeySize and MaxKeySize bound a requested size (defaults:
	// min(64, KeySize) and KeySize).
	KeySize, MinKeySize, MaxKeySize int
	// MaxKeysPerRequest bounds number in enc_keys and the key IDs of one
	// dec_keys request.
	MaxKeysPerRequest int
	// MaxSAEIDCount bounds additional_slave_SAE_IDs; 0 refuses any (400).
	MaxSAEIDCount int
	// MaxBodyBytes bounds a request body (default 16 KiB + 128 bytes per
	// key a request may name).
	MaxBodyBytes int

	// Limits rate-limits enc_keys per master SAE; an SAE not listed is not
	// limited.
	Limits map[string]Limit
	Logger *slog.Logger
	// Now is the clock of the rate limits (default time.Now).
	Now func() time.Time
}

// Limit is a token bucket of keys: KeysPerSecond refill it up to Burst.
type Limit struct {
	KeysPerSecond float64
	Burst         int
}
