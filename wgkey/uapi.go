package wgkey

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The cross-platform userspace API of WireGuard: key=value lines, keys in
// lowercase hex. https://www.wireguard.com/xplatform/

// setPSKLineLen is the length of one peer's lines in appendSetPSKs.
const setPSKLineLen = len("public_key=\nupdate_only=true\npreshared_key=\n") + 2*2*len(Key{})

// appendSetPSKs appends the UAPI set lines that change the PSK of each
// peer, and nothing else. update_only=true makes an unknown peer a no-op
// rather than creating it with no endpoint and no allowed IPs.
func appendSetPSKs(b []byte, updates []Update) []byte {
	for i := range updates {
		b = append(b, "public_key="...)
		b = hex.AppendEncode(b, updates[i].Peer[:])
		b = append(b, "\nupdate_only=true\npreshared_key="...)
		b = hex.AppendEncode(b, updates[i].PSK[:])
		b = append(b, '\n')
	}
	return b
}

// parsePeers reads the peers and their last handshake times from the
// answer to a UAPI get. It makes no string of any line, so a caller can
// zeroise text, which holds the private key and the PSKs, afterwards.
func parsePeers(text []byte) ([]PeerState, error) {
	var peers []PeerState
	var sec, nsec int64
	flush := func() {
		if len(peers) > 0 && (sec != 0 || nsec != 0) {
			peers[len(peers)-1].LastHandshake = time.Unix(sec, nsec)
		}
		sec, nsec = 0, 0
	}
	for len(text) > 0 {
		var line []byte
		line, text, _ = bytes.Cut(text, []byte{'\n'})
		key, value, ok := bytes.Cut(line, []byte{'='})
		if !ok {
			continue
		}
		switch string(key) { // no allocation: the compiler converts in place
		case "public_key":
			flush()
			var k wgtypes.Key
			if hex.DecodedLen(len(value)) != len(k) {
				return nil, errBadUAPIKey
			}
			if _, err := hex.Decode(k[:], value); err != nil {
				return nil, errBadUAPIKey
			}
			peers = append(peers, PeerState{Peer: k})
		case "last_handshake_time_sec":
			v, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return nil, err
			}
			sec = v
		case "last_handshake_time_nsec":
			v, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil {
				return nil, err
			}
			nsec = v
		}
	}
	flush()
	return peers, nil
}

// zeroingBuffer is an io.Writer that clears the old array whenever it grows,
// so that Clear leaves no copy of what was written.
type zeroingBuffer struct{ b []byte }

func (z *zeroingBuffer) Write(p []byte) (int, error) {
	if len(z.b)+len(p) > cap(z.b) {
		nb := make([]byte, len(z.b), 2*cap(z.b)+len(p))
		copy(nb, z.b)
		clear(z.b)
		z.b = nb
	}
	z.b = append(z.b, p...)
	return len(p), nil
}

func (z *zeroingBuffer) Clear() { clear(z.b[:cap(z.b)]) }
