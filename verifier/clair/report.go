package clair

import (
	"sort"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// vulnerabilityReport is the part of Clair's VulnerabilityReport the client reads.
type vulnerabilityReport struct {
	ManifestHash           string                   `json:"manifest_hash"`
	Packages               map[string]pkg           `json:"packages"`
	Vulnerabilities        map[string]vulnerability `json:"vulnerabilities"`
	PackageVulnerabilities map[string][]string      `json:"package_vulnerabilities"`
}

type pkg struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

type vulnerability struct {
	ID                 string `json:"id"`
	Name               string `json:"name"`
	Severity           string `json:"severity"`
	NormalizedSeverity string `json:"normalized_severity"`
	FixedInVersion     string `json:"fixed_in_version"`
	Package            *pkg   `json:"package"`
}

// severity maps Clair's normalized severity (Unknown, Negligible, Low, Medium, High, Critical) to
// the policy's; Negligible counts as low, anything else not listed as unknown.
func severity(s string) policy.Severity {
	switch strings.ToLower(s) {
	case "negligible", "low":
		return policy.SeverityLow
	case "medium":
		return policy.SeverityMedium
	case "high":
		return policy.SeverityHigh
	case "critical":
		return policy.SeverityCritical
	}
	return policy.SeverityUnknown
}

// scanReport turns the report into findings: one per (package, vulnerability) pair Clair
// matched, in a stable order.
func (vr *vulnerabilityReport) scanReport(now time.Time) *policy.ScanReport {
	r := &policy.ScanReport{Source: policy.SourceScanner, Scanner: "Clair", ScanTime: now}
	for pid, vids := range vr.PackageVulnerabilities {
		p := vr.Packages[pid]
		for _, vid := range vids {
			v, ok := vr.Vulnerabilities[vid]
			if !ok {
				continue
			}
			name := p.Name
			if name == "" && v.Package != nil {
				name = v.Package.Name
			}
			r.Findings = append(r.Findings, policy.Finding{
				ID:               v.Name,
				Severity:         severity(v.NormalizedSeverity),
				Package:          name,
				InstalledVersion: p.Version,
				FixedVersion:     v.FixedInVersion,
			})
		}
	}
	sort.Slice(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Package < b.Package
	})
	return r
}
