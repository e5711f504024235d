package report

import (
	"encoding/json"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

// TestSeverityNormalisedAtTheBoundary checks that every parser hands policy one of its Severity
// constants whatever the case or vendor word the scanner used, and unknown for anything else:
// policy compares typed values and never sees a raw label.
func TestSeverityNormalisedAtTheBoundary(t *testing.T) {
	// Each format with one finding whose severity label is the argument (a JSON string).
	formats := []struct {
		name  string
		parse func([]byte) (*policy.ScanReport, error)
		doc   func(label string) string
	}{
		{"trivy", ParseTrivy, func(l string) string {
			return `{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"VulnerabilityID":"CVE-1","Severity":` + l + `}]}]}`
		}},
		{"harbor", ParseHarbor, func(l string) string {
			return `{"generated_at":"2026-01-01T00:00:00Z","vulnerabilities":[{"id":"CVE-1","severity":` + l + `}]}`
		}},
		{"sarif", ParseSARIF, func(l string) string {
			return `{"version":"2.1.0","runs":[{"results":[{"ruleId":"CVE-1","properties":{"severity":` + l + `},"message":{"text":"x"}}]}]}`
		}},
		{"cyclonedx", ParseCycloneDX, func(l string) string {
			return `{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{"id":"CVE-1","ratings":[{"severity":` + l + `}]}]}`
		}},
	}
	tests := []struct {
		label string
		want  policy.Severity
	}{
		{"CRITICAL", policy.SeverityCritical}, // Trivy
		{"Critical", policy.SeverityCritical}, // Harbor
		{"critical", policy.SeverityCritical}, // CycloneDX
		{" High ", policy.SeverityHigh},
		{"important", policy.SeverityHigh}, // Red Hat
		{"MEDIUM", policy.SeverityMedium},
		{"Moderate", policy.SeverityMedium}, // Red Hat
		{"low", policy.SeverityLow},
		{"Negligible", policy.SeverityLow}, // Harbor, Debian
		{"info", policy.SeverityLow},
		{"none", policy.SeverityLow}, // a finding a scanner lists is never below low
		{"UNKNOWN", policy.SeverityUnknown},
		{"Unknown", policy.SeverityUnknown},
		{"", policy.SeverityUnknown},
		{"severe", policy.SeverityUnknown},
		{"crit", policy.SeverityUnknown},
		{"critical!", policy.SeverityUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			if got := severity(tt.label); got != tt.want {
				t.Errorf("severity(%q) = %q, want %q", tt.label, got, tt.want)
			}
			label, _ := json.Marshal(tt.label)
			for _, f := range formats {
				rep, err := f.parse([]byte(f.doc(string(label))))
				if err != nil {
					t.Fatalf("%s: %v", f.name, err)
				}
				if len(rep.Findings) != 1 || rep.Findings[0].Severity != tt.want {
					t.Errorf("%s: findings %+v, want one of severity %q", f.name, rep.Findings, tt.want)
				}
			}
		})
	}
}
