package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	testImage = "ghcr.io/acme/app@sha256:ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12"
	shortImg  = testImage // messages name the image in full
	slsa      = "https://slsa.dev/provenance/v1"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// evalDoc defines trust roots and one rule per requirement shape; rules are matched by
// repository name.
const evalDoc = `
trust:
  release: {key: keys/release.pub}
  ci: {key: keys/scanner.pub}
  github-ci:
    keyless: {trustedRoot: trusted_root.json, issuer: https://token.actions.githubusercontent.com, subjectRegExp: '^https://github.com/acme/'}
rules:
  - name: any
    match: {repository: any}
    signedBy: {anyOf: [release]}
  - name: any-two
    match: {repository: any-two}
    signedBy: {anyOf: [release, github-ci]}
  - name: all
    match: {repository: all}
    signedBy: {allOf: [release, ci]}
  - name: provenance
    match: {repository: provenance}
    signedBy: {anyOf: [release]}
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
        signedBy: {anyOf: [github-ci]}
        conditions:
          - {path: builder.id, equals: "https://github.com/acme/builder"}
          - {path: buildDefinition.externalParameters.workflow.ref, matches: '^refs/tags/v[0-9]'}
          - {path: 'materials[0].digest.level', in: ["1", "2"]}
  - name: inherit
    match: {repository: inherit}
    signedBy: {allOf: [release, ci]}
    attestations:
      - predicateType: https://spdx.dev/Document
  - name: warn
    match: {repository: warn}
    mode: warn
    signedBy: {anyOf: [release]}
  - name: audit
    match: {repository: audit}
    mode: audit
    signedBy: {anyOf: [release]}
  - name: fail-open
    match: {repository: fail-open}
    onError: allow
    signedBy: {anyOf: [release]}
`

var goodProvenance = `{
  "builder": {"id": "https://github.com/acme/builder"},
  "buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/tags/v1.2.3"}}},
  "materials": [{"digest": {"level": 2}}]
}`

func verified(roots ...string) map[string]SignatureResult {
	m := map[string]SignatureResult{}
	for _, r := range roots {
		m[r] = SignatureResult{Verified: true, Format: "bundle"}
	}
	return m
}

