package etsi014

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/qrelay/qrelay/supply"
)

// encParams is an enc_keys request as read from the query or the body,
// before it is checked against the KME's limits.
type encParams struct {
	number, size       int
	hasNumber, hasSize bool
	additional         []string
	mandatory          int      // entries of extension_mandatory
	mandatoryNames     []string // the parameters they name
}

// Field names of the standard's Key request and Key IDs objects.
const (
	fNumber     = "number"
	fSize       = "size"
	fAdditional = "additional_slave_SAE_IDs"
	fMandatory  = "extension_mandatory"
	fOptional   = "extension_optional"
	fKeyIDs     = "key_IDs"
	fKeyID      = "key_ID"
	fKeyIDExt   = "key_ID_extension"
	fKeyIDsExt  = "key_IDs_extension"
)

func badf(format string, args ...any) *supply.Error {
	return supply.BadRequest(fmt.Sprintf(format, args...))
}

// ---- query strings (GET) ----

// nextParam splits the first name=value pair off a raw query and
// percent-decodes it; empty pairs ("a=1&&b=2") yield an empty name.
func nextParam(raw string) (name, value, rest string, e *supply.Error) {
	pair, rest, _ := strings.Cut(raw, "&")
	name, value, _ = strings.Cut(pair, "=")
	if strings.ContainsAny(pair, "%+") {
		n, err1 := url.QueryUnescape(name)
		v, err2 := url.QueryUnescape(value)
		if err1 != nil || err2 != nil {
			return "", "", "", badf("query parameter %q: invalid percent-encoding", pair)
		}
		name, value = n, v
	}
	return name, value, rest, nil
}

// queryInt reads the decimal integer value of query parameter name.
func queryInt(name, value string) (int, *supply.Error) {
	n, err := strconv.Atoi(value)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, badf("query parameter %s: %q is out of range", name, value)
		}
		return 0, badf("query parameter %s: %q is not a decimal integer", name, value)
	}
	return n, nil
}

