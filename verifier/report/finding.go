package report

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// severity is the boundary where a scanner's severity label becomes one of
// policy's Severity constants: Trivy's CRITICAL, Harbor's Critical, CycloneDX's
// critical all become policy.SeverityCritical. Red Hat's "important" and
// "moderate" map to high and medium; "negligible", "info" and "none" to low (a
// finding a scanner lists is never below low); anything else, the empty label
// included, to policy.SeverityUnknown, which is how policy ranks a name it does
// not know.
func severity(label string) policy.Severity {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "critical":
		return policy.SeverityCritical
	case "high", "important":
		return policy.SeverityHigh
	case "medium", "moderate":
		return policy.SeverityMedium
	case "low", "negligible", "info", "informational", "none":
		return policy.SeverityLow
	}
	return policy.SeverityUnknown
}

// isSeverity reports whether label names a severity, "unknown" included, as
// opposed to being a word severity maps to unknown because it knows no better.
func isSeverity(label string) bool {
	return severity(label) != policy.SeverityUnknown || strings.EqualFold(strings.TrimSpace(label), string(policy.SeverityUnknown))
}

// scoreSeverity maps a CVSS base score to a severity: >= 9 critical, >= 7
// high, >= 4 medium, > 0 low, anything else unknown.
func scoreSeverity(score float64) policy.Severity {
	switch {
	case score >= 9:
		return policy.SeverityCritical
	case score >= 7:
		return policy.SeverityHigh
	case score >= 4:
		return policy.SeverityMedium
	case score > 0:
		return policy.SeverityLow
	}
	return policy.SeverityUnknown
}

// collector gathers findings, trimmed and without duplicates, up to
// MaxFindings. Their severities are normalised already: parsers build each
// finding's Severity with severity, scoreSeverity or levelSeverity.
type collector struct {
	format   string
	findings []policy.Finding
	seen     map[policy.Finding]bool
}

func newCollector(format string) *collector {
	return &collector{format: format, seen: map[policy.Finding]bool{}}
}

// add records f, or fails once the report holds more than MaxFindings.
func (c *collector) add(f policy.Finding) error {
	f.ID = strings.TrimSpace(f.ID)
	f.Package = strings.TrimSpace(f.Package)
	f.InstalledVersion = strings.TrimSpace(f.InstalledVersion)
	f.FixedVersion = strings.TrimSpace(f.FixedVersion)
	if c.seen[f] {
		return nil
	}
	if len(c.findings) >= MaxFindings {
		return fmt.Errorf("%w: %s: more than %d findings", ErrTooLarge, c.format, MaxFindings)
	}
	c.seen[f] = true
	c.findings = append(c.findings, f)
	return nil
}

// parseTime reads an RFC 3339 timestamp; anything else is the zero time, which
// policy treats as "scan time unknown" (and fails a max-age check on).
func parseTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// purl is the parts of a package URL (pkg:type/namespace/name@version?q#s)
// this package uses.
type purl struct {
	Type, Namespace, Name, Version string
}

// parsePURL splits a package URL; ok is false when s is not one.
func parsePURL(s string) (p purl, ok bool) {
	rest, ok := strings.CutPrefix(s, "pkg:")
	if !ok {
		return purl{}, false
	}
	rest, _, _ = strings.Cut(rest, "#")
	rest, _, _ = strings.Cut(rest, "?")
	rest = strings.TrimLeft(rest, "/")
	if at := strings.LastIndex(rest, "@"); at >= 0 && at > strings.LastIndex(rest, "/") {
		p.Version = unescape(rest[at+1:])
		rest = rest[:at]
	}
	typ, path, ok := strings.Cut(rest, "/")
	if !ok || typ == "" || path == "" {
		return purl{}, false
	}
	p.Type = strings.ToLower(typ)
	if i := strings.LastIndex(path, "/"); i >= 0 {
		p.Namespace = unescape(path[:i])
		path = path[i+1:]
	}
	p.Name = unescape(path)
	return p, p.Name != ""
}

// fullName is the package name as scanners print it: "group:artifact" for
// Maven, "namespace/name" for npm scopes and Go modules, plain name for OS
// packages (whose namespace is the distribution).
func (p purl) fullName() string {
	switch {
	case p.Namespace == "":
		return p.Name
	case p.Type == "maven":
		return p.Namespace + ":" + p.Name
	case p.Type == "npm", p.Type == "golang", p.Type == "composer", p.Type == "github":
		return p.Namespace + "/" + p.Name
	}
	return p.Name
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// number reads a JSON number or a numeric string (SARIF's security-severity
// is a string in Trivy's and Grype's output, a number in others').
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		return f, err == nil
	}
	return 0, false
}
