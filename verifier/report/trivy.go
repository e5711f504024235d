package report

import (
	"encoding/json"

	"github.com/portcullis/portcullis/policy"
)

// trivyReport is the part of Trivy's JSON report (`trivy image -f json`,
// SchemaVersion 2) this package reads.
type trivyReport struct {
	SchemaVersion int    `json:"SchemaVersion"`
	CreatedAt     string `json:"CreatedAt"`
	Trivy         *struct {
		Version string `json:"Version"`
	} `json:"Trivy"`
	ArtifactName string `json:"ArtifactName"`
	Results      []struct {
		Target          string `json:"Target"`
		Vulnerabilities []struct {
			VulnerabilityID  string `json:"VulnerabilityID"`
			PkgName          string `json:"PkgName"`
			InstalledVersion string `json:"InstalledVersion"`
			FixedVersion     string `json:"FixedVersion"`
			Severity         string `json:"Severity"`
		} `json:"Vulnerabilities"`
	} `json:"Results"`
}

// ParseTrivy reads Trivy's JSON report (`trivy image -f json`, SchemaVersion
// 2): every Results[].Vulnerabilities[] entry becomes a finding. ScanTime is
// CreatedAt (Trivy 0.46 and later), ScannerVersion is Trivy.Version (0.67 and
// later); Trivy's JSON carries no database time, so DBTime stays zero. Source is
// left empty for the caller to set.
func ParseTrivy(b []byte) (*policy.ScanReport, error) {
	const format = "trivy"
	if err := checkSize(format, b); err != nil {
		return nil, err
	}
	var r trivyReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, malformed(format, err)
	}
	if r.SchemaVersion != 2 {
		return nil, unsupportedf("trivy: SchemaVersion %d, want 2", r.SchemaVersion)
	}
	c := newCollector(format)
	for _, res := range r.Results {
		for _, v := range res.Vulnerabilities {
			if err := c.add(policy.Finding{
				ID:               v.VulnerabilityID,
				Severity:         severity(v.Severity),
				Package:          v.PkgName,
				InstalledVersion: v.InstalledVersion,
				FixedVersion:     v.FixedVersion,
			}); err != nil {
				return nil, err
			}
		}
	}
	rep := &policy.ScanReport{
		Scanner:  "Trivy",
		ScanTime: parseTime(r.CreatedAt),
		Findings: c.findings,
	}
	if r.Trivy != nil {
		rep.ScannerVersion = r.Trivy.Version
	}
	return rep, nil
}