// parseEncQuery reads the query of GET enc_keys: number and size, each at
// most once, and nothing else (the standard allows GET only for those).
func parseEncQuery(raw string) (encParams, *supply.Error) {
	var p encParams
	for raw != "" {
		name, value, rest, e := nextParam(raw)
		if e != nil {
			return p, e
		}
		raw = rest
		var err *supply.Error
		switch name {
		case "":
			if value != "" {
				return p, badf("query parameter with no name (=%q)", value)
			}
			continue
		case fNumber:
			if p.hasNumber {
				return p, badf("query parameter number given twice")
			}
			p.number, err = queryInt(name, value)
			p.hasNumber = true
		case fSize:
			if p.hasSize {
				return p, badf("query parameter size given twice")
			}
			p.size, err = queryInt(name, value)
			p.hasSize = true
		default:
			return p, badf("query parameter %q: GET enc_keys takes only number and size; send %s and extensions in a POST body", name, fAdditional)
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// parseDecQuery reads the query of GET dec_keys: exactly one key_ID.
func parseDecQuery(raw string) (string, *supply.Error) {
	id, have := "", false
	for raw != "" {
		name, value, rest, e := nextParam(raw)
		if e != nil {
			return "", e
		}
		raw = rest
		switch name {
		case "":
			if value != "" {
				return "", badf("query parameter with no name (=%q)", value)
			}
		case fKeyID:
			if have {
				return "", badf("query parameter key_ID given twice: GET dec_keys takes one key_ID; send more in a POST body")
			}
			id, have = value, true
		default:
			return "", badf("query parameter %q: GET dec_keys takes only key_ID", name)
		}
	}
	if !have {
		return "", badf("query parameter key_ID is missing: GET dec_keys takes one key_ID")
	}
	return id, nil
}

// ---- fast paths for the common small bodies ----

// scanner reads the plain JSON of the fast paths. Anything it does not
// know (escapes, non-ASCII, fractions, other fields) makes the fast path
// give up, and the strict decoder reads the body instead.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// is consumes c after optional white space.
func (s *scanner) is(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (s *scanner) str() ([]byte, bool) {
	if !s.is('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// uint reads a non-negative integer of at most 9 digits.
func (s *scanner) uint() (int, bool) {
	s.ws()
	start, n := s.i, 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + int(s.b[s.i]-'0')
		s.i++
	}
	digits := s.i - start
	if digits == 0 || digits > 9 || digits > 1 && s.b[start] == '0' {
		return 0, false
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return n, true
}

// end reports whether only white space is left.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// fastEncBody reads bodies like {"number":1,"size":256}: only number and
// size, each at most once, as plain integers.
func fastEncBody(b []byte) (p encParams, ok bool) {
	s := scanner{b: b}
	if s.end() {
		return p, true
	}
	if !s.is('{') {
		return p, false
	}
	if s.is('}') {
		return p, s.end()
	}
	for {
		name, ok := s.str()
		if !ok || !s.is(':') {
			return p, false
		}
		n, ok := s.uint()
		if !ok {
			return p, false
		}
		switch string(name) {
		case fNumber:
			if p.hasNumber {
				return p, false
			}
			p.number, p.hasNumber = n, true
		case fSize:
			if p.hasSize {
				return p, false
			}
			p.size, p.hasSize = n, true
		default:
			return p, false
		}
		if s.is('}') {
			return p, s.end()
		}
		if !s.is(',') {
			return p, false
		}
	}
}

// fastDecBody reads bodies like {"key_IDs":[{"key_ID":"…"},{"key_ID":"…"}]}
// with no extensions.
func fastDecBody(b []byte) (ids []string, ok bool) {
	s := scanner{b: b}
	if !s.is('{') {
		return nil, false
	}
	if name, ok := s.str(); !ok || string(name) != fKeyIDs || !s.is(':') || !s.is('[') {
		return nil, false
	}
	if !s.is(']') {
		for {
			if !s.is('{') {
				return nil, false
			}
			name, ok := s.str()
			if !ok || string(name) != fKeyID || !s.is(':') {
				return nil, false
			}
			id, ok := s.str()
			if !ok || !s.is('}') {
				return nil, false
			}
			ids = append(ids, string(id))
			if s.is(']') {
				break
			}
			if !s.is(',') {
				return nil, false
			}
		}
	}
	if !s.is('}') || !s.end() {
		return nil, false
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, true
}

// ---- strict decoding ----

// kind names a JSON value's type for error messages.
func kind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isNull(raw []byte) bool { return kind(raw) == "null" }

// topValue checks that body is one JSON value with nothing after it and
// returns it.
func topValue(body []byte) (json.RawMessage, *supply.Error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return nil, syntaxError(err)
	}
	off := dec.InputOffset()
	if rest := bytes.TrimLeft(body[off:], " \t\r\n"); len(rest) > 0 {
		return nil, badf("request body: data after the JSON object at byte %d", int(off)+len(body[off:])-len(rest))
	}
	return v, nil
}

func syntaxError(err error) *supply.Error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return badf("request body: invalid JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badf("request body: JSON ends too early")
	}
	return badf("request body: %v", err)
}

// walkObject calls fn for each member of the JSON object raw (whose
// syntax is already checked), refusing non-objects and repeated names.
func walkObject(raw []byte, path string, fn func(name string, v json.RawMessage) *supply.Error) *supply.Error {
	if k := kind(raw); k != "an object" {
		return badf("%s: got %s, want an object", path, k)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return syntaxError(err)
	}
	var seen []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		name, _ := tok.(string)
		if slices.Contains(seen, name) {
			return badf("%s: field %q appears twice", path, name)
		}
		seen = append(seen, name)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return syntaxError(err)
		}
		if e := fn(name, v); e != nil {
			return e
		}
	}
	return nil
}

// walkArray calls fn for each element of the JSON array raw; null is an
// empty array.
func walkArray(raw []byte, path string, fn func(i int, v json.RawMessage) *supply.Error) *supply.Error {
	if isNull(raw) {
		return nil
	}
	if k := kind(raw); k != "an array" {
		return badf("%s: got %s, want an array", path, k)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return syntaxError(err)
	}
	for i := 0; dec.More(); i++ {
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return syntaxError(err)
		}
		if e := fn(i, v); e != nil {
			return e
		}
	}
	return nil
}

func jsonInt(raw []byte, path string) (int, *supply.Error) {
	if k := kind(raw); k != "a number" {
		return 0, badf("%s: got %s, want an integer", path, k)
	}
	n, err := strconv.Atoi(string(raw))
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, badf("%s: %s is out of range", path, raw)
		}
		return 0, badf("%s: %s is not an integer", path, raw)
	}
	return n, nil
}

