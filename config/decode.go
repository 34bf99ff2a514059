package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
	rateType     = reflect.TypeFor[Rate]()
	seedType     = reflect.TypeFor[Seed]()
)

// decodeFile decodes data into c, recording errors, set paths and lines in
// ck and c. It reports false if there is nothing worth validating further
// (a YAML syntax error, an empty file, several documents).
func decodeFile(ck *checker, data []byte, c *Config, baseDir string) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			ck.at(0, "", "the config is empty; it needs at least node.id, tls (ca, cert, key) and km.listen (config/example.yaml in the qrelay source shows every field)")
		} else {
			ck.at(yamlErrLine(err), "", "%s", yamlErrMsg(err))
		}
		return false
	}
	var next yaml.Node
	switch err := safeDecode(dec, &next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		ck.at(yamlErrLine(err), "", "%s", yamlErrMsg(err))
		return false
	default:
		ck.at(next.Line, "", "a second YAML document starts here; a config file holds one document (remove the \"---\" line and what follows, or merge it into the first)")
		return false
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		ck.at(root.Line, "", "the config is empty; it needs at least node.id, tls (ca, cert, key) and km.listen (config/example.yaml in the qrelay source shows every field)")
		return false
	}
	if root.Kind != yaml.MappingNode {
		ck.at(root.Line, "", "want a mapping (key: value lines) at the top level, got %s; start with \"node:\"", kindName(root))
		return false
	}
	d := &decoder{ck: ck, set: c.set}
	d.value(root, reflect.ValueOf(c).Elem(), "")
	c.resolve(baseDir)
	return true
}

// safeDecode turns a panic in the YAML library into an error, so that no
// input can crash the daemon.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the YAML parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): `)

func yamlErrLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func yamlErrMsg(err error) string {
	s := yamlLineRE.ReplaceAllString(err.Error(), "")
	s = strings.TrimPrefix(s, "yaml: ")
	return "not valid YAML: " + s
}

// resolve makes relative file paths relative to baseDir.
func (c *Config) resolve(baseDir string) {
	if baseDir == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(baseDir, *p)
		}
	}
	abs(&c.TLS.CA)
	abs(&c.TLS.Cert)
	abs(&c.TLS.Key)
	for i := range c.Links {
		if e := c.Links[i].Source.ETSI014; e != nil {
			abs(&e.Cert)
			abs(&e.Key)
			abs(&e.CA)
		}
	}
	abs(&c.Storage.Dir)
}

type decoder struct {
	ck  *checker
	set map[string]bool
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value lines)"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "something else"
}

// want names what a Go type is written as in YAML.
func want(t reflect.Type) string {
	switch t {
	case durationType:
		return `a duration like "5s"`
	case sizeType:
		return `a size like "64MiB"`
	case rateType:
		return `a rate like "10Mbit/s"`
	case seedType:
		return "a seed of 64 hex digits"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Pointer:
		return "a mapping (key: value lines)"
	case reflect.Slice:
		return "a list (lines starting with \"- \")"
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	}
	return "a single value"
}

// value decodes n into v, whose field path is path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.ck.at(n.Line, path, "YAML anchors and aliases (&name, *name) are not supported in a config; write the value out")
		return
	}
	if t := n.Tag; t != "" && t != "!" && !strings.HasPrefix(t, "!!") {
		d.ck.at(n.Line, path, "custom YAML tag %s is not supported; remove it", quote(t))
		return
	}
	line := n.Line
	if path != "" {
		if l, ok := d.ck.lines[path]; ok {
			line = l // the key's line, where "links:" is written
		} else {
			d.ck.lines[path] = n.Line
		}
	}
	if isNull(n) {
		switch v.Kind() {
		case reflect.Struct, reflect.Pointer:
			// "simulator:" with nothing under it is an empty mapping: the
			// source is chosen and its required fields are reported missing.
		default:
			return
		}
	}
	if path != "" {
		d.set[path] = true
	}
	t := v.Type()
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	case reflect.Struct:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.ck.at(line, path, "want %s, got %s", want(t), kindName(n))
			return
		}
		d.mapping(n, v, path)
		return
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.ck.at(line, path, "want %s, got %s", want(t), kindName(n))
			return
		}
		if len(n.Content) == 0 {
			return // "links: []" is no links, nil as if left out
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), index(path, i))
		}
		v.Set(s)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.ck.at(line, path, "want %s, got %s", want(t), kindName(n))
		return
	}
	if err := setScalar(v, n.Value); err != nil {
		d.ck.at(line, path, "%s", err)
	}
}

