package policy

import (
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testKey = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEr52cosVVOllfpzt6yNukHiwo7Fbj
kNBbdOlc8ORMeIKs16hjIkA4A2+0BkubShxFsfOXDU9hF+j5i+NXCufe2Q==
-----END PUBLIC KEY-----
`

// files is an in-memory file system for Parse's readFile.
type files map[string]string

func (f files) read(name string) ([]byte, error) {
	data, ok := f[filepath.ToSlash(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return []byte(data), nil
}

// testFiles holds the files the test documents name, relative to "p.yaml".
var testFiles = files{
	"keys/release.pub":  testKey,
	"keys/scanner.pub":  strings.Replace(testKey, "MFkw", "MFkx", 1),
	"trusted_root.json": `{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`,
	"private.pem":       string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})),
	"cert.pem":          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})),
}

// mustParse parses a test document or fails the test.
func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc), "p.yaml", testFiles.read)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

const fullDoc = `
trust:
  release: {key: keys/release.pub}
  scanner: {keyData: "` + "-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----\\n" + `"}
  github-ci:
    keyless:
      trustedRoot: trusted_root.json
      issuer: https://token.actions.githubusercontent.com
      subjectRegExp: '^https://github.com/acme/'
    ignoreSCT: true
scanners:
  trivy: {url: http://harbor-scanner-trivy:8080, timeout: 2m, pullURL: "https://portcullis:5000"}
allowlist:
  - {id: CVE-2023-0001, until: 2026-12-31, reason: "global"}
rules:
  - name: acme
    match: {upstream: ghcr.io, repository: "acme/**"}
    mode: warn
    signedBy: {anyOf: [release, github-ci]}
    keepLastGood: true
    onError: allow
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
        signedBy: {anyOf: [github-ci]}
        conditions:
          - {path: builder.id, equals: "https://github.com/acme/builder"}
      - predicateType: https://spdx.dev/Document
    scan:
      maxSeverity: medium
      ignoreUnfixed: true
      maxAge: 7d
      signedBy: {allOf: [scanner]}
      sources: [scanner, attestation]
      onMissing: scan-and-wait
      waitTimeout: 90s
      scanner: trivy
      allow:
        - {id: CVE-2024-3094, until: 2026-12-31, reason: "not reachable"}
default:
  signedBy: {anyOf: [release]}
`

func TestParseFull(t *testing.T) {
	p := mustParse(t, fullDoc)

	wantRoots := map[string]TrustRoot{
		"release": {Name: "release", KeyPEM: []byte(testKey), IgnoreTlog: true},
		"scanner": {Name: "scanner", KeyPEM: []byte("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"), IgnoreTlog: true},
		"github-ci": {Name: "github-ci", IgnoreSCT: true, Keyless: &Keyless{
			TrustedRootJSON: []byte(testFiles["trusted_root.json"]),
			Issuer:          "https://token.actions.githubusercontent.com",
			SubjectRegExp:   "^https://github.com/acme/",
		}},
	}
	if diff := cmp.Diff(wantRoots, p.TrustRoots()); diff != "" {
		t.Errorf("TrustRoots (-want +got):\n%s", diff)
	}
	wantScanners := map[string]Scanner{
		"trivy": {Name: "trivy", URL: "http://harbor-scanner-trivy:8080", PullURL: "https://portcullis:5000", Timeout: 2 * time.Minute},
	}
	if diff := cmp.Diff(wantScanners, p.Scanners()); diff != "" {
		t.Errorf("Scanners (-want +got):\n%s", diff)
	}

	r := p.Match("ghcr.io", "acme/app")
	if r.Name() != "acme" || r.Mode() != ModeWarn || !r.KeepLastGood() || r.OnError() != OnErrorAllow {
		t.Errorf("rule = %q %q keepLastGood=%v onError=%q", r.Name(), r.Mode(), r.KeepLastGood(), r.OnError())
	}
	if up, repo := r.Pattern(); up != "ghcr.io" || repo != "acme/**" {
		t.Errorf("Pattern = %q, %q", up, repo)
	}
	wantReq := Requirements{
		SignedBy: Signers{AnyOf: []string{"release", "github-ci"}},
		Attestations: []AttestationRequirement{
			{PredicateType: "https://slsa.dev/provenance/v1", SignedBy: Signers{AnyOf: []string{"github-ci"}}},
			{PredicateType: "https://spdx.dev/Document", SignedBy: Signers{AnyOf: []string{"release", "github-ci"}}},
		},
		Scan: &ScanRequirement{
			MaxSeverity:   SeverityMedium,
			IgnoreUnfixed: true,
			MaxAge:        7 * 24 * time.Hour,
			SignedBy:      Signers{AllOf: []string{"scanner"}},
			Sources:       []Source{SourceScanner, SourceAttestation},
			OnMissing:     OnMissingScanAndWait,
			WaitTimeout:   90 * time.Second,
			Scanner:       "trivy",
		},
	}
	if diff := cmp.Diff(wantReq, r.Requirements()); diff != "" {
		t.Errorf("Requirements (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"github-ci", "release", "scanner"}, r.Requirements().Roots()); diff != "" {
		t.Errorf("Roots (-want +got):\n%s", diff)
	}

	d := p.Match("docker.io", "library/alpine")
	if d != p.Default() || d.Name() != "default" || d.Mode() != ModeEnforce || d.OnError() != OnErrorDeny {
		t.Errorf("default rule = %q %q %q", d.Name(), d.Mode(), d.OnError())
	}
	if diff := cmp.Diff(Requirements{SignedBy: Signers{AnyOf: []string{"release"}}}, d.Requirements()); diff != "" {
		t.Errorf("default Requirements (-want +got):\n%s", diff)
	}
}

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Requirements
	}{
		{name: "empty document", doc: "", want: Requirements{}},
		{name: "comments only", doc: "# nothing\n", want: Requirements{}},
		{name: "null default", doc: "default: null\n", want: Requirements{}},
		{
			name: "scan defaults without signers",
			doc:  "default:\n  scan: {maxSeverity: high}\n",
			want: Requirements{Scan: &ScanRequirement{
				MaxSeverity: SeverityHigh, Sources: []Source{SourceScanner, SourceCI},
				OnMissing: OnMissingDeny, WaitTimeout: 2 * time.Minute,
			}},
		},
		{
			name: "scan defaults inherit the rule's signers",
			doc:  "trust: {release: {key: keys/release.pub}}\ndefault:\n  signedBy: {allOf: [release]}\n  scan: {maxSeverity: none, maxAge: 1d12h}\n",
			want: Requirements{
				SignedBy: Signers{AllOf: []string{"release"}},
				Scan: &ScanRequirement{
					MaxSeverity: SeverityNone, MaxAge: 36 * time.Hour, SignedBy: Signers{AllOf: []string{"release"}},
					Sources: []Source{SourceAttestation, SourceScanner, SourceCI}, OnMissing: OnMissingDeny, WaitTimeout: 2 * time.Minute,
				},
			},
		},
		{
			name: "anchors and merge keys",
			doc: "trust: {release: {key: keys/release.pub}}\n" +
				"rules:\n  - &base {name: a, signedBy: &s {anyOf: [release]}}\n  - {<<: *base, name: b, match: {repository: b}}\n" +
				"default: {signedBy: *s}\n",
			want: Requirements{SignedBy: Signers{AnyOf: []string{"release"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.doc)
			r := p.Default()
			if r.Mode() != ModeEnforce || r.OnError() != OnErrorDeny || r.KeepLastGood() {
				t.Errorf("default rule: mode %q onError %q keepLastGood %v", r.Mode(), r.OnError(), r.KeepLastGood())
			}
			if diff := cmp.Diff(tt.want, r.Requirements()); diff != "" {
				t.Errorf("Requirements (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTrustDefaults(t *testing.T) {
	p := mustParse(t, `
trust:
  key: {key: keys/release.pub}
  key-tlog: {key: keys/release.pub, ignoreTlog: false}
  keyless:
    keyless: {trustedRoot: trusted_root.json, issuerRegExp: '.', subject: me@example.com}
  keyless-offline:
    keyless: {trustedRoot: trusted_root.json, issuer: x, subject: y}
    ignoreTlog: true
    ignoreSCT: true
`)
	got := map[string][2]bool{}
	for name, tr := range p.TrustRoots() {
		got[name] = [2]bool{tr.IgnoreTlog, tr.IgnoreSCT}
	}
	want := map[string][2]bool{
		"key":             {true, false},
		"key-tlog":        {false, false},
		"keyless":         {false, false},
		"keyless-offline": {true, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("IgnoreTlog, IgnoreSCT (-want +got):\n%s", diff)
	}
}

func TestTrustRootsAreCopies(t *testing.T) {
	p := mustParse(t, fullDoc)
	before := p.Hash()
	roots := p.TrustRoots()
	roots["release"].KeyPEM[0] = 'X'
	roots["github-ci"].Keyless.TrustedRootJSON[0] = 'X'
	delete(roots, "release")
	p.Scanners()["trivy"] = Scanner{}
	r := p.Match("ghcr.io", "acme/x")
	r.Requirements().SignedBy.AnyOf[0] = "mallory"
	r.Requirements().Scan.Sources[0] = "mallory"
	if diff := cmp.Diff(mustParse(t, fullDoc).TrustRoots(), p.TrustRoots()); diff != "" {
		t.Errorf("TrustRoots changed through a returned copy:\n%s", diff)
	}
	if diff := cmp.Diff(mustParse(t, fullDoc).Match("ghcr.io", "acme/x").Requirements(), r.Requirements()); diff != "" {
		t.Errorf("Requirements changed through a returned copy:\n%s", diff)
	}
	if p.Hash() != before || len(p.Scanners()) != 1 || p.Scanners()["trivy"].URL == "" {
		t.Errorf("policy changed through returned copies")
	}
}

func TestLoadExamples(t *testing.T) {
	paths, err := filepath.Glob("../configs/policies/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			p, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(p.Hash()) != 64 {
				t.Errorf("Hash = %q", p.Hash())
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load("../configs/policies/does-not-exist.yaml"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	// Key paths are relative to the policy file, not the working directory.
	p, err := Load("../configs/policies/signed-only.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p.TrustRoots()["release"].KeyPEM), "BEGIN PUBLIC KEY") {
		t.Errorf("release key not read")
	}
}

// TestParseNotationRoot checks that a Notation root compiles with its certificates (the ca
// and tsa stores) and identities, that a signedBy may mix it with a cosign root, and that Load reads a trust
// store directory as its certificate files joined.
func TestParseNotationRoot(t *testing.T) {
	cert := testFiles["cert.pem"]
	tests := []struct {
		name  string
		store func(dir string) string // writes the trust store, returns its name in the policy
		want  []byte
	}{
		{name: "file", store: func(dir string) string {
			mustWrite(t, filepath.Join(dir, "ca.pem"), cert)
			return "ca.pem"
		}, want: []byte(cert)},
		{name: "directory", store: func(dir string) string {
			mustWrite(t, filepath.Join(dir, "store", "a.pem"), cert)
			mustWrite(t, filepath.Join(dir, "store", "b.crt"), cert)
			mustWrite(t, filepath.Join(dir, "store", "notes.txt"), "not a certificate")
			return "store"
		}, want: []byte(cert + "\n" + cert + "\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mustWrite(t, filepath.Join(dir, "keys", "release.pub"), testKey)
			store := tt.store(dir)
			doc := "trust:\n  release: {key: keys/release.pub}\n  acme-notation:\n    notation:\n" +
				"      trustStore: " + store + "\n" +
				"      tsa: " + store + "\n" +
				"      identities: [\"x509.subject: C=US, ST=WA, O=Acme, CN=acme\"]\n" +
				"default:\n  signedBy: {allOf: [release, acme-notation]}\n"
			mustWrite(t, filepath.Join(dir, "p.yaml"), doc)
			p, err := Load(filepath.Join(dir, "p.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			want := TrustRoot{Name: "acme-notation", Notation: &Notation{
				CAPEM:      tt.want,
				TSAPEM:     tt.want,
				Identities: []string{"x509.subject: C=US, ST=WA, O=Acme, CN=acme"},
			}}
			if diff := cmp.Diff(want, p.TrustRoots()["acme-notation"]); diff != "" {
				t.Errorf("notation root (-want +got):\n%s", diff)
			}
			if got := p.Match("ghcr.io", "x").Requirements().SignedBy.AllOf; !slices.Equal(got, []string{"release", "acme-notation"}) {
				t.Errorf("signedBy.allOf = %v", got)
			}
		})
	}
}

func mustWrite(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
