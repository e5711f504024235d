package policy

import "github.com/portcullis/portcullis/internal/strictyaml"

// Error is one problem in a policy document. Parse and Load return every problem they find
// joined (errors.Join), each an *Error, ordered by line; use errors.As to get at the first.
type Error = strictyaml.Error

// source records where a parsed document came from: the file name and, for every field path
// that appeared in it (such as "rules[1].match.repository"), the line it appeared on.
type source struct {
	file  string
	lines map[string]int
}

// shared is s as the decoder sees it; the two share one lines map.
func (s *source) shared() *strictyaml.Source {
	return &strictyaml.Source{File: s.file, Lines: s.lines}
}

// problems collects the compiler's Errors, locating each field path in the parsed file (a
// field left out of the file is reported at its closest parent that is in it). A step tells
// whether it found anything by comparing len(errs) before and after.
type problems struct {
	src  *source
	errs []*Error
}

// add records a problem at path.
func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, p.src.shared().Errorf(path, format, args...))
}

// err returns the problems joined, by line, or nil.
func (p *problems) err() error { return strictyaml.JoinByLine(p.errs) }

// join appends a field name to a path.
func join(path, field string) string { return strictyaml.Join(path, field) }
