package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Size is a number of bytes. In YAML it is a whole number with an optional
// IEC binary suffix: "4096", "512KiB", "64MiB", "1GiB".
type Size int64

// Binary size units.
const (
	Byte Size = 1
	KiB       = 1024 * Byte
	MiB       = 1024 * KiB
	GiB       = 1024 * MiB
)

var sizeRE = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB)?$`)

var sizeUnits = map[string]Size{"": Byte, "B": Byte, "KiB": KiB, "MiB": MiB, "GiB": GiB}

const sizeHelp = `write a whole number of bytes with an optional binary suffix B, KiB, MiB or GiB, like "64MiB", "512KiB" or "4096" (decimal suffixes such as MB are not accepted)`

// ParseSize parses a size such as "64MiB". Only whole numbers and the
// binary suffixes B, KiB, MiB and GiB are accepted: "64MB" is refused rather
// than guessed at.
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%s is not a size; %s", quote(s), sizeHelp)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	unit := sizeUnits[m[2]]
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("%s is too large; sizes go up to 8EiB", quote(s))
	}
	return Size(n) * unit, nil
}

// String formats s with the largest binary suffix that divides it exactly,
// so that ParseSize(s.String()) == s.
func (s Size) String() string {
	if s == 0 {
		return "0"
	}
	for _, u := range []struct {
		n    Size
		name string
	}{{GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s%u.n == 0 {
			return strconv.FormatInt(int64(s/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalYAML writes s as ParseSize reads it.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// Rate is a secret key rate in bit/s. Zero means unlimited. In YAML it is a
// decimal number with a unit, "500kbit/s", "10Mbit/s", "2.5Gbit/s", or the
// word "unlimited".
type Rate float64

// Unlimited is the Rate that puts no limit on a simulated link.
const Unlimited Rate = 0

var rateRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(bit|kbit|Mbit|Gbit)/s$`)

// rateUnits maps a unit to its power of ten.
var rateUnits = map[string]int{"bit": 0, "kbit": 3, "Mbit": 6, "Gbit": 9}

const rateHelp = `write it like "500kbit/s", "10Mbit/s" or "2.5Gbit/s" (units bit/s, kbit/s, Mbit/s, Gbit/s), or "unlimited"`

// ParseRate parses a rate such as "10Mbit/s" or "unlimited" (which is 0).
// The units are decimal (SI): 1kbit/s is 1000 bit/s.
func ParseRate(s string) (Rate, error) {
	if s == "unlimited" {
		return Unlimited, nil
	}
	m := rateRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%s is not a rate; %s", quote(s), rateHelp)
	}
	// Parsing "2.5e9" rounds once, so String can give the same value back.
	f, err := strconv.ParseFloat(m[1]+"e"+strconv.Itoa(rateUnits[m[2]]), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s is too large a rate", quote(s))
	}
	if f == 0 {
		return 0, fmt.Errorf("%s would never make a key; write a positive rate, or \"unlimited\" for no limit", quote(s))
	}
	return Rate(f), nil
}

// String formats r as ParseRate reads it, with the largest unit that keeps
// at least one digit before the point: ParseRate(r.String()) == r.
func (r Rate) String() string {
	if r == Unlimited {
		return "unlimited"
	}
	if r < 0 || math.IsNaN(float64(r)) || math.IsInf(float64(r), 0) {
		return strconv.FormatFloat(float64(r), 'g', -1, 64) + "bit/s" // not valid; shown as is
	}
	// Shortest decimal that reads back as r: d.ddd × 10^exp.
	e := strconv.FormatFloat(float64(r), 'e', -1, 64)
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	unit, name := 0, "bit"
	for _, u := range []struct {
		p    int
		name string
	}{{9, "Gbit"}, {6, "Mbit"}, {3, "kbit"}} {
		if exp >= u.p {
			unit, name = u.p, u.name
			break
		}
	}
	// The unit's value is digits with the point after intDigits of them.
	intDigits := exp - unit + 1
	var num string
	switch {
	case intDigits <= 0:
		num = "0." + strings.Repeat("0", -intDigits) + digits
	case intDigits >= len(digits):
		num = digits + strings.Repeat("0", intDigits-len(digits))
	default:
		num = digits[:intDigits] + "." + digits[intDigits:]
	}
	return num + name + "/s"
}

// MarshalYAML writes r as ParseRate reads it.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }

// SeedSize is the length of a simulator seed in bytes.
const SeedSize = 32

// Seed is a QKD simulator seed: both ends of a simulated link derive their
// key blocks from it, so it is key material. It never prints: String,
// GoString, Format and MarshalYAML all give "<redacted>", and errors about
// a bad seed describe it without quoting it.
type Seed [SeedSize]byte

const redacted = "<redacted>"

// ParseSeed parses 64 hex digits. The error never contains s.
func ParseSeed(s string) (Seed, error) {
	var seed Seed
	if len(s) != 2*SeedSize {
		return seed, fmt.Errorf("must be %d hex digits (%d bytes), got %d characters; make one with \"openssl rand -hex %d\" and give both ends of the link the same one", 2*SeedSize, SeedSize, len(s), SeedSize)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return seed, fmt.Errorf("character %d is not a hex digit; a seed is %d hex digits (0-9, a-f)", i+1, 2*SeedSize)
		}
	}
	if _, err := hex.Decode(seed[:], []byte(s)); err != nil {
		return seed, errors.New("is not hex") // unreachable after the loop above
	}
	if seed.IsZero() {
		return seed, fmt.Errorf("is all zeros, which is no secret; make one with \"openssl rand -hex %d\"", SeedSize)
	}
	return seed, nil
}

// IsZero reports whether s is all zeros (unset, or refused as a seed).
func (s Seed) IsZero() bool { return s == Seed{} }

// String returns "<redacted>".
func (Seed) String() string { return redacted }

// GoString returns "<redacted>".
func (Seed) GoString() string { return redacted }

// Format prints "<redacted>" whatever the verb, so %x and %v do not leak.
func (Seed) Format(f fmt.State, _ rune) { f.Write([]byte(redacted)) }

// MarshalYAML returns "<redacted>".
func (Seed) MarshalYAML() (any, error) { return redacted, nil }

// MarshalText returns "<redacted>", for encoding/json and friends.
func (Seed) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// quote quotes a value for an error message, cut short if long.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}
