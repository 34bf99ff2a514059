package etsi014

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/qrelay/qrelay/internal/etsi014wire"
	"github.com/qrelay/qrelay/supply"
)

// The hot answers (Key container, Status) are written by hand into a
// pooled buffer, in the form encoding/json gives the types of
// internal/etsi014wire (encode_test.go holds them to it); errors, which are
// rare, go through encoding/json with etsi014wire.ErrorBody.

const hexDigits = "0123456789abcdef"

// safeJSON reports whether s can be written between quotes as it is.
func safeJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD
// as with encoding/json.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	if safeJSON(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
			i++
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i++
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
		}
	}
	return append(dst, '"')
}

// stringLen is len(appendString(nil, s)) at most.
func stringLen(s string) int {
	if safeJSON(s) {
		return len(s) + 2
	}
	return 6*len(s) + 2
}

const (
	containerHead = `{"keys":[`
	keyHead       = `{"key_ID":`
	keyMid        = `,"key":"`
	keyTail       = `"}`
	containerTail = `]}`
)

// containerLen bounds the length of the Key container of keys, so that
// its buffer is sized once and never reallocated (a reallocation would
// leave a copy of key text behind).
func containerLen(keys []supply.Key) int {
	n := len(containerHead) + len(containerTail)
	for _, k := range keys {
		n += len(keyHead) + stringLen(k.ID) + len(keyMid) + base64.StdEncoding.EncodedLen(len(k.Bytes)) + len(keyTail) + 1
	}
	return n
}

// appendContainer appends the standard's Key container:
// {"keys":[{"key_ID":"…","key":"<base64>"},…]}.
func appendContainer(dst []byte, keys []supply.Key) []byte {
	dst = append(dst, containerHead...)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, keyHead...)
		dst = appendString(dst, k.ID)
		dst = append(dst, keyMid...)
		dst = base64.StdEncoding.AppendEncode(dst, k.Bytes)
		dst = append(dst, keyTail...)
	}
	return append(dst, containerTail...)
}

// appendStatus appends the standard's Status object.
func appendStatus(dst []byte, s supply.Status) []byte {
	str := func(dst []byte, name, v string) []byte {
		dst = append(dst, name...)
		return appendString(dst, v)
	}
	num := func(dst []byte, name string, v int) []byte {
		dst = append(dst, name...)
		return strconv.AppendInt(dst, int64(v), 10)
	}
	dst = str(dst, `{"source_KME_ID":`, s.SourceKMEID)
	dst = str(dst, `,"target_KME_ID":`, s.TargetKMEID)
	dst = str(dst, `,"master_SAE_ID":`, s.MasterSAEID)
	dst = str(dst, `,"slave_SAE_ID":`, s.SlaveSAEID)
	dst = num(dst, `,"key_size":`, s.KeySize)
	dst = num(dst, `,"stored_key_count":`, s.StoredKeyCount)
	dst = num(dst, `,"max_key_count":`, s.MaxKeyCount)
	dst = num(dst, `,"max_key_per_request":`, s.MaxKeyPerRequest)
	dst = num(dst, `,"max_key_size":`, s.MaxKeySize)
	dst = num(dst, `,"min_key_size":`, s.MinKeySize)
	dst = num(dst, `,"max_SAE_ID_count":`, s.MaxSAEIDCount)
	if len(s.StatusExtension) > 0 {
		dst = appendRaw(append(dst, `,"status_extension":`...), s.StatusExtension)
	}
	return append(dst, '}')
}

// appendRaw appends the JSON value v compacted, or null if it is not
// valid JSON (as a RawMessage that encoding/json refuses to write).
func appendRaw(dst, v []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return append(dst, "null"...)
	}
	return append(dst, b.Bytes()...)
}

// marshalError encodes an Error body; details that cannot be encoded are
// dropped (and reported) rather than losing the message.
func marshalError(msg string, details []map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(etsi014wire.ErrorBody{Message: msg, Details: details})
	if err != nil {
		b.Reset()
		enc.Encode(etsi014wire.ErrorBody{Message: msg}) //nolint:errcheck // a string always encodes
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), err
}