func jsonString(raw []byte, path string) (string, *supply.Error) {
	if k := kind(raw); k != "a string" {
		return "", badf("%s: got %s, want a string", path, k)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", badf("%s: %v", path, err)
	}
	return s, nil
}

// jsonExtension checks that an extension is an object (or null) and
// ignores its content.
func jsonExtension(raw []byte, path string) *supply.Error {
	if k := kind(raw); k != "an object" && k != "null" {
		return badf("%s: got %s, want an object", path, k)
	}
	return nil
}

const (
	bodyPath     = "request body"
	encFieldList = "number, size, additional_slave_SAE_IDs, extension_mandatory, extension_optional"
)

// parseEncBody reads a POST enc_keys body: the standard's Key request
// object, every field optional, an empty body meaning all defaults.
func parseEncBody(body []byte) (encParams, *supply.Error) {
	if p, ok := fastEncBody(body); ok {
		return p, nil
	}
	return strictEncBody(body)
}

// strictEncBody is parseEncBody without the fast path.
func strictEncBody(body []byte) (encParams, *supply.Error) {
	var p encParams
	if len(bytes.TrimLeft(body, " \t\r\n")) == 0 {
		return p, nil
	}
	top, e := topValue(body)
	if e != nil {
		return p, e
	}
	e = walkObject(top, bodyPath, func(name string, v json.RawMessage) *supply.Error {
		path := bodyPath + ": " + name
		switch name {
		case fNumber, fSize:
			if isNull(v) {
				return nil
			}
			n, e := jsonInt(v, path)
			if name == fNumber {
				p.number, p.hasNumber = n, true
			} else {
				p.size, p.hasSize = n, true
			}
			return e
		case fAdditional:
			return walkArray(v, path, func(i int, v json.RawMessage) *supply.Error {
				s, e := jsonString(v, fmt.Sprintf("%s[%d]", path, i))
				p.additional = append(p.additional, s)
				return e
			})
		case fMandatory, fOptional:
			return walkArray(v, path, func(i int, v json.RawMessage) *supply.Error {
				if name == fMandatory {
					p.mandatory++
				}
				return walkObject(v, fmt.Sprintf("%s[%d]", path, i), func(ext string, _ json.RawMessage) *supply.Error {
					if name == fMandatory {
						p.mandatoryNames = append(p.mandatoryNames, ext)
					}
					return nil
				})
			})
		}
		return badf("%s: unknown field %q; the Key request object has %s", bodyPath, name, encFieldList)
	})
	return p, e
}

// parseDecBody reads a POST dec_keys body: the standard's Key IDs object.
// It returns the key IDs as sent; checking them is the caller's.
func parseDecBody(body []byte) ([]string, *supply.Error) {
	if ids, ok := fastDecBody(body); ok {
		return ids, nil
	}
	return strictDecBody(body)
}

// strictDecBody is parseDecBody without the fast path.
func strictDecBody(body []byte) ([]string, *supply.Error) {
	if len(bytes.TrimLeft(body, " \t\r\n")) == 0 {
		return nil, badf("%s is empty: dec_keys needs a Key IDs object {\"key_IDs\":[{\"key_ID\":\"<UUID>\"}]}", bodyPath)
	}
	top, e := topValue(body)
	if e != nil {
		return nil, e
	}
	var ids []string
	e = walkObject(top, bodyPath, func(name string, v json.RawMessage) *supply.Error {
		path := bodyPath + ": " + name
		switch name {
		case fKeyIDs:
			return walkArray(v, path, func(i int, v json.RawMessage) *supply.Error {
				elem := fmt.Sprintf("%s[%d]", path, i)
				have := false
				e := walkObject(v, elem, func(name string, v json.RawMessage) *supply.Error {
					switch name {
					case fKeyID:
						s, e := jsonString(v, elem+"."+name)
						ids = append(ids, s)
						have = true
						return e
					case fKeyIDExt:
						return jsonExtension(v, elem+"."+name)
					}
					return badf("%s: unknown field %q; a key ID object has key_ID and key_ID_extension", elem, name)
				})
				if e == nil && !have {
					e = badf("%s: key_ID is missing", elem)
				}
				return e
			})
		case fKeyIDsExt:
			return jsonExtension(v, path)
		}
		return badf("%s: unknown field %q; the Key IDs object has key_IDs and key_IDs_extension", bodyPath, name)
	})
	return ids, e
}