// setScalar parses s into v. Errors about a Seed never contain s.
func setScalar(v reflect.Value, s string) error {
	switch v.Type() {
	case durationType:
		dur, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(dur))
		return nil
	case sizeType:
		n, err := ParseSize(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
		return nil
	case rateType:
		r, err := ParseRate(s)
		if err != nil {
			return err
		}
		v.SetFloat(float64(r))
		return nil
	case seedType:
		seed, err := ParseSeed(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(seed))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			return fmt.Errorf("%s is not true or false", quote(s))
		}
	case reflect.Int:
		n, err := strconv.ParseInt(s, 10, 0)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return fmt.Errorf("%s is too large", quote(s))
			}
			return fmt.Errorf("%s is not a whole number; write it in decimal digits, like \"64\"", quote(s))
		}
		v.SetInt(n)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("%s is not a number; write it like \"0.11\"", quote(s))
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("config: cannot decode into %s", v.Type()) // a field type this file does not handle
	}
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Errorf("%s has no unit; write it like \"%ss\" or \"%sms\"", quote(s), s, s)
		}
		return 0, fmt.Errorf("%s is not a duration; write it like \"500ms\", \"5s\" or \"2m\" (units ns, us, ms, s, m, h)", quote(s))
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is negative; durations here are zero or more", quote(s))
	}
	return d, nil
}

// fieldNames maps each YAML name of struct type t to its field index.
func fieldNames(t reflect.Type) (map[string]int, []string) {
	m := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
		names = append(names, name)
	}
	return m, names
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	fields, names := fieldNames(v.Type())
	first := map[string]int{} // key -> line
	var meant []string        // fields an unknown key probably misspells
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Anchor != "" {
			d.ck.at(k.Line, path, "a key must be a plain name, not %s", kindName(k))
			continue
		}
		kp := child(path, k.Value)
		if k.ShortTag() == "!!merge" {
			d.ck.at(k.Line, kp, "YAML merge keys (<<) are not supported in a config; write the fields out")
			continue
		}
		if l, dup := first[k.Value]; dup {
			d.ck.at(k.Line, kp, "given twice (first at line %d); keep one", l)
			continue
		}
		first[k.Value] = k.Line
		fi, ok := fields[k.Value]
		if !ok {
			msg, best := unknownField(k.Value, path, names)
			d.ck.at(k.Line, kp, "%s", msg)
			if best != "" {
				meant = append(meant, best)
			}
			continue
		}
		d.ck.lines[kp] = k.Line
		d.value(val, v.Field(fi), kp)
	}
	// "sedd:" was reported; do not also report "seed" as missing.
	for _, name := range meant {
		if _, given := first[name]; !given {
			d.ck.bad[child(path, name)] = true
		}
	}
}

// unknownField explains an unknown key, and returns the field it most
// likely misspells, if any.
func unknownField(key, path string, names []string) (string, string) {
	where := "in " + path
	if path == "" {
		where = "at the top level"
	}
	msg := fmt.Sprintf("unknown field %s", quote(key))
	best, bestDist := "", 3
	for _, name := range names {
		if dist := editDistance(strings.ToLower(key), name); dist < bestDist && 2*dist < len(key) {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return msg + fmt.Sprintf(" (fields %s: %s)", where, strings.Join(names, ", ")), best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // not a typo; and keep the work bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
