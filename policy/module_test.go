package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeModules is a ModuleCompiler for this package's tests (the real one, package policy/rego, imports OPA): a
// module whose text holds "ERROR@N" fails to compile at its line N, and the evaluator returns deny and err. It
// records the modules and inputs it saw.
type fakeModules struct {
	deny []string
	err  error

	mu       sync.Mutex
	compiled []Module
	inputs   []Input
}

func (f *fakeModules) CompileModule(m Module) (ModuleEvaluator, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compiled = append(f.compiled, m)
	var errs []error
	for i, line := range strings.Split(m.Source, "\n") {
		if strings.Contains(line, "ERROR@") {
			errs = append(errs, &ModuleError{Line: i + 1, Msg: "rego_parse_error: " + strings.TrimSpace(line)})
		}
	}
	if strings.Contains(m.Source, "PLAIN-ERROR") {
		errs = append(errs, errors.New("engine broke"))
	}
	return f, errors.Join(errs...)
}

func (f *fakeModules) Deny(in *Input) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inputs = append(f.inputs, *in)
	return f.deny, f.err
}

const regoDocYAML = `
trust:
  release: {key: keys/release.pub}
rules:
  - name: inline
    match: {repository: inline}
    signedBy: {anyOf: [release]}
    rego: |
      package portcullis.inline

      deny contains "no" if { false }
  - name: file
    match: {repository: file}
    regoFile: rules/file.rego
default:
  rego: "package portcullis.default\ndeny contains \"x\" if { false }"
`

func regoFiles(extra map[string]string) files {
	fs := files{}
	for k, v := range testFiles {
		fs[k] = v
	}
	fs["rules/file.rego"] = "package portcullis.file\n\ndeny contains \"x\" if { false }\n"
	for k, v := range extra {
		fs[k] = v
	}
	return fs
}

func TestModuleParse(t *testing.T) {
	fm := &fakeModules{}
	p, err := Parse([]byte(regoDocYAML), "p.yaml", regoFiles(nil).read, WithModuleCompiler(fm))
	if err != nil {
		t.Fatal(err)
	}
	want := []Module{
		{Rule: "inline", Source: "package portcullis.inline\n\ndeny contains \"no\" if { false }\n", File: "p.yaml", Line: 9, Mapped: true},
		{Rule: "file", Source: "package portcullis.file\n\ndeny contains \"x\" if { false }\n", File: "rules/file.rego", Line: 1, Mapped: true},
		{Rule: "default", Source: "package portcullis.default\ndeny contains \"x\" if { false }", File: "p.yaml", Line: 16},
	}
	if diff := cmp.Diff(want, fm.compiled); diff != "" {
		t.Errorf("modules compiled (-want +got):\n%s", diff)
	}
	if m, ok := p.Match("", "inline").Module(); !ok || m.Origin() != "p.yaml:9" {
		t.Errorf("inline rule's module = %+v, %v", m, ok)
	}
	if _, ok := p.Match("", "other").Module(); !ok {
		t.Errorf("default rule has no module")
	}
	if _, ok := mustParse(t, evalDoc).Match("", "any").Module(); ok {
		t.Errorf("a rule without rego has a module")
	}
}

func TestModuleParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		files    map[string]string
		compiler ModuleCompiler
		want     []string
	}{
		{
			name: "inline literal block: at the policy line of the module's line",
			doc:  "rules:\n  - name: r\n    rego: |\n      package a\n      deny ERROR@2\n",
			want: []string{"p.yaml:5: rules[0].rego: rego_parse_error: deny ERROR@2"},
		},
		{
			name: "two problems, each at its line",
			doc:  "rules:\n  - name: r\n    rego: |\n      package a ERROR@1\n\n      deny ERROR@3\n",
			want: []string{"p.yaml:4: rules[0].rego: rego_parse_error: package a ERROR@1",
				"p.yaml:6: rules[0].rego: rego_parse_error: deny ERROR@3"},
		},
		{
			name: "quoted string: at the key's line, naming the module's line",
			doc:  "rules:\n  - name: r\n    rego: \"package a\\ndeny ERROR@2\"\n",
			want: []string{"p.yaml:3: rules[0].rego: module line 2: rego_parse_error: deny ERROR@2"},
		},
		{
			name:  "regoFile: at the regoFile line, naming the file and its line",
			doc:   "rules:\n  - name: r\n    match: {repository: x}\n    regoFile: rules/bad.rego\n",
			files: map[string]string{"rules/bad.rego": "package a\n\ndeny ERROR@3\n"},
			want:  []string{"p.yaml:4: rules[0].regoFile: rules/bad.rego:3: rego_parse_error: deny ERROR@3"},
		},
		{
			name: "an error without a line",
			doc:  "default:\n  rego: PLAIN-ERROR\n",
			want: []string{"p.yaml:2: default.rego: engine broke"},
		},
		{
			name: "regoFile missing",
			doc:  "rules:\n  - name: r\n    regoFile: nope.rego\n",
			want: []string{"p.yaml:3: rules[0].regoFile: open nope.rego: file does not exist"},
		},
		{
			name: "both",
			doc:  "rules:\n  - name: r\n    rego: package a\n    regoFile: rules/file.rego\n",
			want: []string{"p.yaml:3: rules[0].rego: give one of rego and regoFile, not both"},
		},
		{
			name: "empty",
			doc:  "default:\n  rego: \"  \"\n",
			want: []string{"p.yaml:2: default.rego: empty Rego module"},
		},
		{
			name: "not a string",
			doc:  "default:\n  rego: {package: a}\n",
			want: []string{"p.yaml:2: default.rego: expected a Rego module as a string (rego: |)"},
		},
		{
			name:     "no engine",
			doc:      "default:\n  rego: package a\n",
			compiler: nil,
			want:     []string{"p.yaml:2: default.rego: Rego modules need a Rego engine, and this policy was loaded without one (policy.WithModuleCompiler)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.compiler != nil || !strings.HasPrefix(tt.name, "no engine") {
				opts = append(opts, WithModuleCompiler(&fakeModules{}))
			}
			_, err := Parse([]byte(tt.doc), "p.yaml", regoFiles(tt.files).read, opts...)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestModuleEvaluate(t *testing.T) {
	const doc = `
trust:
  release: {key: keys/release.pub}
rules:
  - name: enforce
    match: {repository: enforce}
    signedBy: {anyOf: [release]}
    rego: "package a\ndeny contains 1 if { false }"
  - name: warn
    match: {repository: warn}
    mode: warn
    rego: "package a\ndeny contains 1 if { false }"
  - name: fail-open
    match: {repository: fail-open}
    onError: allow
    rego: "package a\ndeny contains 1 if { false }"
`
	long := strings.Repeat("é", 200)
	var many []string
	for i := range 12 {
		many = append(many, string(rune('a'+i)))
	}
	broke := errors.New("evaluation passed its time bound (100ms)")
	tests := []struct {
		name      string
		repo      string
		deny      []string
		err       error
		facts     Facts
		allowed   bool
		failures  []string
		notes     []string
		lastCheck Check
	}{
		{
			name: "no messages admits", repo: "enforce", facts: Facts{Signatures: verified("release")}, allowed: true,
			notes:     []string{"signed by release", "rego: no deny messages (p.yaml:8)"},
			lastCheck: Check{Requirement: "rego", Passed: true, Detail: "rego: no deny messages (p.yaml:8)"},
		},
		{
			name: "messages deny after the built-in failures", repo: "enforce", deny: []string{"too many medium findings (5)", "second"},
			failures:  []string{"not signed by release (not checked)", "rego: too many medium findings (5)", "rego: second"},
			lastCheck: Check{Requirement: "rego", Detail: "rego: too many medium findings (5); rego: second"},
		},
		{
			name: "warn mode admits with the messages", repo: "warn", deny: []string{"too many medium findings (5)"}, allowed: true,
			failures:  []string{"rego: too many medium findings (5)"},
			lastCheck: Check{Requirement: "rego", Detail: "rego: too many medium findings (5)"},
		},
		{
			name: "an error denies (onError: deny)", repo: "enforce", err: broke, facts: Facts{Signatures: verified("release")},
			failures:  []string{"rego: could not decide: evaluation passed its time bound (100ms)"},
			notes:     []string{"signed by release"},
			lastCheck: Check{Requirement: "rego", Detail: "rego: could not decide: evaluation passed its time bound (100ms)"},
		},
		{
			name: "an error passes with onError: allow", repo: "fail-open", err: broke, allowed: true,
			notes:     []string{"rego: could not decide: evaluation passed its time bound (100ms); passed (onError: allow)"},
			lastCheck: Check{Requirement: "rego", Passed: true, Detail: "rego: could not decide: evaluation passed its time bound (100ms); passed (onError: allow)"},
		},
		{
			name: "messages are bounded", repo: "warn", deny: append([]string{long + "\nsecond line"}, many...), allowed: true,
			failures: append(append([]string{"rego: " + strings.Repeat("é", 148) + "…"}, prefixed("rego: ", many[:9])...), "rego: 3 more deny messages"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fm := &fakeModules{deny: tt.deny, err: tt.err}
			p, err := Parse([]byte(doc), "p.yaml", testFiles.read, WithModuleCompiler(fm))
			if err != nil {
				t.Fatal(err)
			}
			tt.facts.Now, tt.facts.Image = testNow, testImage
			d := p.Match("", tt.repo).Evaluate(tt.facts)
			if d.Allowed != tt.allowed {
				t.Errorf("Allowed = %v: %s", d.Allowed, d.Message)
			}
			if diff := cmp.Diff(tt.failures, d.Failures); diff != "" {
				t.Errorf("Failures (-want +got):\n%s", diff)
			}
			if tt.notes != nil {
				if diff := cmp.Diff(tt.notes, d.Notes); diff != "" {
					t.Errorf("Notes (-want +got):\n%s", diff)
				}
			}
			if tt.lastCheck.Requirement != "" {
				if diff := cmp.Diff(tt.lastCheck, d.Checks[len(d.Checks)-1]); diff != "" {
					t.Errorf("last check (-want +got):\n%s", diff)
				}
			}
			if len(fm.inputs) != 1 {
				t.Errorf("module evaluated %d times, want 1", len(fm.inputs))
			}
			for _, f := range tt.failures {
				if !strings.Contains(d.Message, f) {
					t.Errorf("Message %q lacks %q", d.Message, f)
				}
			}
		})
	}
	t.Run("EvaluateScan does not run the module", func(t *testing.T) {
		fm := &fakeModules{deny: []string{"no"}}
		p, err := Parse([]byte(doc), "p.yaml", testFiles.read, WithModuleCompiler(fm))
		if err != nil {
			t.Fatal(err)
		}
		if d := p.Match("", "enforce").EvaluateScan(Facts{Now: testNow}); !d.Allowed || len(fm.inputs) != 0 {
			t.Errorf("EvaluateScan = %+v after %d module evaluations", d, len(fm.inputs))
		}
	})
}

// fullDocHash is fullDoc's hash as computed before Rego modules existed.
const fullDocHash = "33bd51c183588848f0c504f66717304f9d51223544d2962e6e91d2015d012ed8"

func prefixed(prefix string, list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = prefix + s
	}
	return out
}

func TestModuleHash(t *testing.T) {
	parse := func(doc string, fs files) string {
		t.Helper()
		p, err := Parse([]byte(doc), "p.yaml", fs.read, WithModuleCompiler(&fakeModules{}))
		if err != nil {
			t.Fatal(err)
		}
		return p.Hash()
	}
	base := parse(regoDocYAML, regoFiles(nil))
	without := strings.Replace(regoDocYAML, "    regoFile: rules/file.rego\n", "", 1)
	tests := []struct {
		name string
		doc  string
		fs   files
		same bool
	}{
		{name: "inline module's text changed by chomping", doc: strings.Replace(regoDocYAML, "    rego: |\n", "    rego: |-\n", 1) + "\n", fs: regoFiles(nil), same: false},
		{name: "comment outside the module", doc: "# policy\n" + regoDocYAML, fs: regoFiles(nil), same: true},
		{name: "inline module changed", doc: strings.Replace(regoDocYAML, `"no"`, `"yes"`, 1), fs: regoFiles(nil)},
		{name: "regoFile changed", doc: regoDocYAML, fs: regoFiles(map[string]string{"rules/file.rego": "package portcullis.file\ndeny contains \"x\" if { true }\n"})},
		{name: "module removed", doc: without, fs: regoFiles(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parse(tt.doc, tt.fs); (got == base) != tt.same {
				t.Errorf("hash same = %v, want %v", got == base, tt.same)
			}
		})
	}
	t.Run("a policy without modules keeps its hash", func(t *testing.T) {
		// fullDoc's hash before modules existed: the field is left out when empty, so a running fleet's cached
		// decisions stay valid across the upgrade.
		if got := mustParse(t, fullDoc).Hash(); got != fullDocHash {
			t.Errorf("Hash = %s, want %s", got, fullDocHash)
		}
	})
}

func TestModuleInput(t *testing.T) {
	const doc = `
trust:
  release: {key: keys/release.pub}
  github-ci:
    keyless: {trustedRoot: trusted_root.json, issuer: https://token.actions.githubusercontent.com, subjectRegExp: '^https://github.com/acme/'}
allowlist:
  - {id: CVE-2024-5, reason: "policy-wide"}
rules:
  - name: r
    match: {repository: acme/app}
    signedBy: {anyOf: [release, github-ci]}
    scan:
      maxSeverity: high
      ignoreUnfixed: true
      allow:
        - {id: CVE-2024-4, reason: "not reachable"}
        - {id: CVE-2024-6, until: 2026-01-01, reason: "expired"}
    rego: "package a\ndeny contains 1 if { false }"
`
	fm := &fakeModules{}
	p, err := Parse([]byte(doc), "p.yaml", testFiles.read, WithModuleCompiler(fm))
	if err != nil {
		t.Fatal(err)
	}
	rule := p.Match("ghcr.io", "acme/app")
	scanned := testNow.Add(-time.Hour)
	facts := Facts{
		Now:   testNow.In(time.FixedZone("CEST", 2*3600)),
		Image: testImage,
		Ref: ImageRef{Upstream: "ghcr.io", Repository: "acme/app", Tag: "v1", Digest: "sha256:ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12",
			MediaType: "application/vnd.oci.image.manifest.v1+json"},
		Signatures: map[string]SignatureResult{"release": {Verified: true, Format: "bundle"}, "github-ci": {Reason: "no signatures found"}},
		Attestations: []Attestation{
			{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(`{"builder": {"id": "https://github.com/acme/builder"}}`)},
			{PredicateType: "https://example.com/broken", SignedBy: []string{"release"}, Predicate: []byte(`{not json`)},
		},
		Scan: &ScanReport{Source: SourceCI, Scanner: "Trivy", ScannerVersion: "0.58.1", ScanTime: scanned.In(time.FixedZone("X", -3600)),
			Findings: []Finding{
				{ID: "CVE-2024-1", Severity: "CRITICAL", Package: "openssl", InstalledVersion: "3.0.1", FixedVersion: "3.0.15"},
				{ID: "CVE-2024-1", Severity: "CRITICAL", Package: "openssl", InstalledVersion: "3.0.1", FixedVersion: "3.0.15"}, // twice
				{ID: "CVE-2024-2", Severity: SeverityMedium, Package: "zlib", InstalledVersion: "1.2", FixedVersion: "1.3"},
				{ID: "CVE-2024-3", Severity: SeverityMedium, Package: "bash", InstalledVersion: "5.1"},                  // unfixed
				{ID: "CVE-2024-4", Severity: SeverityLow, Package: "curl", InstalledVersion: "8", FixedVersion: "9"},    // allowlisted
				{ID: "CVE-2024-5", Severity: SeverityHigh, Package: "xz", InstalledVersion: "5.6", FixedVersion: "5.7"}, // policy-wide
				{ID: "CVE-2024-6", Severity: SeverityHigh, Package: "tar", InstalledVersion: "1", FixedVersion: "2"},    // entry expired
				{ID: "CVE-2024-7", Severity: SeverityMedium, Package: "git", InstalledVersion: "2", FixedVersion: "3"},  // VEX
				{ID: "CVE-2024-8", Severity: "weird", Package: "sed", InstalledVersion: "4", FixedVersion: "5"},
				{ID: "CVE-2024-9", Severity: SeverityNone, Package: "awk", InstalledVersion: "1", FixedVersion: "2"},
			},
			VEX: []VEXStatement{{IDs: []string{"CVE-2024-7"}, Status: VEXNotAffected, Time: scanned}},
		},
	}
	rule.Evaluate(facts)
	if len(fm.inputs) != 1 {
		t.Fatalf("module evaluated %d times", len(fm.inputs))
	}
	want := Input{
		Image: InputImage{Upstream: "ghcr.io", Repository: "acme/app", Tag: "v1",
			Digest: "sha256:ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12", MediaType: "application/vnd.oci.image.manifest.v1+json"},
		Signatures: []InputSignature{
			{Root: "github-ci", Identity: Identity{Issuer: "https://token.actions.githubusercontent.com", SubjectRegExp: "^https://github.com/acme/"}},
			{Root: "release", Verified: true, Identity: Identity{Key: testKeyFingerprint}},
		},
		Attestations: []InputAttestation{
			{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(`{"builder": {"id": "https://github.com/acme/builder"}}`)},
			{PredicateType: "https://example.com/broken", SignedBy: []string{"release"}, Predicate: []byte(`null`)},
		},
		Scan: &InputScan{Source: SourceCI, Scanner: "Trivy", ScannerVersion: "0.58.1", ScanTime: "2026-06-01T11:00:00Z",
			Counts: InputCounts{Critical: 1, High: 1, Medium: 1, Unknown: 1},
			Findings: []InputFinding{
				{ID: "CVE-2024-1", Severity: SeverityCritical, Package: "openssl", Version: "3.0.1", FixedVersion: "3.0.15"},
				{ID: "CVE-2024-2", Severity: SeverityMedium, Package: "zlib", Version: "1.2", FixedVersion: "1.3"},
				{ID: "CVE-2024-3", Severity: SeverityMedium, Package: "bash", Version: "5.1", Waived: true},
				{ID: "CVE-2024-4", Severity: SeverityLow, Package: "curl", Version: "8", FixedVersion: "9", Waived: true},
				{ID: "CVE-2024-5", Severity: SeverityHigh, Package: "xz", Version: "5.6", FixedVersion: "5.7", Waived: true},
				{ID: "CVE-2024-6", Severity: SeverityHigh, Package: "tar", Version: "1", FixedVersion: "2"},
				{ID: "CVE-2024-7", Severity: SeverityMedium, Package: "git", Version: "2", FixedVersion: "3", Waived: true},
				{ID: "CVE-2024-8", Severity: SeverityUnknown, Package: "sed", Version: "4", FixedVersion: "5"},
				{ID: "CVE-2024-9", Severity: SeverityNone, Package: "awk", Version: "1", FixedVersion: "2"},
			}},
		Now: "2026-06-01T12:00:00Z",
	}
	if diff := cmp.Diff(want, fm.inputs[0]); diff != "" {
		t.Errorf("input (-want +got):\n%s", diff)
	}

	t.Run("no report, no signatures", func(t *testing.T) {
		fm.inputs = nil
		rule.Evaluate(Facts{Now: testNow})
		got := fm.inputs[0]
		if got.Scan != nil || got.Signatures == nil || got.Attestations == nil || len(got.Signatures)+len(got.Attestations) != 0 {
			t.Errorf("input = %+v, want no scan and empty (not null) lists", got)
		}
		b, _ := json.Marshal(got)
		if strings.Contains(string(b), `"scan"`) || !strings.Contains(string(b), `"signatures":[]`) {
			t.Errorf("JSON = %s", b)
		}
	})
}

// testKeyFingerprint is testKey's fingerprint as `openssl pkey -pubin -outform DER | sha256sum` gives it.
const testKeyFingerprint = "sha256:dd8075f59154c1f3edd59cde75b3526bf98302bb29d70f17f395ee6aca6505a6"