func TestEvaluate(t *testing.T) {
	p := mustParse(t, evalDoc)
	noSigs := map[string]SignatureResult{
		"release":   {Reason: "no signatures found"},
		"ci":        {Reason: "signature does not verify with key ci"},
		"github-ci": {Reason: "certificate subject does not match"},
	}
	tests := []struct {
		name    string
		repo    string
		facts   Facts
		want    Decision
		wantMsg string
	}{
		{
			name:    "anyOf one root verified",
			repo:    "any",
			facts:   Facts{Signatures: verified("release")},
			want:    Decision{Allowed: true, Mode: ModeEnforce, Rule: "any", Notes: []string{"signed by release"}},
			wantMsg: `portcullis: ` + shortImg + ` admitted by rule "any"`,
		},
		{
			name:    "anyOf one root not signed",
			repo:    "any",
			facts:   Facts{Signatures: noSigs},
			want:    Decision{Mode: ModeEnforce, Rule: "any", Failures: []string{"not signed by release (no signatures found)"}},
			wantMsg: `portcullis: ` + shortImg + ` denied by rule "any": not signed by release (no signatures found)`,
		},
		{
			name:  "root not checked",
			repo:  "any",
			facts: Facts{},
			want:  Decision{Mode: ModeEnforce, Rule: "any", Failures: []string{"not signed by release (not checked)"}},
		},
		{
			name:  "verification failed without a reason",
			repo:  "any",
			facts: Facts{Signatures: map[string]SignatureResult{"release": {}}},
			want:  Decision{Mode: ModeEnforce, Rule: "any", Failures: []string{"not signed by release (not verified)"}},
		},
		{
			name:  "anyOf second root verified",
			repo:  "any-two",
			facts: Facts{Signatures: map[string]SignatureResult{"release": noSigs["release"], "github-ci": {Verified: true}}},
			want:  Decision{Allowed: true, Mode: ModeEnforce, Rule: "any-two", Notes: []string{"signed by github-ci"}},
		},
		{
			name:  "anyOf none verified",
			repo:  "any-two",
			facts: Facts{Signatures: noSigs},
			want: Decision{Mode: ModeEnforce, Rule: "any-two", Failures: []string{
				"not signed by any of release, github-ci (release: no signatures found; github-ci: certificate subject does not match)",
			}},
		},
		{
			name:  "allOf all verified",
			repo:  "all",
			facts: Facts{Signatures: verified("release", "ci")},
			want:  Decision{Allowed: true, Mode: ModeEnforce, Rule: "all", Notes: []string{"signed by release, ci"}},
		},
		{
			name:  "allOf one missing",
			repo:  "all",
			facts: Facts{Signatures: map[string]SignatureResult{"release": {Verified: true}, "ci": noSigs["ci"]}},
			want: Decision{Mode: ModeEnforce, Rule: "all",
				Failures: []string{"not signed by ci (signature does not verify with key ci)"},
				Notes:    []string{"signed by release"}},
		},
		{
			name:  "allOf both missing",
			repo:  "all",
			facts: Facts{Signatures: noSigs},
			want: Decision{Mode: ModeEnforce, Rule: "all", Failures: []string{
				"not signed by release (no signatures found)",
				"not signed by ci (signature does not verify with key ci)",
			}},
		},
		{
			name: "attestation and conditions hold",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), Attestations: []Attestation{
				{PredicateType: "https://example.com/other", SignedBy: []string{"github-ci"}, Predicate: []byte(`{}`)},
				{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(goodProvenance)},
			}},
			want: Decision{Allowed: true, Mode: ModeEnforce, Rule: "provenance",
				Notes: []string{"signed by release", "attestation " + slsa + " signed by github-ci"}},
		},
		{
			name:  "attestation missing",
			repo:  "provenance",
			facts: Facts{Signatures: verified("release")},
			want: Decision{Mode: ModeEnforce, Rule: "provenance", Notes: []string{"signed by release"},
				Failures: []string{"attestation " + slsa + " missing"}},
			wantMsg: `portcullis: ` + shortImg + ` denied by rule "provenance": attestation https://slsa.dev/provenance/v1 missing`,
		},
		{
			name: "attestation missing, evidence refused",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), InvalidAttestations: []string{
				"attestation artifact sha256-ab12.att layer sha256:cd34 is 33554432 bytes, more than 16 MiB",
			}},
			want: Decision{Mode: ModeEnforce, Rule: "provenance", Notes: []string{"signed by release"},
				Failures: []string{"attestation " + slsa + " missing (invalid evidence: attestation artifact sha256-ab12.att layer sha256:cd34 is 33554432 bytes, more than 16 MiB)"}},
			wantMsg: `portcullis: ` + shortImg + ` denied by rule "provenance": attestation https://slsa.dev/provenance/v1 missing ` +
				`(invalid evidence: attestation artifact sha256-ab12.att layer sha256:cd34 is 33554432 bytes, more than 16 MiB)`,
		},
		{
			name: "attestation missing, several pieces of evidence refused",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), InvalidAttestations: []string{
				"attestations of this image need more than 64 MiB of evidence: attestation artifact sha256-ab12.att has 32 layers of 268435456 bytes in all",
				"attestation referrer sha256:ef56: bundle version too old",
				"attestation referrer sha256:0a1b: in-toto statement has no predicate type",
			}},
			want: Decision{Mode: ModeEnforce, Rule: "provenance", Notes: []string{"signed by release"},
				Failures: []string{"attestation " + slsa + " missing (invalid evidence: attestations of this image need more than 64 MiB of evidence: " +
					"attestation artifact sha256-ab12.att has 32 layers of 268435456 bytes in all; and 2 more)"}},
		},
		{
			name: "attestation verified beside refused evidence",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), InvalidAttestations: []string{"attestation artifact sha256-ab12.att has 33 layers, more than 32"},
				Attestations: []Attestation{{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(goodProvenance)}}},
			want: Decision{Allowed: true, Mode: ModeEnforce, Rule: "provenance",
				Notes: []string{"signed by release", "attestation " + slsa + " signed by github-ci"}},
		},
		{
			name: "attestation signed by the wrong root",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), Attestations: []Attestation{
				{PredicateType: slsa, SignedBy: []string{"release"}, Predicate: []byte(goodProvenance)},
			}},
			want: Decision{Mode: ModeEnforce, Rule: "provenance", Notes: []string{"signed by release"},
				Failures: []string{"attestation " + slsa + " not signed by github-ci"}},
		},
		{
			name: "conditions fail",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), Attestations: []Attestation{
				{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(`{
					"builder": {"id": "https://evil.example/builder"},
					"buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/heads/main"}}},
					"materials": [{"digest": {"level": 3}}]}`)},
			}},
			want: Decision{Mode: ModeEnforce, Rule: "provenance", Notes: []string{"signed by release"}, Failures: []string{
				`attestation ` + slsa + `: builder.id = "https://evil.example/builder", want "https://github.com/acme/builder"`,
				`attestation ` + slsa + `: buildDefinition.externalParameters.workflow.ref = "refs/heads/main", want a match for ^refs/tags/v[0-9]`,
				`attestation ` + slsa + `: materials[0].digest.level = "3", want one of "1", "2"`,
			}},
		},
		{
			name: "condition values missing or not scalars",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), Attestations: []Attestation{
				{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(`{
					"builder": {"id": null},
					"buildDefinition": {"externalParameters": {"workflow": {"ref": {"a": 1}}}},
					"materials": []}`)},
			}},
			want: Decision{Mode: ModeEnforce, Rule: "provenance", Notes: []string{"signed by release"}, Failures: []string{
				`attestation ` + slsa + `: builder.id missing`,
				`attestation ` + slsa + `: buildDefinition.externalParameters.workflow.ref is an object, want a string, number or boolean`,
				`attestation ` + slsa + `: materials[0].digest.level missing`,
			}},
		},
		{
			name: "one of two attestations holds",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), Attestations: []Attestation{
				{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(`{"builder": {"id": "x"}}`)},
				{PredicateType: slsa, SignedBy: []string{"release", "github-ci"}, Predicate: []byte(goodProvenance)},
			}},
			want: Decision{Allowed: true, Mode: ModeEnforce, Rule: "provenance",
				Notes: []string{"signed by release", "attestation " + slsa + " signed by release, github-ci"}},
		},
		{
			name: "predicate not JSON",
			repo: "provenance",
			facts: Facts{Signatures: verified("release"), Attestations: []Attestation{
				{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(`{"builder":`)},
			}},
			want: Decision{Mode: ModeEnforce, Rule: "provenance", Notes: []string{"signed by release"},
				Failures: []string{"attestation " + slsa + ": predicate is not valid JSON"}},
		},
		{
			name: "attestation inherits the rule's allOf",
			repo: "inherit",
			facts: Facts{Signatures: verified("release", "ci"), Attestations: []Attestation{
				{PredicateType: "https://spdx.dev/Document", SignedBy: []string{"release"}},
			}},
			want: Decision{Mode: ModeEnforce, Rule: "inherit", Notes: []string{"signed by release, ci"},
				Failures: []string{"attestation https://spdx.dev/Document not signed by release and ci"}},
		},
		{
			name:    "warn mode admits a failure",
			repo:    "warn",
			facts:   Facts{Signatures: noSigs},
			want:    Decision{Allowed: true, Mode: ModeWarn, Rule: "warn", Failures: []string{"not signed by release (no signatures found)"}},
			wantMsg: `portcullis: ` + shortImg + ` would be denied by rule "warn" (warn mode): not signed by release (no signatures found)`,
		},
		{
			name:    "warn mode passing",
			repo:    "warn",
			facts:   Facts{Signatures: verified("release")},
			want:    Decision{Allowed: true, Mode: ModeWarn, Rule: "warn", Notes: []string{"signed by release"}},
			wantMsg: `portcullis: ` + shortImg + ` admitted by rule "warn"`,
		},
		{
			name:    "audit mode admits a failure",
			repo:    "audit",
			facts:   Facts{Signatures: noSigs},
			want:    Decision{Allowed: true, Mode: ModeAudit, Rule: "audit", Failures: []string{"not signed by release (no signatures found)"}},
			wantMsg: `portcullis: ` + shortImg + ` would be denied by rule "audit" (audit mode): not signed by release (no signatures found)`,
		},
		{
			name:  "reasons stay on one line",
			repo:  "any",
			facts: Facts{Signatures: map[string]SignatureResult{"release": {Reason: "bad\nsignature\r\n"}}},
			want:  Decision{Mode: ModeEnforce, Rule: "any", Failures: []string{"not signed by release (bad signature )"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.facts.Now = testNow
			tt.facts.Image = testImage
			got := p.Match("ghcr.io", tt.repo).Evaluate(tt.facts)
			checksAgree(t, got)
			msg := got.Message
			got.Message = ""
			if diff := cmp.Diff(tt.want, got, ignoreChecks); diff != "" {
				t.Errorf("Decision (-want +got):\n%s", diff)
			}
			if tt.wantMsg != "" && msg != tt.wantMsg {
				t.Errorf("Message:\n got %s\nwant %s", msg, tt.wantMsg)
			}
			if strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "portcullis: "+shortImg+" ") {
				t.Errorf("Message %q is not one line about the image", msg)
			}
			if got.Failed() != (len(tt.want.Failures) > 0) {
				t.Errorf("Failed() = %v", got.Failed())
			}
		})
	}
}

