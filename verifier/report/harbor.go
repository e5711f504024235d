package report

import (
	"encoding/json"

	"github.com/portcullis/portcullis/policy"
)

// HarborReportMIMEType is the media type of the Harbor vulnerability report
// (Pluggable Scanner API v1.1 and later); ParseHarbor also reads the older
// "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0",
// whose body has the same shape.
const HarborReportMIMEType = "application/vnd.security.vulnerability.report; version=1.1"

// harborReport is the HarborVulnerabilityReport schema of the Pluggable
// Scanner API (scanner-adapter-openapi-v1.2.yaml).
type harborReport struct {
	GeneratedAt *string `json:"generated_at"`
	Scanner     *struct {
		Name    string `json:"name"`
		Vendor  string `json:"vendor"`
		Version string `json:"version"`
	} `json:"scanner"`
	Vulnerabilities []struct {
		ID         string `json:"id"`
		Package    string `json:"package"`
		Version    string `json:"version"`
		FixVersion string `json:"fix_version"`
		Severity   string `json:"severity"`
	} `json:"vulnerabilities"`
}

// ParseHarbor reads a Harbor vulnerability report, as a scanner adapter's GET
// /api/v1/scan/{id}/report returns it: generated_at is ScanTime, scanner names
// the tool, and each vulnerabilities[] entry (id, package, version,
// fix_version, severity Unknown|Negligible|Low|Medium|High|Critical) is a
// finding. Source is policy.SourceScanner. The report carries no database time; the
// adapter's metadata does (see package harbor).
func ParseHarbor(b []byte) (*policy.ScanReport, error) {
	const format = "harbor"
	if err := checkSize(format, b); err != nil {
		return nil, err
	}
	var r harborReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, malformed(format, err)
	}
	if r.GeneratedAt == nil && r.Scanner == nil {
		return nil, unsupportedf("harbor: neither generated_at nor scanner: not a Harbor vulnerability report")
	}
	rep := &policy.ScanReport{Source: policy.SourceScanner}
	if r.GeneratedAt != nil {
		rep.ScanTime = parseTime(*r.GeneratedAt)
	}
	if r.Scanner != nil {
		rep.Scanner, rep.ScannerVersion = r.Scanner.Name, r.Scanner.Version
	}
	c := newCollector(format)
	for _, v := range r.Vulnerabilities {
		if err := c.add(policy.Finding{
			ID:               v.ID,
			Severity:         severity(v.Severity),
			Package:          v.Package,
			InstalledVersion: v.Version,
			FixedVersion:     v.FixVersion,
		}); err != nil {
			return nil, err
		}
	}
	rep.Findings = c.findings
	return rep, nil
}
