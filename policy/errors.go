package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a policy document. Parse and Load return every problem they find
// joined (errors.Join), each an *Error, ordered by line; use errors.As to get at the first.
type Error struct {
	File string // policy file name; "" when unknown
	Line int    // 1-based line; 0 when unknown
	Path string // field path such as "rules[0].signedBy.anyOf[1]"; "" when the message names its place
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

// source records where a parsed document came from: the file name and, for every field path
// that appeared in it (such as "rules[1].match.repository"), the line it appeared on.
type source struct {
	file  string
	lines map[string]int
}

// problems collects Errors, locating each field path in the parsed file.
type problems struct {
	src  *source
	errs []*Error
}

// add records a problem at path; a field left out of the file is reported at its closest
// parent that is in it.
func (p *problems) add(path, format string, args ...any) {
	e := &Error{File: p.src.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	for q := path; q != ""; q = parent(q) {
		if line, ok := p.src.lines[q]; ok {
			e.Line = line
			break
		}
	}
	p.errs = append(p.errs, e)
}

// err returns the problems joined, by line, or nil.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// parent strips the last element of a field path: "a.b[1].c" -> "a.b[1]" -> "a.b" -> "a".
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// join appends a field name to a path.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
