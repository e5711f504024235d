package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/policy"
)

// TestPrintEvaluation: real evaluations of a compiled rule print each requirement with its evidence, cap long
// lists of findings, and keep the notes no requirement's line says; the JSON the admin API answers with prints the
// same words.
func TestPrintEvaluation(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	doc := "trust:\n  release: {key: k.pub}\n  ci: {key: k.pub}\n" +
		"rules:\n  - name: bare\n    match: {repository: bare}\n" +
		"default:\n  mode: warn\n  signedBy: {anyOf: [release, ci]}\n  scan:\n    maxSeverity: low\n    ignoreUnfixed: true\n    maxAge: 7d\n" +
		"    allow:\n      - {id: CVE-A, until: 2099-01-01, reason: not reachable}\n      - {id: CVE-B, until: 2020-01-01, reason: was fine}\n"
	pol, err := policy.Parse([]byte(doc), "policy.yaml", func(string) ([]byte, error) { return pub, nil })
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	facts := policy.Facts{Now: now, Image: "ghcr.io/acme/app@sha256:abc",
		Signatures: map[string]policy.SignatureResult{"release": {Verified: true, Format: "bundle"}, "ci": {Reason: "no signatures found"}},
		Scan: &policy.ScanReport{Source: policy.SourceScanner, Scanner: "Trivy", ScannerVersion: "0.58.1", ScanTime: now.Add(-time.Hour),
			Findings: []policy.Finding{
				{ID: "CVE-A", Severity: policy.SeverityHigh, Package: "zlib", InstalledVersion: "1.3", FixedVersion: "1.3.1"},
				{ID: "CVE-B", Severity: policy.SeverityHigh, Package: "zlib", InstalledVersion: "1.3", FixedVersion: "1.3.1"},
				{ID: "CVE-U", Severity: policy.SeverityCritical, Package: "curl", InstalledVersion: "8.0"},
				{ID: "CVE-L", Severity: policy.SeverityLow, Package: "curl", InstalledVersion: "8.0"},
			}}}
	for i := range 12 {
		facts.Scan.Findings = append(facts.Scan.Findings, policy.Finding{ID: fmt.Sprintf("CVE-%02d", i), Severity: policy.SeverityMedium,
			Package: "openssl", InstalledVersion: "3.0.1", FixedVersion: "3.0.2"})
	}
	def := pol.Default()
	bare := pol.Match("ghcr.io", "bare")
	tests := []struct {
		name    string
		e       admission.Evaluation
		verdict string
		want    []string
		not     []string
	}{
		{
			name: "signed, a failed scan gate, warn mode", e: admission.Evaluation{Decision: def.Evaluate(facts), Facts: facts},
			verdict: "ALLOWED (warn mode: would be denied)",
			want: []string{
				"  [pass] signature: signed by release\n",
				"         signature by release: verified (bundle)\n",
				"         signature by ci: not verified (no signatures found)\n",
				"  [FAIL] scan: 1 high, 12 medium above low (CVE-B zlib",
				"         report: scanner (Trivy 0.58.1), scanned 2026-06-01T11:00:00Z; max severity low, max age 7d\n",
				"         findings: 1 critical, 2 high, 12 medium, 1 low\n",
				"         counts: CVE-B (high) in zlib 1.3, fixed in 1.3.1\n",
				"         counts: and 3 more\n",
				"         waived: CVE-A (high) in zlib 1.3, fixed in 1.3.1, by allowlist: ",
				"         waived: CVE-U (critical) in curl 8.0, no fix, by unfixed: no fixed version (ignoreUnfixed)\n",
				"  note: allowlist entry CVE-B", // a failed requirement's line gives its failures only
			},
			not: []string{"note: signed by release"}, // the signature's line says it
		},
		{
			name: "evidence that could not be gathered", verdict: "ALLOWED (warn mode: would be denied)",
			e: admission.Evaluation{Decision: def.ErrorDecision(facts.Image, errors.New("upstream timed out")), Err: errors.New("upstream timed out"),
				Facts: policy.Facts{InvalidAttestations: []string{"attestation layer over 16 MiB"}}},
			want: []string{"  [FAIL] evidence: could not decide: upstream timed out\n", "  error: upstream timed out\n",
				"  invalid evidence: attestation layer over 16 MiB\n"},
		},
		{
			name: "a rule that requires nothing", e: admission.Evaluation{Decision: bare.Evaluate(facts)}, verdict: "ALLOWED",
			want: []string{"  (the rule requires nothing)\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := evaluationOf(&tc.e)
			if got := ev.verdict(); got != tc.verdict {
				t.Errorf("verdict %q, want %q", got, tc.verdict)
			}
			var out bytes.Buffer
			printEvaluation(&out, "  ", ev)
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
			// As the admin API answers it (the same field names), it prints the same.
			b, _ := json.Marshal(ev)
			var decoded evaluation
			if err := json.Unmarshal(b, &decoded); err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			printEvaluation(&again, "  ", decoded)
			if again.String() != out.String() {
				t.Errorf("decoded from JSON it prints\n%s\nnot\n%s", again.String(), out.String())
			}
		})
	}
}

// TestPrintEscapesControlCharacters: text the untrusted upstream wrote (an error body, a report's package name)
// reaches the operator's terminal escaped: no escape sequence, no bidirectional override, no line of its own.
func TestPrintEscapesControlCharacters(t *testing.T) {
	hostile := "MANIFEST_UNKNOWN\x1b]0;pwned\x07\x1b[2J\rALLOWED\n[pass] fake \u202egpj.exe"
	ev := evaluation{Rule: "r", Mode: "enforce", Failures: []string{"scan: " + hostile}, Requirements: []requirement{{
		Requirement: "scan", Detail: "scan: " + hostile,
		Scan: &scanEvidence{MaxSeverity: "low", Report: &scanReport{Source: "ci", Scanner: hostile},
			Counted: []finding{{ID: "CVE-1", Severity: "high", Package: hostile}}, CountedTotal: 1}}}}
	var out bytes.Buffer
	printPreview(&out, previewAnswer{NewlyDenied: []previewChange{{Image: "ghcr.io/a/b@sha256:1", Now: ev, Candidate: ev}},
		Errors: []struct {
			Image string `json:"image"`
			Tag   string `json:"tag"`
			Error string `json:"error"`
		}{{Image: "ghcr.io/a/b@sha256:2", Error: "fetch its manifest: " + hostile}}})
	printExplanation(&out, explainAnswer{Image: "ghcr.io/a/b@sha256:1", Message: hostile, Warnings: []string{hostile}, Evaluation: ev})
	got := out.String()
	if strings.ContainsAny(got, "\x1b\x07\r\u202e") {
		t.Errorf("a control character or override reached the output:\n%q", got)
	}
	for _, w := range []string{`MANIFEST_UNKNOWN\x1b]0;pwned\a\x1b[2J\rALLOWED\n[pass] fake \u202egpj.exe`} {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks the escaped text %s:\n%s", w, got)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "[pass] fake") || strings.HasPrefix(line, "ALLOWED") {
			t.Errorf("the upstream's text made a line of its own: %q", line)
		}
	}
}