func TestErrorDecision(t *testing.T) {
	p := mustParse(t, evalDoc)
	err := errors.New("fetch signatures: connection refused")
	tests := []struct {
		repo string
		want Decision
	}{
		{"any", Decision{Mode: ModeEnforce, Rule: "any",
			Failures: []string{"could not decide: fetch signatures: connection refused"},
			Message:  `portcullis: ` + shortImg + ` denied by rule "any": could not decide: fetch signatures: connection refused`}},
		{"warn", Decision{Allowed: true, Mode: ModeWarn, Rule: "warn",
			Failures: []string{"could not decide: fetch signatures: connection refused"},
			Message:  `portcullis: ` + shortImg + ` would be denied by rule "warn" (warn mode): could not decide: fetch signatures: connection refused`}},
		{"fail-open", Decision{Allowed: true, Mode: ModeEnforce, Rule: "fail-open",
			Notes:   []string{"could not decide: fetch signatures: connection refused", "admitted despite the error (onError: allow)"},
			Message: `portcullis: ` + shortImg + ` admitted by rule "fail-open" despite an error (onError: allow): could not decide: fetch signatures: connection refused`}},
	}
	for _, tt := range tests {
		t.Run(tt.repo, func(t *testing.T) {
			got := p.Match("ghcr.io", tt.repo).ErrorDecision(testImage, err)
			if diff := cmp.Diff(tt.want, got, ignoreChecks); diff != "" {
				t.Errorf("Decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestImageName(t *testing.T) {
	tests := map[string]string{
		"":                         "image",
		"docker.io/library/alpine": "docker.io/library/alpine",
		testImage:                  testImage,
		"x@sha256:abc\ny":          "x@sha256:abc y",
	}
	for in, want := range tests {
		if got := imageName(in); got != want {
			t.Errorf("imageName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEvaluateIsPure(t *testing.T) {
	p := mustParse(t, evalDoc)
	r := p.Match("ghcr.io", "provenance")
	f := Facts{Now: testNow, Image: testImage, Signatures: verified("release"), Attestations: []Attestation{
		{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(goodProvenance)},
	}}
	first := r.Evaluate(f)
	for range 3 {
		if diff := cmp.Diff(first, r.Evaluate(f)); diff != "" {
			t.Fatalf("Evaluate changed its answer:\n%s", diff)
		}
	}
}
