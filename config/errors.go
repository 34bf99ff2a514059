package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one problem with a config: where it is and what to do.
type FieldError struct {
	File string // the config file's name as given to Load; "" from Parse
	Line int    // 1-based line in the file; 0 if unknown (a Config built in Go)
	Path string // the field, like "links[1].source.simulator.rate"; "" for the whole file
	Msg  string // what is wrong and how to fix it
}

func (e *FieldError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ValidationError lists every problem found in a config, in file order.
type ValidationError struct {
	Errors []*FieldError
}

// Error gives one problem per line.
func (e *ValidationError) Error() string {
	s := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		s[i] = fe.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the FieldErrors, for errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// checker collects FieldErrors with their lines.
type checker struct {
	file  string
	lines map[string]int  // path -> line of its key or list item
	bad   map[string]bool // paths that failed to decode; later checks skip them
	errs  []*FieldError
}

func newChecker(file string) *checker {
	return &checker{file: file, lines: map[string]int{}, bad: map[string]bool{}}
}

// at records a problem at an explicit line and marks path bad.
func (ck *checker) at(line int, path, format string, args ...any) {
	ck.bad[path] = true
	ck.errs = append(ck.errs, &FieldError{File: ck.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// add records a problem with path, at the line of path or of its nearest
// ancestor in the file, unless path or an ancestor already failed to decode.
func (ck *checker) add(path, format string, args ...any) {
	for p := path; p != ""; p = parent(p) {
		if ck.bad[p] {
			return
		}
	}
	ck.errs = append(ck.errs, &FieldError{File: ck.file, Line: ck.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (ck *checker) line(path string) int {
	for p := path; p != ""; p = parent(p) {
		if l, ok := ck.lines[p]; ok {
			return l
		}
	}
	return 0
}

func (ck *checker) err() error {
	if len(ck.errs) == 0 {
		return nil
	}
	errs := slices.Clone(ck.errs)
	slices.SortStableFunc(errs, func(a, b *FieldError) int { return cmp.Compare(a.Line, b.Line) })
	return &ValidationError{Errors: errs}
}

// parent strips the last ".name" or "[i]" from a path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func child(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }
