package supply

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/qrelay/qrelay/ringstore"
)

// Assignment says which SAEs may have a key: the master SAE that asked for
// it on the encrypting side (ETSI GS QKD 014 enc_keys, or "stream:<name>"
// for a key stream) and the slave SAEs that may fetch it on the decrypting
// side (dec_keys). The zero Assignment means not assigned yet. A pool
// stores it as its keys' opaque owner tag (ringstore.Owner).
type Assignment struct {
	Master string
	Slaves []string
}

const (
	// MaxSAEIDLen is the longest SAE ID in an Assignment.
	MaxSAEIDLen = 256
	// MaxSlaves is the most slave SAEs in an Assignment.
	MaxSlaves = 64
)

func (a Assignment) check() error {
	if a.Master == "" {
		return errors.New("assignment has no master SAE")
	}
	if len(a.Slaves) > MaxSlaves {
		return fmt.Errorf("assignment has %d slave SAEs, at most %d allowed", len(a.Slaves), MaxSlaves)
	}
	if len(a.Master) > MaxSAEIDLen {
		return fmt.Errorf("assignment's master SAE ID %.40q... is %d bytes, at most %d allowed", a.Master, len(a.Master), MaxSAEIDLen)
	}
	for i, s := range a.Slaves {
		if s == "" || len(s) > MaxSAEIDLen {
			return fmt.Errorf("assignment's slave SAE ID %d (%.40q) is %d bytes, want 1 to %d", i, s, len(s), MaxSAEIDLen)
		}
	}
	return nil
}

// Owner is a's owner tag: uint16 length + master SAE ID, uint16 slave
// count, then uint16 length + ID each, big-endian. It is byte for byte
// what durable pools stored in their entries before owner tags were
// opaque, so pools written then read the same. a must be valid (check).
func (a Assignment) Owner() ringstore.Owner {
	n := 4 + len(a.Master)
	for _, s := range a.Slaves {
		n += 2 + len(s)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Master)))
	b = append(b, a.Master...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Slaves)))
	for _, s := range a.Slaves {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return ringstore.Owner(b)
}

// ownerOf is a's owner tag once a is checked.
func ownerOf(a Assignment) (ringstore.Owner, error) {
	if err := a.check(); err != nil {
		return "", err
	}
	return a.Owner(), nil
}

// assignmentOf reads an owner tag Owner wrote; the empty tag is the zero
// Assignment. A tag that is not one (a pool written by another program)
// is an error: its keys belong to nobody this service knows.
func assignmentOf(o ringstore.Owner) (Assignment, error) {
	if o == "" {
		return Assignment{}, nil
	}
	rest := o
	str := func() (string, bool) {
		if len(rest) < 2 {
			return "", false
		}
		n := int(rest[0])<<8 | int(rest[1])
		if len(rest) < 2+n {
			return "", false
		}
		s := string(rest[2 : 2+n])
		rest = rest[2+n:]
		return s, true
	}
	var a Assignment
	master, ok := str()
	if !ok || len(rest) < 2 {
		return Assignment{}, fmt.Errorf("owner tag of %d bytes is not an assignment: truncated", len(o))
	}
	n := int(rest[0])<<8 | int(rest[1])
	rest = rest[2:]
	a.Master = master
	if n > 0 {
		a.Slaves = make([]string, 0, min(n, MaxSlaves))
	}
	for range n {
		s, ok := str()
		if !ok {
			return Assignment{}, fmt.Errorf("owner tag of %d bytes is not an assignment: truncated", len(o))
		}
		a.Slaves = append(a.Slaves, s)
	}
	if len(rest) != 0 {
		return Assignment{}, fmt.Errorf("owner tag of %d bytes is not an assignment: %d bytes after it", len(o), len(rest))
	}
	if err := a.check(); err != nil {
		return Assignment{}, fmt.Errorf("owner tag is not a valid assignment: %w", err)
	}
	return a, nil
}

// assignments decodes the owner tags of one pool call's keys, which
// mostly share one tag: it decodes a tag once and compares the next
// against it (one pointer comparison when the pool stored the same tag).
type assignments struct {
	last ringstore.Owner
	a    Assignment
	err  error
}

func (c *assignments) of(o ringstore.Owner) (Assignment, error) {
	if o != c.last { // the zero cache holds the empty tag's answer
		c.a, c.err = assignmentOf(o)
		c.last = o
	}
	return c.a, c.err
}
