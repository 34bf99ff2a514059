package etsi014

import (
	"math"
	"strconv"
	"sync"
	"time"
)

// slack absorbs float rounding, so that exactly enough tokens are enough.
const slack = 1e-9

// bucket is one master SAE's token bucket of keys. The map of buckets is
// fixed when the handler is built; each bucket has its own lock.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	at     time.Time // when tokens was last brought up to date

	rate  float64 // keys per second
	burst float64
	what  string // "sae-1 may take 1000 keys/s", for refusals
}

func newBucket(sae string, l Limit, now time.Time) *bucket {
	return &bucket{
		tokens: float64(l.Burst),
		at:     now,
		rate:   l.KeysPerSecond,
		burst:  float64(l.Burst),
		what:   sae + " may take " + strconv.FormatFloat(l.KeysPerSecond, 'g', -1, 64) + " keys/s",
	}
}

// take removes n keys' worth of tokens at now. If there are too few it
// removes none and returns how long until there will be enough, or a
// negative wait if n exceeds the burst and never can pass.
func (b *bucket) take(now time.Time, n int) (wait time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.at) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.at).Seconds()*b.rate)
		b.at = now
	}
	need := float64(n)
	if need <= b.tokens+slack {
		b.tokens -= need
		return 0, true
	}
	if need > b.burst {
		return -1, false
	}
	ms := math.Ceil((need-b.tokens)/b.rate*1000 - slack)
	return time.Duration(ms) * time.Millisecond, false
}

// refund gives back the tokens of n keys that were not handed out.
func (b *bucket) refund(n int) {
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+float64(n))
	b.mu.Unlock()
}

// refusal is the 503 message for a request of n keys that take refused.
func (b *bucket) refusal(n int, wait time.Duration) string {
	if wait < 0 {
		return b.what + ", at most " + strconv.FormatFloat(b.burst, 'f', 0, 64) + " at once; " +
			strconv.Itoa(n) + " keys in one request can never pass: ask for fewer"
	}
	return b.what + "; retry in " + wait.String()
}
