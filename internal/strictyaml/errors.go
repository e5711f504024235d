package strictyaml

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a decoded file, located as well as it can be.
type Error struct {
	File string // file name; "" when unknown
	Line int    // 1-based line; 0 when unknown
	Path string // field path such as "upstreams[1].url"; "" when the message names its place
	Msg  string // what is wrong
}

// Error formats e as "FILE:LINE: PATH: MSG", leaving out the parts that are unknown.
func (e *Error) Error() string {
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

// Source records where a decoded document came from: the file name and, for every field path
// that appeared in it (such as "upstreams[1].url" or "rules[0]"), the line it appeared on.
// Decode fills Lines. A nil *Source is valid and locates nothing.
type Source struct {
	File  string         // file name for messages; "" when unknown
	Lines map[string]int // field path -> 1-based line
}

// Line returns the line path appeared on or, for a field left out of the file, the line of
// its closest parent that is in it ("a.b[1].c", then "a.b[1]", "a.b", "a"); 0 if none is.
func (s *Source) Line(path string) int {
	if s == nil {
		return 0
	}
	for q := path; q != ""; q = parent(q) {
		if line, ok := s.Lines[q]; ok {
			return line
		}
	}
	return 0
}

// Errorf returns an Error at path, located in s (see Line).
func (s *Source) Errorf(path, format string, args ...any) *Error {
	e := &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
	if s != nil {
		e.File = s.File
		e.Line = s.Line(path)
	}
	return e
}

// Problems collects the Errors that checks after decoding find, locating each field path in
// Source (nil: the Errors have no file or line, as for a configuration built in code). The
// zero value is ready to use.
type Problems struct {
	Source *Source
	errs   []*Error
}

// Add records a problem at path.
func (p *Problems) Add(path, format string, args ...any) {
	p.errs = append(p.errs, p.Source.Errorf(path, format, args...))
}

// Len returns how many problems were added.
func (p *Problems) Len() int { return len(p.errs) }

// Err returns the problems joined (errors.Join) in the order they were added, or nil.
func (p *Problems) Err() error { return joinErrors(p.errs) }

// JoinByLine sorts errs by line, in place and stably, and joins them (errors.Join); nil when
// errs is empty.
func JoinByLine(errs []*Error) error {
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	return joinErrors(errs)
}

func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// Join appends a field name to a field path: Join("a.b", "c") is "a.b.c", Join("", "c") is "c".
func Join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// parent strips the last element of a field path: "a.b[1].c" -> "a.b[1]" -> "a.b" -> "a".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
