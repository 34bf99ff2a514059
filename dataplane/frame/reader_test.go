package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// stream returns frames, one of each golden and boundary frame plus a large
// RELAY, and their concatenation.
func stream(tb testing.TB, big bool) (frames [][]byte, all []byte) {
	for _, g := range golden {
		frames = append(frames, unhexDump(tb, g.dump))
	}
	if big {
		for _, tc := range boundaryFrames(false) {
			if frameLen(tc.frame) > 1<<20 {
				continue // keep the stream small enough to read one byte at a time
			}
			b, err := appendAny(nil, tc.frame)
			if err != nil {
				tb.Fatal(err)
			}
			frames = append(frames, b)
		}
		r := Relay{Count: 1024, KeySize: 512, HopLimit: 2, Src: "s", Dst: "d", Payload: seq(1024 * 512)}
		b, err := AppendRelay(nil, &r)
		if err != nil {
			tb.Fatal(err)
		}
		frames = append(frames, b, frames[0])
	}
	for _, f := range frames {
		all = append(all, f...)
	}
	return frames, all
}

// readAll reads frames until an error, checking each frame's type.
func readAll(tb testing.TB, r *Reader) ([][]byte, error) {
	tb.Helper()
	var got [][]byte
	for {
		typ, b, err := r.Next()
		if err != nil {
			if typ != 0 || b != nil {
				tb.Errorf("Next returned %v, %d bytes with error %v", typ, len(b), err)
			}
			return got, err
		}
		if Type(b[1]) != typ {
			tb.Errorf("Next returned type %v for a %v frame", typ, Type(b[1]))
		}
		got = append(got, bytes.Clone(b))
	}
}

func sameFrames(tb testing.TB, got, want [][]byte) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%d frames, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			tb.Fatalf("frame %d: %d bytes %.32x..., want %d bytes %.32x...", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

func TestReaderStream(t *testing.T) {
	frames, all := stream(t, true)
	readers := []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(all) }},
		{"one byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(all)) }},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(all)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(all)) }},
		{"data with EOF, one byte", func() io.Reader { return iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(all))) }},
	}
	for _, tc := range readers {
		t.Run(tc.name, func(t *testing.T) {
			fr := NewReader(tc.r())
			got, err := readAll(t, fr)
			if err != io.EOF {
				t.Fatalf("after %d frames: %v, want io.EOF", len(got), err)
			}
			sameFrames(t, got, frames)
			if _, _, err := fr.Next(); err != io.EOF {
				t.Fatalf("Next after EOF: %v, want io.EOF again", err)
			}
			if cap(fr.buf) > MaxFrameLen {
				t.Fatalf("buffer grew to %d bytes", cap(fr.buf))
			}
		})
	}
}

// TestReaderSplit splits the stream of golden frames in two at every byte,
// and cuts it short at every byte.
func TestReaderSplit(t *testing.T) {
	frames, all := stream(t, false)
	ends := map[int]int{} // frame end offset -> number of frames before it
	off := 0
	for i, f := range frames {
		off += len(f)
		ends[off] = i + 1
	}
	for i := 0; i <= len(all); i++ {
		r := NewReader(io.MultiReader(bytes.NewReader(all[:i]), iotest.HalfReader(bytes.NewReader(all[i:]))))
		got, err := readAll(t, r)
		if err != io.EOF {
			t.Fatalf("split at %d: %v after %d frames", i, err, len(got))
		}
		sameFrames(t, got, frames)

		// The stream ends at i.
		got, err = readAll(t, NewReader(iotest.OneByteReader(bytes.NewReader(all[:i]))))
		if n, boundary := ends[i]; boundary || i == 0 {
			if err != io.EOF {
				t.Fatalf("cut at frame boundary %d: %v, want io.EOF", i, err)
			}
			sameFrames(t, got, frames[:n])
		} else if err != io.ErrUnexpectedEOF {
			t.Fatalf("cut inside a frame at %d: %v, want io.ErrUnexpectedEOF", i, err)
		}
	}
}

func TestReaderBadPrefix(t *testing.T) {
	frames, all := stream(t, false)
	bad := append(bytes.Clone(all[:len(frames[0])]), 1, 1, 0, 0, 0, 0, 0, 60) // version 1
	bad = append(bad, all...)
	r := NewReader(iotest.OneByteReader(bytes.NewReader(bad)))
	got, err := readAll(t, r)
	sameFrames(t, got, frames[:1])
	if !isField(err, "version") {
		t.Fatalf("%v, want a version error", err)
	}
	if _, _, err2 := r.Next(); err2 != err {
		t.Fatalf("second Next: %v, want the same error %v", err2, err)
	}
}

// TestReaderClaimedLength checks that a frame claiming to be huge does not
// make the Reader allocate before the bytes are there.
func TestReaderClaimedLength(t *testing.T) {
	claim := []byte{Version, 1, 0, 0, 0, 0x80, 0, 0x40, 1, 2, 3} // RELAY of 8 MiB + 64
	r := NewReader(bytes.NewReader(claim))
	if _, _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("%v, want io.ErrUnexpectedEOF", err)
	}
	if cap(r.buf) > minReadBuf {
		t.Fatalf("buffer of %d bytes for %d bytes received", cap(r.buf), len(claim))
	}
	tooBig := []byte{Version, 6, 0, 0, 0, 0x80, 0x10, 0x00} // CONTROL one byte over MaxFrameLen
	if _, _, err := NewReader(bytes.NewReader(tooBig)).Next(); !isField(err, "length") {
		t.Fatalf("%v, want a length error", err)
	}
}

func TestReaderReadErrors(t *testing.T) {
	frames, all := stream(t, false)
	// A timeout in the middle of a frame: Next reports it, then carries on
	// with the bytes it had.
	r := NewReader(iotest.TimeoutReader(iotest.HalfReader(bytes.NewReader(all))))
	var got [][]byte
	timeouts := 0
	for {
		_, b, err := r.Next()
		if err == iotest.ErrTimeout {
			timeouts++
			continue
		}
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		got = append(got, bytes.Clone(b))
	}
	if timeouts != 1 {
		t.Errorf("%d timeouts, want 1", timeouts)
	}
	sameFrames(t, got, frames)

	if _, _, err := NewReader(iotest.ErrReader(errors.New("boom"))).Next(); err == nil || err.Error() != "boom" {
		t.Errorf("%v, want boom", err)
	}
	if _, _, err := NewReader(emptyReader{}).Next(); err != io.ErrNoProgress {
		t.Errorf("%v, want io.ErrNoProgress", err)
	}
	if _, _, err := NewReader(liarReader{}).Next(); err != errBadCount {
		t.Errorf("%v, want errBadCount", err)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

type liarReader struct{}

func (liarReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

// loopReader returns its data over and over.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

func TestAllocs(t *testing.T) {
	r, err := ParseRelay(goldenBytes(t, "RELAY"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, MaxFrameLen)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := AppendRelayHeader(buf, &r); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("AppendRelayHeader: %v allocations, want 0", n)
	}
	c, a, k, d, x := golden[1].frame.(Completion), golden[2].frame.(Assign), golden[3].frame.(AssignAck), golden[4].frame.(Discard), golden[5].frame.(Control)
	y, z := golden[6].frame.(Sync), golden[7].frame.(SyncAgree)
	for name, f := range map[string]func() ([]byte, error){
		"AppendRelay":      func() ([]byte, error) { return AppendRelay(buf, &r) },
		"AppendCompletion": func() ([]byte, error) { return AppendCompletion(buf, &c) },
		"AppendAssign":     func() ([]byte, error) { return AppendAssign(buf, &a) },
		"AppendAssignAck":  func() ([]byte, error) { return AppendAssignAck(buf, &k) },
		"AppendDiscard":    func() ([]byte, error) { return AppendDiscard(buf, &d) },
		"AppendControl":    func() ([]byte, error) { return AppendControl(buf, &x) },
		"AppendSync":       func() ([]byte, error) { return AppendSync(buf, &y) },
		"AppendSyncAgree":  func() ([]byte, error) { return AppendSyncAgree(buf, &z) },
	} {
		if n := testing.AllocsPerRun(100, func() {
			if _, err := f(); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
	frame := goldenBytes(t, "RELAY")
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseRelay(frame); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("ParseRelay: %v allocations, want at most 1 (the node IDs)", n)
	}
	syncFrame, agreeFrame := goldenBytes(t, "SYNC"), goldenBytes(t, "SYNC_AGREE")
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ParseSync(syncFrame); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseSyncAgree(agreeFrame); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("ParseSync and ParseSyncAgree: %v allocations, want 0", n)
	}
	_, all := stream(t, true)
	fr := NewReader(&loopReader{data: all})
	for range 100 { // warm up: grow the buffer to its size
		if _, _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, _, err := fr.Next(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Reader.Next: %v allocations in steady state, want 0", n)
	}
}
