package ringstore

import "github.com/qrelay/qrelay/ringstore/internal/meta"

// Meta is the metadata store of durable rings and pools (badger): cursors,
// reservation marks, block directories, key-ID indexes and owner tags.
// It never holds key bytes (DESIGN.md, invariant 2). One node opens one
// and shares it between all its stores.
type Meta = meta.DB

// MetaTx is one write transaction of a Meta, as Meta.Update passes it: a
// package outside ringstore that keeps its own records in the node's Meta
// (the QKD sources do) names it to write one.
type MetaTx = meta.Tx

// ErrMetaNotFound is what Meta.Get returns for a key that is not there.
var ErrMetaNotFound = meta.ErrNotFound

// OpenMeta opens, or creates, the metadata store in dir.
func OpenMeta(dir string) (*Meta, error) { return meta.Open(dir) }
