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
