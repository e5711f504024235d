package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// glob is a compiled match pattern for upstreams or repositories:
//
//   - any run of characters except "/" (within one path segment)
//     **  as a whole path segment: zero or more segments ("acme/**" matches acme, acme/app
//     and acme/team/app; "**/cache" matches cache and x/y/cache; "**" matches everything)
//     ?   exactly one character except "/"
//
// Everything else is literal. Patterns are matched against the whole name.
type glob struct {
	pattern string
	re      *regexp.Regexp
	// literal counts the pattern's non-wildcard characters: the more, the more specific.
	literal int
	// exact is true when the pattern has no wildcards.
	exact bool
}

// compileGlob compiles pattern; allowed lists the literal characters names may contain
// besides lower-case letters and digits.
func compileGlob(pattern, allowed string) (*glob, error) {
	if pattern == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	if strings.HasPrefix(pattern, "/") || strings.HasSuffix(pattern, "/") || strings.Contains(pattern, "//") {
		return nil, fmt.Errorf("bad pattern %q: empty path segment", pattern)
	}
	g := &glob{pattern: pattern, exact: true}
	var re strings.Builder
	re.WriteString("^")
	var segs []string
	for _, seg := range strings.Split(pattern, "/") {
		if seg == "**" && len(segs) > 0 && segs[len(segs)-1] == "**" {
			continue // "**/**" means what "**" means
		}
		segs = append(segs, seg)
	}
	for i, seg := range segs {
		last := i == len(segs)-1
		if seg == "**" {
			g.exact = false
			switch {
			case len(segs) == 1:
				re.WriteString(".*")
			case last: // "a/**": the "/" before it is optional along with the segments
				// Written before this segment: drop the "/" the previous segment added.
				s := strings.TrimSuffix(re.String(), "/")
				re.Reset()
				re.WriteString(s)
				re.WriteString("(?:/[^/]+)*")
			default: // "**/b" or "a/**/b": zero or more whole segments, each with its "/"
				re.WriteString("(?:[^/]+/)*")
			}
			continue
		}
		if strings.Contains(seg, "**") {
			return nil, fmt.Errorf("bad pattern %q: ** must be a whole path segment", pattern)
		}
		for _, c := range seg {
			switch {
			case c == '*':
				g.exact = false
				re.WriteString("[^/]*")
			case c == '?':
				g.exact = false
				re.WriteString("[^/]")
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', strings.ContainsRune(allowed, c):
				g.literal++
				re.WriteString(regexp.QuoteMeta(string(c)))
			case c >= 'A' && c <= 'Z':
				return nil, fmt.Errorf("bad pattern %q: names are lower-case", pattern)
			default:
				return nil, fmt.Errorf("bad pattern %q: character %q is not allowed", pattern, c)
			}
		}
		if !last {
			g.literal++ // the "/"
			re.WriteString("/")
		}
	}
	re.WriteString("$")
	g.re = regexp.MustCompile(re.String())
	return g, nil
}

// match reports whether name matches the whole pattern.
func (g *glob) match(name string) bool {
	if g.exact {
		return name == g.pattern
	}
	return g.re.MatchString(name)
}

// Pattern is a compiled upstream or repository glob with the semantics of a rule's match: "*" within one path
// segment, "**" as a whole segment for any number of them, "?" for one character. The allow and deny lists of
// the admin API match with it, so that a glob means the same everywhere.
type Pattern struct{ g *glob }

// CompileRepositoryPattern compiles a repository glob such as "acme/**" or "library/nginx".
func CompileRepositoryPattern(s string) (Pattern, error) {
	g, err := compileGlob(s, "._-")
	if err != nil {
		return Pattern{}, err
	}
	return Pattern{g}, nil
}

// CompileUpstreamPattern compiles an upstream glob such as "ghcr.io" or "*.example.com"; upstreams compare
// case-insensitively.
func CompileUpstreamPattern(s string) (Pattern, error) {
	if strings.Contains(s, "/") {
		return Pattern{}, fmt.Errorf("bad pattern %q: an upstream is a host[:port], without \"/\"", s)
	}
	g, err := compileGlob(strings.ToLower(s), ".-:_")
	if err != nil {
		return Pattern{}, err
	}
	return Pattern{g}, nil
}

// Match reports whether name matches the whole pattern. The zero Pattern matches nothing.
func (p Pattern) Match(name string) bool {
	if p.g == nil {
		return false
	}
	return p.g.match(name)
}

// Exact reports whether the pattern has no wildcards.
func (p Pattern) Exact() bool { return p.g != nil && p.g.exact }

// String returns the pattern as written.
func (p Pattern) String() string {
	if p.g == nil {
		return ""
	}
	return p.g.pattern
}
