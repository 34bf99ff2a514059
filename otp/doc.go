// Package otp holds the one-time-pad primitives every relayed key byte
// passes through: XOR of a key with pad bytes (XOR), the fused three-way
// XOR a relay node uses to re-encrypt from one link's pad to the next in a
// single pass over memory (XOR3), fixed-size XORs for single keys that
// inline into the caller (XOR16, XOR32, XOR64), and a one-time
// authenticator (Tag, Verify).
//
// # Kernels
//
// XOR and XOR3 run one of three kernels, chosen once when the package is
// initialised from what the CPU reports (github.com/klauspost/cpuid/v2):
//
//   - avx512: 64-byte ZMM loads and stores, VPTERNLOGD for the three-way
//     XOR, byte-masked loads and stores for the unaligned head and the tail
//     (needs AVX512F, AVX512BW and BMI2);
//   - avx2: 32-byte YMM loads and stores, 128 bytes per iteration with dst
//     aligned; the first and last 32 bytes (below 32 bytes, two overlapping
//     pieces of 16, 8, 4 or 1 bytes) are computed before anything is stored,
//     so any length costs a few straight-line blocks and no byte loop;
//   - generic: portable Go, eight bytes at a time; the only kernel under the
//     purego build tag or on other architectures.
//
// The environment variable QRELAY_OTP (generic, avx2 or avx512) forces a
// kernel, for tests and for comparison in benchmarks; forcing a kernel the
// CPU cannot run stops the program at start-up with a message saying what
// is missing. Impl names the kernel in use.
//
// All kernels accept any length, including zero and odd tails, and any
// alignment. The destination may alias an input exactly (dst and a the same
// slice); partial overlap panics, as in crypto/subtle.XORBytes, because a
// forward pass over partly overlapping memory would read bytes it has
// already written.
//
// # One-time authenticator
//
// Tag is Poly1305 used as a one-time authenticator: a fresh, uniformly
// random 32-byte key (drawn from the pad) authenticates exactly one message
// and is then discarded. Poly1305 with a one-time key is an ε-almost-Δ-
// universal hash masked by a one-time pad, so its security is information-
// theoretic, not computational: an adversary with unbounded computing
// power who sees one message and its tag, and submits any forgery of at
// most L bytes, succeeds with probability at most
//
//	8 · ⌈L/16⌉ / 2^106
//
// (Bernstein, "The Poly1305-AES message-authentication code", FSE 2005,
// theorem 3.3; the 2^106 comes from the 22 bits that clamping removes from
// r). For a 64 KiB frame that is 2^15/2^106 = 2^-91 per forgery attempt;
// an adversary allowed 2^40 attempts over the lifetime of a link, each
// against a fresh key, succeeds with probability at most 2^-51. The bound
// holds only if no key is ever used twice: reusing a Poly1305 key for two
// messages reveals enough to forge. Keeping that promise is the job of the
// pad rings, not of this package.
//
// The package allocates nothing and knows nothing of links or frames.
package otp
