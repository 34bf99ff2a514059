// Package ringstore holds the key stores between the QKD links and
// everything that uses their keys (see DESIGN.md, invariants 1-5):
//
//   - PadRing: the pad of one KM link in one direction, a byte stream
//     addressed by absolute position. One producer appends QKD blocks;
//     consumers Reserve ranges lock-free (one compare-and-swap for any
//     number of keys) and Release them once used; whole segments are
//     zeroised as the tail passes them. In durable mode pad bytes live in
//     a preallocated ring file and only cursors, reservation marks and the
//     block directory in badger; a reservation is covered by a persisted
//     high-water mark before it is handed out, so no byte is ever handed
//     out twice, even after a crash.
//   - Pool: the end-to-end keys shared with one remote node, with derived
//     name-based key IDs, FIFO take for the encrypting side, take by ID
//     for the decrypting side, opaque owner tags, TTL, watermarks; in durable
//     mode undelivered keys survive a restart.
//
// Key memory is mapped by internal/keymem (locked with mlock where
// permitted, excluded from core dumps); metadata goes through
// internal/meta (badger with options tuned for a small metadata set). Key
// bytes never enter badger, which cannot erase them. The package knows
// bytes and positions, not networks.
package ringstore
