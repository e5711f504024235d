package report

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// Normalised severities, lowest first.
const (
	sevUnknown  = "unknown"
	sevLow      = "low"
	sevMedium   = "medium"
	sevHigh     = "high"
	sevCritical = "critical"
)

// severity normalises a scanner's severity label: Trivy's CRITICAL, Harbor's
// Critical, CycloneDX's critical all become critical. Red Hat's "important" and
// "moderate" map to high and medium; "negligible", "info" and "none" to low;
// anything else to unknown.
func severity(label string) string {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "critical":
		return sevCritical
	case "high", "important":
		return sevHigh
	case "medium", "moderate":
		return sevMedium
	case "low", "negligible", "info", "informational", "none":
		return sevLow
	}
	return sevUnknown
}

// isSeverity reports whether label names a severity (not "unknown").
func isSeverity(label string) bool {
	return severity(label) != sevUnknown || strings.EqualFold(strings.TrimSpace(label), sevUnknown)
}

// scoreSeverity maps a CVSS base score to a severity: >= 9 critical, >= 7
// high, >= 4 medium, > 0 low, anything else unknown.
func scoreSeverity(score float64) string {
	switch {
	case score >= 9:
		return sevCritical
	case score >= 7:
		return sevHigh
	case score >= 4:
		return sevMedium
	case score > 0:
		return sevLow
	}
	return sevUnknown
}

// severityRank orders normalised severities, unknown lowest.
func severityRank(s string) int {
	switch s {
	case sevLow:
		return 1
	case sevMedium:
		return 2
	case sevHigh:
		return 3
	case sevCritical:
		return 4
	}
	return 0
}

// collector gathers findings, normalised and without duplicates, up to
// MaxFindings.
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
	f.Severity = severity(f.Severity)
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
