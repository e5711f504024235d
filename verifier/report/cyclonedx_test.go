package report

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/policy"
)

func TestCycloneDXFindings(t *testing.T) {
	bom := func(components, vulns string) []byte {
		return []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","components":[` + components + `],"vulnerabilities":[` + vulns + `]}`)
	}
	tests := []struct {
		name         string
		comps, vulns string
		want         []policy.Finding
		vex          []policy.VEXStatement
	}{
		{
			name:  "rating of the vulnerability's own source wins",
			vulns: `{"id":"CVE-1","source":{"name":"debian"},"ratings":[{"source":{"name":"nvd"},"severity":"critical"},{"source":{"name":"debian"},"severity":"low"}]}`,
			want:  []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityLow}},
		},
		{
			name:  "nvd next",
			vulns: `{"id":"CVE-1","source":{"name":"alpine"},"ratings":[{"source":{"name":"ghsa"},"severity":"critical"},{"source":{"name":"nvd"},"severity":"medium"}]}`,
			want:  []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityMedium}},
		},
		{
			name:  "else the highest, by label or score",
			vulns: `{"id":"CVE-1","ratings":[{"severity":"low"},{"score":7.2},{"severity":"none"},{}]}`,
			want:  []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityHigh}},
		},
		{
			name:  "no ratings",
			vulns: `{"id":"CVE-1"}`,
			want:  []policy.Finding{{ID: "CVE-1", Severity: policy.SeverityUnknown}},
		},
		{
			name:  "nested component, maven group, one finding per affected ref",
			comps: `{"bom-ref":"app","name":"app","components":[{"bom-ref":"c1","group":"org.yaml","name":"snakeyaml","version":"1.33","purl":"pkg:maven/org.yaml/snakeyaml@1.33"}]},{"bom-ref":"c2","name":"","purl":"pkg:npm/%40babel/traverse@7.22.0"}`,
			vulns: `{"id":"CVE-2","ratings":[{"severity":"high"}],"recommendation":"Upgrade snakeyaml to version 2.0.","affects":[{"ref":"c1"},{"ref":"c2"},{"ref":"missing-ref"}]}`,
			want: []policy.Finding{
				{ID: "CVE-2", Severity: policy.SeverityHigh, Package: "org.yaml:snakeyaml", InstalledVersion: "1.33", FixedVersion: "2.0"},
				{ID: "CVE-2", Severity: policy.SeverityHigh, Package: "@babel/traverse", InstalledVersion: "7.22.0", FixedVersion: "2.0"},
				{ID: "CVE-2", Severity: policy.SeverityHigh, Package: "missing-ref", FixedVersion: "2.0"},
			},
		},
		{
			name: "analysis states become VEX statuses, dated",
			vulns: `{"id":"CVE-3","analysis":{"state":"resolved","lastUpdated":"2026-01-02T00:00:00Z"}},` +
				`{"id":"CVE-4","analysis":{"state":"false_positive","detail":"wrong cpe","firstIssued":"2026-01-01T00:00:00Z"}},` +
				`{"id":"CVE-5","analysis":{"state":"exploitable"}},{"id":"CVE-6","analysis":{"state":"in_triage"}},{"id":"CVE-7","analysis":{"state":"what"}}`,
			want: []policy.Finding{{ID: "CVE-3", Severity: policy.SeverityUnknown}, {ID: "CVE-4", Severity: policy.SeverityUnknown}, {ID: "CVE-5", Severity: policy.SeverityUnknown},
				{ID: "CVE-6", Severity: policy.SeverityUnknown}, {ID: "CVE-7", Severity: policy.SeverityUnknown}},
			vex: []policy.VEXStatement{
				{IDs: []string{"CVE-3"}, Status: "fixed", Note: "resolved", Time: at("2026-01-02T00:00:00Z")},
				{IDs: []string{"CVE-4"}, Status: "not_affected", Note: "false_positive: wrong cpe", Time: at("2026-01-01T00:00:00Z")},
				{IDs: []string{"CVE-5"}, Status: "affected", Note: "exploitable"},
				{IDs: []string{"CVE-6"}, Status: "under_investigation", Note: "in_triage"},
			},
		},
		{
			name:  "an analysis covers the packages its vulnerability affects, not the whole image",
			comps: `{"bom-ref":"c1","name":"openssl","version":"3.1.4-r0"},{"bom-ref":"c2","name":"libssl3","version":"3.1.4-r0"}`,
			vulns: `{"id":"CVE-8","analysis":{"state":"not_affected","justification":"code_not_reachable"},"affects":[{"ref":"c1"},{"ref":"c2"},{"ref":"c1"}]}`,
			want: []policy.Finding{{ID: "CVE-8", Severity: policy.SeverityUnknown, Package: "openssl", InstalledVersion: "3.1.4-r0"},
				{ID: "CVE-8", Severity: policy.SeverityUnknown, Package: "libssl3", InstalledVersion: "3.1.4-r0"}},
			vex: []policy.VEXStatement{{IDs: []string{"CVE-8"}, Status: "not_affected", Note: "not_affected (code_not_reachable)",
				Packages: []policy.VEXPackage{{Name: "openssl", Version: "3.1.4-r0"}, {Name: "libssl3", Version: "3.1.4-r0"}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := ParseCycloneDX(bom(tt.comps, tt.vulns))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rep.Findings, cmpReport); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.vex, rep.VEX, cmpReport); diff != "" {
				t.Errorf("VEX (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePURL(t *testing.T) {
	tests := []struct {
		in     string
		want   purl
		wantOK bool
		name   string
	}{
		{"pkg:apk/alpine/libssl3@3.1.4-r2?arch=x86_64&distro=3.19.1", purl{"apk", "alpine", "libssl3", "3.1.4-r2"}, true, "libssl3"},
		{"pkg:maven/org.yaml/snakeyaml@1.33", purl{"maven", "org.yaml", "snakeyaml", "1.33"}, true, "org.yaml:snakeyaml"},
		{"pkg:npm/%40babel/core@7.0.0", purl{"npm", "@babel", "core", "7.0.0"}, true, "@babel/core"},
		{"pkg:golang/golang.org/x/net@v0.23.0", purl{"golang", "golang.org/x", "net", "v0.23.0"}, true, "golang.org/x/net"},
		{"pkg:oci/app@sha256%3Aabc?repository_url=ghcr.io%2Fa", purl{"oci", "", "app", "sha256:abc"}, true, "app"},
		{"pkg:generic/name", purl{"generic", "", "name", ""}, true, "name"},
		{"pkg:nope", purl{}, false, ""},
		{"not-a-purl", purl{}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parsePURL(tt.in)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("parsePURL = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
			if ok && got.fullName() != tt.name {
				t.Errorf("fullName = %q, want %q", got.fullName(), tt.name)
			}
		})
	}
}

func TestHarborSeverities(t *testing.T) {
	rep, err := ParseHarbor([]byte(`{"generated_at":"2026-01-01T00:00:00Z","scanner":{"name":"Clair","vendor":"CoreOS","version":"2.x"},
		"vulnerabilities":[{"id":"a","severity":"Negligible"},{"id":"b","severity":"Unknown"},{"id":"c","severity":"High"},{"id":"d","severity":"Defcon1"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Finding{{ID: "a", Severity: policy.SeverityLow}, {ID: "b", Severity: policy.SeverityUnknown}, {ID: "c", Severity: policy.SeverityHigh}, {ID: "d", Severity: policy.SeverityUnknown}}
	if diff := cmp.Diff(want, rep.Findings); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}
