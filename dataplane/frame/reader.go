package frame

import (
	"errors"
	"io"
)

// Implementation constants of Reader.
const (
	// minReadBuf is the size of a Reader's first buffer.
	minReadBuf = 16 << 10
	// maxEmptyReads is how many reads in a row may return no bytes and no
	// error before Next gives up with io.ErrNoProgress.
	maxEmptyReads = 100
)

// errBadCount is returned when the io.Reader claims to have read more bytes
// than it was given room for, or fewer than none.
var errBadCount = errors.New("frame: io.Reader returned an impossible byte count")

// Reader splits a byte stream into frames. It reads ahead into one buffer
// that it reuses. The buffer grows, by doubling, until it holds the largest
// frame seen, never beyond MaxFrameLen, and only as bytes arrive: a prefix
// that claims a large frame costs nothing until its bytes come. A Reader is
// not safe for concurrent use.
type Reader struct {
	rd         io.Reader
	buf        []byte
	start, end int   // buf[start:end] holds bytes read but not yet returned
	readErr    error // error of the last read, returned once the buffer is used up
	err        error // a bad prefix: the stream cannot be resynchronised
}

// NewReader returns a Reader that reads frames from rd.
func NewReader(rd io.Reader) *Reader { return &Reader{rd: rd} }

// Next returns the next frame's type and its bytes, prefix included. The
// bytes are valid until the next call to Next. Next checks the prefix
// (ParsePrefix) and nothing else: the caller parses the frame with the Parse
// function of its type.
//
// At the end of the stream Next returns io.EOF if it ends between frames and
// io.ErrUnexpectedEOF if it ends inside one. A bad prefix is returned as an
// *Error, and again by every later call, since the frame boundaries after it
// are lost. Other read errors are returned as they are; bytes read before
// them are kept, so Next may be called again.
func (r *Reader) Next() (Type, []byte, error) {
	if r.err != nil {
		return 0, nil, r.err
	}
	if err := r.fill(PrefixLen); err != nil {
		if err == io.EOF && r.end == r.start {
			return 0, nil, io.EOF
		}
		return 0, nil, unexpected(err)
	}
	p, perr := parsePrefix(r.buf[r.start:r.end])
	if perr != nil {
		r.err = perr
		return 0, nil, perr
	}
	n := p.FrameLen()
	if err := r.fill(n); err != nil {
		return 0, nil, unexpected(err)
	}
	b := r.buf[r.start : r.start+n : r.start+n]
	r.start += n
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	return p.Type, b, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// fill reads until at least n bytes are buffered, n <= MaxFrameLen.
func (r *Reader) fill(n int) error {
	empty := 0
	for r.end-r.start < n {
		if err := r.readErr; err != nil {
			if err != io.EOF {
				r.readErr = nil // report it once; the caller may retry
			}
			return err
		}
		if r.end == len(r.buf) {
			if r.start > 0 {
				r.end = copy(r.buf, r.buf[r.start:r.end])
				r.start = 0
			} else {
				buf := make([]byte, min(max(2*len(r.buf), minReadBuf), MaxFrameLen))
				r.end = copy(buf, r.buf[r.start:r.end])
				r.start = 0
				r.buf = buf
			}
		}
		m, err := r.rd.Read(r.buf[r.end:])
		if m < 0 || m > len(r.buf)-r.end {
			return errBadCount
		}
		r.end += m
		r.readErr = err
		if m == 0 && err == nil {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		} else {
			empty = 0
		}
	}
	return nil
}
