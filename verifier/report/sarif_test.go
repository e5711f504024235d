package report

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/policy"
)

func TestSARIFFinding(t *testing.T) {
	// sarif wraps one rule and one result into a log.
	sarif := func(rule, result string) []byte {
		return []byte(`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x","rules":[` + rule + `]}},"results":[` + result + `]}]}`)
	}
	tests := []struct {
		name         string
		rule, result string
		want         []policy.Finding
	}{
		{
			name:   "severity label beats a disagreeing security-severity",
			rule:   `{"id":"CVE-1","properties":{"security-severity":"7.5","tags":["vulnerability","security","MEDIUM"]}}`,
			result: `{"ruleId":"CVE-1","ruleIndex":0,"message":{"text":"Package: openssl\nInstalled Version: 1\nVulnerability CVE-1\nSeverity: MEDIUM\nFixed Version: 2"}}`,
			want:   []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityMedium, Package: "openssl", InstalledVersion: "1", FixedVersion: "2"}},
		},
		{
			name:   "tag when the text has no severity",
			rule:   `{"id":"CVE-1","properties":{"security-severity":"2.0","tags":["vulnerability","HIGH"]}}`,
			result: `{"ruleId":"CVE-1","message":{"text":"found"}}`,
			want:   []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityHigh}},
		},
		{
			name:   "security-severity number",
			rule:   `{"id":"CVE-1","properties":{"security-severity":9.0}}`,
			result: `{"ruleId":"CVE-1","message":{"text":"found"}}`,
			want:   []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityCritical}},
		},
		{
			name:   "security-severity bands",
			rule:   `{"id":"a","properties":{"security-severity":"6.9"}},{"id":"b","properties":{"security-severity":"0.1"}},{"id":"c","properties":{"security-severity":"0.0"}},{"id":"d","properties":{"security-severity":"7"}}`,
			result: `{"ruleId":"a","message":{}},{"ruleId":"b","message":{}},{"ruleId":"c","message":{}},{"ruleId":"d","message":{}}`,
			want: []policy.Finding{
				{ID: "a", Severity: policy.SeverityMedium}, {ID: "b", Severity: policy.SeverityLow},
				{ID: "c", Severity: policy.SeverityUnknown}, {ID: "d", Severity: policy.SeverityHigh},
			},
		},
		{
			name:   "result property overrides the rule",
			rule:   `{"id":"CVE-1","properties":{"security-severity":"9.8"}}`,
			result: `{"ruleId":"CVE-1","message":{"text":"x"},"properties":{"security-severity":"4.0","packageName":"zlib","installedVersion":"1.2","fixedVersion":"1.3"}}`,
			want:   []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityMedium, Package: "zlib", InstalledVersion: "1.2", FixedVersion: "1.3"}},
		},
		{
			name:   "level when nothing else says",
			rule:   `{"id":"a","defaultConfiguration":{"level":"error"}},{"id":"b"}`,
			result: `{"ruleId":"a","message":{}},{"ruleId":"b","level":"note","message":{}},{"ruleId":"c","message":{}}`,
			want:   []policy.Finding{{ID: "a", Severity: policy.SeverityHigh}, {ID: "b", Severity: policy.SeverityLow}, {ID: "c", Severity: policy.SeverityUnknown}},
		},
		{
			name:   "ruleIndex pointing at another rule falls back to the id",
			rule:   `{"id":"CVE-1","properties":{"tags":["LOW"]}},{"id":"CVE-2","properties":{"tags":["CRITICAL"]}}`,
			result: `{"ruleId":"CVE-2","ruleIndex":0,"message":{}},{"ruleId":"CVE-1","ruleIndex":99,"message":{}}`,
			want:   []policy.Finding{{ID: "CVE-2", Severity: policy.SeverityCritical}, {ID: "CVE-1", Severity: policy.SeverityLow}},
		},
		{
			name:   "trivy misconfigurations and secrets are skipped",
			rule:   `{"id":"DS002","properties":{"tags":["misconfiguration","security","HIGH"]}},{"id":"aws-access-key-id","properties":{"tags":["secret","security","CRITICAL"]}}`,
			result: `{"ruleId":"DS002","message":{}},{"ruleId":"aws-access-key-id","message":{}}`,
		},
		{
			name:   "markdown table lines are not fields",
			rule:   `{"id":"CVE-1"}`,
			result: `{"ruleId":"CVE-1","message":{"text":"|HIGH|pkg|1.0|[CVE-1](https://x)|\nSeverity: low"}}`,
			want:   []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityLow}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := ParseSARIF(sarif(tt.rule, tt.result))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rep.Findings, cmpReport); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSARIFInvocationTime(t *testing.T) {
	rep, err := ParseSARIF([]byte(`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t","semanticVersion":"1.2.3"}},
		"invocations":[{"startTimeUtc":"2026-01-02T03:04:05Z","endTimeUtc":"2026-01-02T03:05:00Z"}],"results":[]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &policy.ScanReport{Scanner: "t", ScannerVersion: "1.2.3", ScanTime: at("2026-01-02T03:05:00Z")}
	if diff := cmp.Diff(want, rep, cmpReport); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}
