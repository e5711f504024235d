package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// ignoreChecks compares Decisions on what they said before Checks: TestEvaluateChecks covers Checks, and
// checksAgree holds them to Failures in every other test.
var ignoreChecks = cmpopts.IgnoreFields(Decision{}, "Checks")

// checksAgree fails unless d's Checks say what its Failures say: the failed checks' details, in order, are the
// failures, and a decision failed exactly when a check did.
func checksAgree(t testing.TB, d Decision) {
	t.Helper()
	var failed []string
	for _, c := range d.Checks {
		if c.Requirement == "" {
			t.Fatalf("check without a requirement: %+v", c)
		}
		if !c.Passed {
			failed = append(failed, c.Detail)
		}
	}
	if got, want := strings.Join(failed, "; "), strings.Join(d.Failures, "; "); got != want {
		t.Fatalf("failed checks say %q, failures %q", got, want)
	}
}

func TestEvaluateChecks(t *testing.T) {
	p := mustParse(t, evalDoc+`
  - name: nothing
    match: {repository: nothing}
  - name: scanned
    match: {repository: scanned}
    scan:
      maxSeverity: medium
      ignoreUnfixed: true
      maxAge: 7d
      sources: [ci]
      allow:
        - {id: CVE-3, until: 2026-12-31, reason: "not reachable"}
`)
	noSig := SignatureResult{Reason: "no signatures found"}
	rep := report(SourceCI, time.Hour,
		finding("CVE-1", SeverityCritical, "openssl", "3.0.2"),
		finding("CVE-1", SeverityCritical, "openssl", "3.0.2"), // reported twice: counted once
		finding("CVE-2", SeverityHigh, "zlib", "1.3"),
		finding("CVE-3", SeverityHigh, "curl", "8.1"),
		finding("CVE-4", SeverityHigh, "bash", ""),
		finding("CVE-5", SeverityLow, "tar", ""),
	)
	rep.VEX = []VEXStatement{{IDs: []string{"CVE-2"}, Status: VEXNotAffected, Note: "not in the image's path", Time: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}}
	summary := *rep
	summary.Findings, summary.VEX = nil, nil
	tests := []struct {
		name  string
		repo  string
		facts Facts
		want  []Check
	}{
		{
			name:  "one root of two verified",
			repo:  "any-two",
			facts: Facts{Signatures: map[string]SignatureResult{"release": noSig, "github-ci": {Verified: true, Format: "bundle"}}},
			want: []Check{{Requirement: "signature", Passed: true, Detail: "signed by github-ci", Signatures: []RootSignature{
				{Root: "release", SignatureResult: noSig},
				{Root: "github-ci", SignatureResult: SignatureResult{Verified: true, Format: "bundle"}},
			}}},
		},
		{
			name:  "allOf, one root not checked",
			repo:  "all",
			facts: Facts{Signatures: map[string]SignatureResult{"release": {Verified: true, Format: "cosign-tag"}}},
			want: []Check{{Requirement: "signature", Detail: "not signed by ci (not checked)", Signatures: []RootSignature{
				{Root: "release", SignatureResult: SignatureResult{Verified: true, Format: "cosign-tag"}},
				{Root: "ci", SignatureResult: SignatureResult{Reason: "not checked"}},
			}}},
		},
		{
			name:  "signature and attestation each their own check",
			repo:  "provenance",
			facts: Facts{Signatures: verified("release")},
			want: []Check{
				{Requirement: "signature", Passed: true, Detail: "signed by release", Signatures: []RootSignature{
					{Root: "release", SignatureResult: SignatureResult{Verified: true, Format: "bundle"}}}},
				{Requirement: "attestation " + slsa, Detail: "attestation " + slsa + " missing"},
			},
		},
		{
			name: "attestation passing",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), Attestations: []Attestation{
				{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(goodProvenance)}}},
			want: []Check{
				{Requirement: "signature", Passed: true, Detail: "signed by release", Signatures: []RootSignature{
					{Root: "release", SignatureResult: SignatureResult{Verified: true, Format: "bundle"}}}},
				{Requirement: "attestation " + slsa, Passed: true, Detail: "attestation " + slsa + " signed by github-ci"},
			},
		},
		{
			name:  "scan gate: counts, counted findings and every kind of waiver",
			repo:  "scanned",
			facts: Facts{Scan: rep},
			want: []Check{{Requirement: "scan", Detail: "scan: 1 critical above medium (CVE-1 openssl (fixed in 3.0.2))", Scan: &ScanCheck{
				MaxSeverity: SeverityMedium, MaxAge: 7 * 24 * time.Hour, Report: &summary,
				BySeverity: map[Severity]int{SeverityCritical: 1, SeverityHigh: 3, SeverityLow: 1},
				Counted:    []Finding{finding("CVE-1", SeverityCritical, "openssl", "3.0.2")},
				Waived: []Waiver{
					{Finding: finding("CVE-2", SeverityHigh, "zlib", "1.3"), By: "vex", Detail: "not_affected (2026-05-01T00:00:00Z): not in the image's path"},
					{Finding: finding("CVE-3", SeverityHigh, "curl", "8.1"), By: "allowlist", Detail: "allowlist entry CVE-3 until 2026-12-31: not reachable"},
					{Finding: finding("CVE-4", SeverityHigh, "bash", ""), By: "unfixed", Detail: "no fixed version (ignoreUnfixed)"},
				},
			}}},
		},
		{
			name:  "scan gate without a report",
			repo:  "scanned",
			facts: Facts{ScanError: "scanner timed out"},
			want: []Check{{Requirement: "scan", Detail: "scan: no scan report (scanner timed out)",
				Scan: &ScanCheck{MaxSeverity: SeverityMedium, MaxAge: 7 * 24 * time.Hour}}},
		},
		{
			name: "a rule that requires nothing has no checks",
			repo: "nothing",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.facts.Now, tt.facts.Image = testNow, testImage
			d := p.Match("ghcr.io", tt.repo).Evaluate(tt.facts)
			checksAgree(t, d)
			if diff := cmp.Diff(tt.want, d.Checks, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Checks (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("the report the check names is not the facts' report", func(t *testing.T) {
		d := p.Match("ghcr.io", "scanned").Evaluate(Facts{Now: testNow, Image: testImage, Scan: rep})
		if len(rep.Findings) != 6 || len(rep.VEX) != 1 || d.Checks[0].Scan.Report == rep {
			t.Errorf("Evaluate changed or shared the facts' report")
		}
	})
}

func TestChecksWithoutARule(t *testing.T) {
	p := mustParse(t, "rules:\n  - {name: apps, match: {repository: \"apps/**\"}}\n")
	d := p.Match("ghcr.io", "other").Evaluate(Facts{Now: testNow, Image: testImage})
	want := []Check{{Requirement: "rule", Detail: "no rule matches this repository and the policy has no default: section"}}
	if diff := cmp.Diff(want, d.Checks); diff != "" {
		t.Errorf("Checks (-want +got):\n%s", diff)
	}
	checksAgree(t, d)
}

func TestErrorDecisionChecks(t *testing.T) {
	p := mustParse(t, evalDoc)
	err := errors.New("fetch signatures: connection refused")
	for _, tt := range []struct{ repo, detail string }{
		{"any", "could not decide: fetch signatures: connection refused"},
		{"fail-open", "could not decide: fetch signatures: connection refused; admitted despite the error (onError: allow)"},
	} {
		t.Run(tt.repo, func(t *testing.T) {
			d := p.Match("ghcr.io", tt.repo).ErrorDecision(testImage, err)
			want := []Check{{Requirement: "evidence", Detail: tt.detail}}
			if diff := cmp.Diff(want, d.Checks); diff != "" {
				t.Errorf("Checks (-want +got):\n%s", diff)
			}
		})
	}
}
