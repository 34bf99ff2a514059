// Package frame encodes and decodes the frames of the KM link between two
// neighbouring key managers, version 2, as specified in docs/kmlink.md.
//
// Every frame is an 8-byte prefix (version, type, flags, length) followed
// by a type-specific body; integers are big-endian. Append functions add one
// frame to a byte slice and allocate nothing when it has room; Parse
// functions take one whole frame, prefix included, and reject anything the
// specification does not allow with an *Error that names the frame type, the
// field, its offset and what was wanted. A Reader splits a byte stream into
// frames. The package knows bytes, not pads, links or keys: it neither
// encrypts nor authenticates (see package otp).
package frame
