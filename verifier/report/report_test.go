package report

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/policy"
)

// scanFindings are the findings of the scan all testdata/*-image.* fixtures
// describe, in the order Trivy lists them.
var scanFindings = []policy.Finding{
	{ID: "CVE-2023-6129", Severity: policy.SeverityMedium, Package: "libcrypto3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r3"},
	{ID: "CVE-2024-0727", Severity: policy.SeverityMedium, Package: "libcrypto3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r5"},
	{ID: "CVE-2024-0727", Severity: policy.SeverityMedium, Package: "libssl3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r5"},
	{ID: "CVE-2024-58251", Severity: policy.SeverityLow, Package: "busybox", InstalledVersion: "1.36.1-r15"},
	{ID: "CVE-2024-45337", Severity: policy.SeverityCritical, Package: "golang.org/x/crypto", InstalledVersion: "v0.21.0", FixedVersion: "0.31.0"},
	{ID: "CVE-2024-24790", Severity: policy.SeverityCritical, Package: "stdlib", InstalledVersion: "v1.22.3", FixedVersion: "1.21.11, 1.22.4"},
}

var grypeSARIFFindings = []policy.Finding{
	{ID: "CVE-2024-0727", Severity: policy.SeverityMedium, Package: "libcrypto3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r5"},
	{ID: "GHSA-v778-237x-gjrc", Severity: policy.SeverityCritical, Package: "golang.org/x/crypto", InstalledVersion: "v0.21.0", FixedVersion: "0.31.0"},
	{ID: "CVE-2024-58251", Severity: policy.SeverityLow, Package: "busybox", InstalledVersion: "1.36.1-r15"},
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

var cmpReport = cmpopts.EquateEmpty()

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		parse func([]byte) (*policy.ScanReport, error)
		want  *policy.ScanReport
	}{
		{
			name:  "trivy json",
			file:  "trivy-image.json",
			parse: ParseTrivy,
			want: &policy.ScanReport{
				Scanner: "Trivy", ScannerVersion: "0.70.0",
				ScanTime: at("2026-04-27T16:51:30.518797138Z"),
				Findings: scanFindings,
			},
		},
		{
			name:  "trivy sarif says what trivy json says",
			file:  "trivy-image.sarif.json",
			parse: ParseSARIF,
			want:  &policy.ScanReport{Scanner: "Trivy", ScannerVersion: "0.70.0", Findings: scanFindings},
		},
		{
			name:  "grype sarif",
			file:  "grype-image.sarif.json",
			parse: ParseSARIF,
			want:  &policy.ScanReport{Scanner: "grype", ScannerVersion: "0.87.0", Findings: grypeSARIFFindings},
		},
		{
			name:  "trivy cyclonedx 1.6 says what trivy json says",
			file:  "trivy-image.cdx.json",
			parse: ParseCycloneDX,
			want: &policy.ScanReport{
				Scanner: "trivy", ScannerVersion: "0.70.0",
				ScanTime: at("2026-04-27T16:51:30Z"),
				Findings: scanFindings,
			},
		},
		{
			name:  "grype cyclonedx 1.4 with vex analysis",
			file:  "grype-vex.cdx.json",
			parse: ParseCycloneDX,
			want: &policy.ScanReport{
				Scanner: "grype", ScannerVersion: "0.74.7",
				ScanTime: at("2026-03-02T08:15:00Z"),
				Findings: []policy.Finding{
					{ID: "CVE-2021-44228", Severity: policy.SeverityCritical, Package: "org.apache.logging.log4j:log4j-core", InstalledVersion: "2.14.1"},
					{ID: "CVE-2023-45853", Severity: policy.SeverityCritical, Package: "zlib", InstalledVersion: "1.2.13-r0", FixedVersion: "1.3.1-r0"},
					{ID: "CVE-2018-25032", Severity: policy.SeverityHigh, Package: "zlib", InstalledVersion: "1.2.11-r3"},
				},
				VEX: []policy.VEXStatement{{
					IDs:      []string{"CVE-2021-44228"},
					Packages: []policy.VEXPackage{{Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1"}},
					Status:   "not_affected", Note: "not_affected (code_not_reachable): JndiLookup.class removed from the jar at build time",
					Time: at("2026-03-02T08:15:00Z"),
				}},
			},
		},
		{
			name:  "harbor report from harbor-scanner-trivy",
			file:  "harbor-report.json",
			parse: ParseHarbor,
			want: &policy.ScanReport{
				Source:  policy.SourceScanner,
				Scanner: "Trivy", ScannerVersion: "v0.70.0",
				ScanTime: at("2026-04-27T16:52:03.117526874Z"),
				Findings: []policy.Finding{scanFindings[1], scanFindings[3], scanFindings[5]},
			},
		},
		{
			name:  "cosign vuln predicate holding trivy json",
			file:  "cosign-vuln-trivy.json",
			parse: ParseCosignVuln,
			want: &policy.ScanReport{
				Source:  policy.SourceAttestation,
				Scanner: "Trivy", ScannerVersion: "0.70.0",
				DBTime:   at("2026-04-27T12:00:00Z"),
				ScanTime: at("2026-04-27T16:51:31Z"),
				Findings: scanFindings,
			},
		},
		{
			name:  "cosign vuln statement holding grype sarif",
			file:  "cosign-vuln-grype-statement.json",
			parse: ParseCosignVuln,
			want: &policy.ScanReport{
				Source:  policy.SourceAttestation,
				Scanner: "grype", ScannerVersion: "0.87.0",
				DBTime:   at("2026-04-26T01:31:41Z"),
				ScanTime: at("2026-04-27T06:00:42Z"),
				Findings: grypeSARIFFindings,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(readFile(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpReport); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		file        string
		wantScanner string
		wantN       int
	}{
		{"trivy-image.json", "Trivy", 6},
		{"trivy-image.sarif.json", "Trivy", 6},
		{"grype-image.sarif.json", "grype", 3},
		{"trivy-image.cdx.json", "trivy", 6},
		{"grype-vex.cdx.json", "grype", 3},
		{"harbor-report.json", "Trivy", 3},
		{"cosign-vuln-trivy.json", "Trivy", 6},
		{"cosign-vuln-grype-statement.json", "grype", 3},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Detect(readFile(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != policy.SourceCI || got.Scanner != tt.wantScanner || len(got.Findings) != tt.wantN {
				t.Errorf("Detect = source %q scanner %q %d findings, want ci %q %d",
					got.Source, got.Scanner, len(got.Findings), tt.wantScanner, tt.wantN)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		parse func([]byte) (*policy.ScanReport, error)
		in    string
		want  error
		msg   string
	}{
		{"trivy not json", ParseTrivy, `{"SchemaVersion":`, ErrMalformed, "trivy"},
		{"trivy wrong type", ParseTrivy, `{"SchemaVersion":2,"Results":{}}`, ErrMalformed, "trivy"},
		{"trivy schema 1", ParseTrivy, `{"SchemaVersion":1,"Results":[]}`, ErrUnsupported, "SchemaVersion 1"},
		{"trivy legacy array", ParseTrivy, `[{"Target":"x","Vulnerabilities":null}]`, ErrMalformed, "trivy"},
		{"sarif 2.0", ParseSARIF, `{"version":"2.0.0","runs":[]}`, ErrUnsupported, "2.1.0"},
		{"sarif results not a list", ParseSARIF, `{"version":"2.1.0","runs":[{"results":7}]}`, ErrMalformed, "sarif"},
		{"cyclonedx 1.3", ParseCycloneDX, `{"bomFormat":"CycloneDX","specVersion":"1.3"}`, ErrUnsupported, "1.3"},
		{"cyclonedx spdx", ParseCycloneDX, `{"spdxVersion":"SPDX-2.3"}`, ErrUnsupported, "bomFormat"},
		{"cyclonedx bad tools", ParseCycloneDX, `{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"tools":{"components":3}}}`, ErrMalformed, "cyclonedx"},
		{"harbor empty object", ParseHarbor, `{}`, ErrUnsupported, "not a Harbor"},
		{"harbor severity number", ParseHarbor, `{"generated_at":"x","vulnerabilities":[{"severity":3}]}`, ErrMalformed, "harbor"},
		{"cosign no result", ParseCosignVuln, `{"scanner":{"uri":"x"},"metadata":{}}`, ErrMalformed, "no scanner.result"},
		{"cosign other predicate type", ParseCosignVuln, `{"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`, ErrUnsupported, "predicateType"},
		{"cosign result is openvex", ParseCosignVuln, `{"scanner":{"result":{"@context":"https://openvex.dev/ns/v0.2.0"}},"metadata":{}}`, ErrUnsupported, "OpenVEX"},
		{"cosign result unknown", ParseCosignVuln, `{"scanner":{"result":{"x":1}},"metadata":{}}`, ErrUnsupported, "not a Trivy"},
		{"detect array", Detect, `[1,2]`, ErrUnsupported, "array"},
		{"detect garbage", Detect, `{"a":`, ErrMalformed, "json"},
		{"detect openvex", Detect, `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[]}`, ErrUnsupported, "OpenVEX"},
		{"detect unknown", Detect, `{"hello":"world"}`, ErrUnsupported, "not a Trivy"},
		{"detect empty", Detect, ``, ErrMalformed, "json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse([]byte(tt.in))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if got != nil {
				t.Errorf("report = %+v, want nil", got)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		big := make([]byte, MaxSize+1)
		for name, parse := range map[string]func([]byte) (*policy.ScanReport, error){
			"trivy": ParseTrivy, "sarif": ParseSARIF, "cyclonedx": ParseCycloneDX,
			"harbor": ParseHarbor, "cosign": ParseCosignVuln, "detect": Detect,
		} {
			if _, err := parse(big); !errors.Is(err, ErrTooLarge) {
				t.Errorf("%s: err = %v, want ErrTooLarge", name, err)
			}
		}
		if _, err := ParseOpenVEX(big); !errors.Is(err, ErrTooLarge) {
			t.Errorf("openvex: err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("findings", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`{"SchemaVersion":2,"Results":[{"Target":"x","Vulnerabilities":[`)
		for i := range MaxFindings + 1 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"VulnerabilityID":"CVE-%d","PkgName":"p"}`, i)
		}
		b.WriteString(`]}]}`)
		if _, err := ParseTrivy([]byte(b.String())); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
	})
	t.Run("duplicates do not count", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`{"SchemaVersion":2,"Results":[{"Target":"x","Vulnerabilities":[`)
		for i := range MaxFindings + 1 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"VulnerabilityID":"CVE-1","PkgName":"p","Severity":"HIGH"}`)
		}
		b.WriteString(`]}]}`)
		rep, err := ParseTrivy([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) != 1 {
			t.Fatalf("%d findings, want 1", len(rep.Findings))
		}
	})
}
