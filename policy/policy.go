package policy

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Policy is a compiled policy: immutable, safe for concurrent use, identified by Hash.
type Policy struct {
	hash     string
	roots    map[string]TrustRoot
	scanners map[string]Scanner
	rules    []*Rule // file order
	def      *Rule
}

// Load reads the policy file at path and the key, trusted-root and certificate files it names
// (relative to the policy file's directory), and compiles it. A name that is a directory (a
// Notation trust store) reads as its *.pem, *.crt and *.cer files joined in name order. This
// is the package's only I/O. A policy with Rego modules needs WithModuleCompiler.
func Load(path string, opts ...Option) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(data, path, readFileOrDir, opts...)
}

// readFileOrDir reads a file, or joins the certificate files of a directory (not recursive).
func readFileOrDir(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil || !fi.IsDir() {
		return os.ReadFile(name)
	}
	entries, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, e := range entries { // sorted by name
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".pem" && ext != ".crt" && ext != ".cer") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(name, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(append(out, data...), '\n')
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no .pem, .crt or .cer files in the directory", name)
	}
	return out, nil
}

// Parse decodes and compiles one policy document. filename is used in error messages and to
// resolve the relative key and trusted-root paths the document names, which are read with
// readFile (nil: a document that names files is an error). Decoding is strict: an unknown
// field, a duplicate key or a value of the wrong type is an error. Compiling checks every
// cross-reference, pattern, regexp, duration and date. Problems are *Error values, joined,
// each "FILE:LINE: field.path: message". An empty document is a policy that admits every
// image. Rego modules (rego:, regoFile:) are compiled with the WithModuleCompiler option's
// compiler, and their problems reported at their lines too; without one they are an error.
func Parse(data []byte, filename string, readFile func(string) ([]byte, error), opts ...Option) (*Policy, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	src := &source{file: filename, lines: map[string]int{}}
	var doc document
	if err := decodeDocument(data, src, &doc); err != nil {
		return nil, err
	}
	return compile(&doc, src, readFile, o)
}

// Hash is the policy's content hash: lower-case hex SHA-256 of its canonical compiled form,
// key and trusted-root bytes included. Formatting, comments and the order of the trust and
// scanners sections do not change it; any change to what the policy decides does. Cache
// decisions under it.
func (p *Policy) Hash() string { return p.hash }

// Match returns the rule for a repository of an upstream; never nil: when no rule matches it
// returns the default rule. The most specific match wins:
//
//  1. a rule whose upstream is exact (no wildcard) beats one whose upstream is a glob;
//  2. then the rule whose repository pattern has more literal (non-wildcard) characters;
//  3. then the rule that comes first in the file.
//
// Upstreams compare case-insensitively; repositories are lower-case by definition.
func (p *Policy) Match(upstream, repository string) *Rule {
	upstream = strings.ToLower(upstream)
	var best *Rule
	for _, r := range p.rules {
		if !r.upstream.match(upstream) || !r.repository.match(repository) {
			continue
		}
		if best == nil || moreSpecific(r, best) {
			best = r
		}
	}
	if best == nil {
		return p.def
	}
	return best
}

// moreSpecific reports whether a beats b by Match's precedence (b comes first in the file).
func moreSpecific(a, b *Rule) bool {
	if a.upstream.exact != b.upstream.exact {
		return a.upstream.exact
	}
	return a.repository.literal > b.repository.literal
}

// Rules lists the policy's named rules in file order, without the default rule.
func (p *Policy) Rules() []*Rule { return slices.Clone(p.rules) }

// Default returns the rule for repositories no named rule matches. When the document has no
// default section it is an enforce-mode rule that denies everything it is asked about: a policy
// that forgets its default never admits what no rule names (HasDefault tells the two apart).
func (p *Policy) Default() *Rule { return p.def }

// HasDefault reports whether the document has a default section. Without one, images that no
// rule matches are denied.
func (p *Policy) HasDefault() bool { return !p.def.unmatched }

// TrustRoots returns a copy of the policy's trust roots by name, for the verifier to build
// its verifiers from.
func (p *Policy) TrustRoots() map[string]TrustRoot {
	out := make(map[string]TrustRoot, len(p.roots))
	for name, t := range p.roots {
		out[name] = t.clone()
	}
	return out
}

// Scanners returns a copy of the policy's scanners by name.
func (p *Policy) Scanners() map[string]Scanner { return maps.Clone(p.scanners) }

// sortedKeys returns m's keys in order.
func sortedKeys[M ~map[K]V, K cmp.Ordered, V any](m M) []K {
	return slices.Sorted(maps.Keys(m))
}
