package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admin"
	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/harbortest"
	"github.com/portcullis/portcullis/verifier/harbor"
)

// trivyVuln is one finding in a Trivy JSON report.
type trivyVuln struct{ id, pkg, installed, fixed, severity string }

// trivyReport renders a Trivy JSON report (`trivy image -f json`, schema 2).
func trivyReport(created time.Time, vulns ...trivyVuln) map[string]any {
	var vs []map[string]any
	for _, v := range vulns {
		vs = append(vs, map[string]any{"VulnerabilityID": v.id, "PkgName": v.pkg, "InstalledVersion": v.installed,
			"FixedVersion": v.fixed, "Severity": v.severity})
	}
	return map[string]any{"SchemaVersion": 2, "CreatedAt": created.Format(time.RFC3339), "ArtifactName": "app",
		"ArtifactType": "container_image", "Results": []map[string]any{{"Target": "app (debian 12.8)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vs}}}
}

// vulnPredicate is cosign's vuln attestation predicate (`cosign attest --type vuln`) wrapping a Trivy report.
func vulnPredicate(scanned time.Time, vulns ...trivyVuln) []byte {
	b, _ := json.Marshal(map[string]any{
		"invocation": map[string]any{"parameters": nil, "uri": "", "event_id": "", "builder.id": ""},
		"scanner": map[string]any{"uri": "pkg:github/aquasecurity/trivy@v0.58.1", "version": "0.58.1",
			"db": map[string]any{"uri": "", "version": "v1-" + scanned.Format("2006010215")}, "result": trivyReport(scanned, vulns...)},
		"metadata": map[string]any{"scanStartedOn": scanned.Add(-time.Minute).Format(time.RFC3339), "scanFinishedOn": scanned.Format(time.RFC3339)},
	})
	return b
}

var (
	critical = trivyVuln{"CVE-2024-9001", "openssl", "3.0.1", "3.0.15", "CRITICAL"}
	high     = trivyVuln{"CVE-2024-9002", "zlib", "1.2.11", "1.2.13", "HIGH"}
	low      = trivyVuln{"CVE-2024-9003", "bash", "5.1", "", "LOW"}
)

type scanEnv struct {
	*env
	bin      string
	scanKey  keyPair
	otherKey keyPair
	scanner  *harbortest.Scanner
	admin    *httptest.Server
	clock    *atomic.Int64
}

const scanPolicy = `trust:
  scanner: {key: scanner.pub}
  other: {key: other.pub}
scanners:
  trivy: {url: %q, timeout: 30s}
rules:
  - name: scanned
    match: {repository: "scan/**"}
    scan:
      maxSeverity: medium
      maxAge: 7d
      signedBy: {anyOf: [scanner]}
  - name: allowlisted
    match: {repository: "allow/**"}
    scan:
      maxSeverity: medium
      signedBy: {anyOf: [scanner]}
      allow:
        - {id: CVE-2024-9001, until: 2026-12-31, reason: "openssl is not reachable in this image"}
  - name: waited
    match: {repository: "wait/**"}
    scan:
      maxSeverity: medium
      sources: [scanner, ci]
      onMissing: scan-and-wait
      scanner: trivy
      waitTimeout: 30s
  - name: attested-only
    match: {repository: "attested/**"}
    scan:
      maxSeverity: medium
      signedBy: {anyOf: [scanner]}
      sources: [attestation]
  - name: refreshed
    match: {repository: "fresh/**"}
    scan:
      maxSeverity: medium
      maxAge: 7d
      signedBy: {anyOf: [scanner]}
      sources: [attestation, scanner]
      scanner: trivy
`

func newScanEnv(t testing.TB, findings func(repo string, d digest.Digest) []harbortest.Vulnerability, gateOpts ...admission.Option) *scanEnv {
	t.Helper()
	se := &scanEnv{bin: cosigntest.Binary(t), scanKey: cosignKey(t), otherKey: cosignKey(t), clock: &atomic.Int64{}}
	se.clock.Store(time.Now().UnixNano())
	if findings == nil {
		findings = func(string, digest.Digest) []harbortest.Vulnerability { return nil }
	}
	se.scanner = harbortest.New(t, findings, harbortest.WithDelay(1500*time.Millisecond))
	files := map[string][]byte{"scanner.pub": se.scanKey.pubPEM(t), "other.pub": se.otherKey.pubPEM(t)}
	var reports *admission.Reports
	se.env = newEnv(t,
		withPolicy(fmt.Sprintf(scanPolicy, se.scanner.URL()), files,
			append([]admission.Option{admission.WithClock(func() time.Time { return time.Unix(0, se.clock.Load()) }),
				admission.WithDecisionTTL(20*time.Millisecond, 20*time.Millisecond)}, gateOpts...)...),
		func(c *envConfig) {
			c.scanning = func(kv cache.KV, proxyURL, defaultUpstream string) *admission.Scanning {
				client, err := harbor.New(se.scanner.URL(), harbor.WithPollInterval(200*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				reports = admission.NewReports(kv, 0)
				return &admission.Scanning{Reports: reports, Credentials: admission.NewScanCredentials(kv),
					Scanners: map[string]admission.ScannerEndpoint{"trivy": {Scanner: client, PullURL: proxyURL}}, DefaultUpstream: defaultUpstream}
			}
		})
	admin, err := admin.New(admin.StaticToken("admin-secret"), admin.WithReports(reports), admin.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	se.admin = httptest.NewServer(admin)
	t.Cleanup(se.admin.Close)
	return se
}

// push pushes an image and returns its digest reference on the upstream.
func (se *scanEnv) push(t testing.TB, repo string) (ref string, d digest.Digest) {
	t.Helper()
	img := se.up.PushRandomImage(t, repo+":v1", 1, 2048)
	h, _ := img.Digest()
	return se.up.Ref(repo + "@" + h.String()), digest.Digest(h.String())
}

func (se *scanEnv) attestVuln(t testing.TB, ref string, key keyPair, scanned time.Time, vulns ...trivyVuln) {
	t.Helper()
	cosigntest.Attest(t, se.bin, ref, key.priv, "vuln", vulnPredicate(scanned, vulns...))
}

func (se *scanEnv) post(t testing.TB, path string, body []byte) {
	t.Helper()
	if status, msg := se.postStatus(t, path, body); status != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", path, status, msg)
	}
}

// postStatus posts body to the admin API and returns the status and response body.
func (se *scanEnv) postStatus(t testing.TB, path string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, se.admin.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (se *scanEnv) allowed(t *testing.T, repo string) {
	t.Helper()
	if _, err := crane.Pull(se.ref(repo+":v1"), pullOpts()...); err != nil {
		t.Fatalf("%s should be served: %v", repo, err)
	}
}

func TestScanGateAttestations(t *testing.T) {
	se := newScanEnv(t, nil)
	now := time.Now()

	ref, _ := se.push(t, "scan/clean")
	se.attestVuln(t, ref, se.scanKey, now.Add(-time.Hour), low)
	ref, _ = se.push(t, "scan/vulnerable")
	se.attestVuln(t, ref, se.scanKey, now.Add(-time.Hour), critical, high, low)
	ref, _ = se.push(t, "scan/old")
	se.attestVuln(t, ref, se.scanKey, now.Add(-10*24*time.Hour), low)
	ref, _ = se.push(t, "scan/wrongsigner")
	se.attestVuln(t, ref, se.otherKey, now.Add(-time.Hour), low)
	se.push(t, "scan/missing")

	t.Run("below threshold admitted", func(t *testing.T) { se.allowed(t, "scan/clean") })
	t.Run("above threshold denied with the findings", func(t *testing.T) {
		msg := denial(t, se.env, "/v2/scan/vulnerable/manifests/v1")
		mustContain(t, "denial", msg, `rule "scanned"`, "1 critical", "1 high", "above medium",
			"CVE-2024-9001 openssl (fixed in 3.0.15)", "CVE-2024-9002 zlib (fixed in 1.2.13)")
	})
	t.Run("report older than maxAge denied", func(t *testing.T) {
		mustContain(t, "denial", denial(t, se.env, "/v2/scan/old/manifests/v1"), "old", "7d")
	})
	t.Run("attestation by a non-scanner key ignored", func(t *testing.T) {
		mustContain(t, "denial", denial(t, se.env, "/v2/scan/wrongsigner/manifests/v1"), "no scan report")
	})
	t.Run("missing report denied", func(t *testing.T) {
		mustContain(t, "denial", denial(t, se.env, "/v2/scan/missing/manifests/v1"), "no scan report")
	})
}

func TestScanGateAllowlistAndVEX(t *testing.T) {
	se := newScanEnv(t, nil)
	ref, d := se.push(t, "allow/app")
	se.attestVuln(t, ref, se.scanKey, time.Now().Add(-time.Hour), critical)

	// Before 2026-12-31 the allowlist entry holds.
	se.clock.Store(time.Date(2026, 12, 30, 12, 0, 0, 0, time.UTC).UnixNano())
	se.allowed(t, "allow/app")
	// After it, it stops applying, and the denial says so.
	se.clock.Store(time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC).UnixNano())
	time.Sleep(30 * time.Millisecond) // past the decision TTL
	mustContain(t, "denial", denial(t, se.env, "/v2/allow/app/manifests/v1"), "CVE-2024-9001", "1 critical")

	// A VEX statement that the image is not affected suppresses the finding.
	vex := fmt.Sprintf(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://acme.example/vex/1","author":"security@acme.example",
"timestamp":"2026-11-23T00:00:00Z","version":1,"statements":[{"vulnerability":{"name":"CVE-2024-9001"},
"products":[{"@id":"pkg:oci/app@%s"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`,
		strings.Replace(d.String(), ":", "%3A", 1))
	se.post(t, "/admin/v1/vex", []byte(vex))
	se.allowed(t, "allow/app")
}

func TestScanGateCIReport(t *testing.T) {
	se := newScanEnv(t, nil)
	_, d := se.push(t, "wait/ci")
	// CI posts a Trivy report with a critical finding: denied (no scanner needed, a report exists).
	bad, _ := json.Marshal(trivyReport(time.Now(), critical))
	se.post(t, "/admin/v1/reports/"+d.String(), bad)
	mustContain(t, "denial", denial(t, se.env, "/v2/wait/ci/manifests/v1"), "1 critical")
	// A fixed build's clean report for the same digest replaces it at once (the facts epoch moved).
	good, _ := json.Marshal(trivyReport(time.Now(), low))
	se.post(t, "/admin/v1/reports/"+d.String(), good)
	se.allowed(t, "wait/ci")
	if n := len(se.scanner.Requests()); n != 0 {
		t.Errorf("scanner asked %d times although CI reports existed", n)
	}
}

func TestScanAndWait(t *testing.T) {
	se := newScanEnv(t, func(repo string, d digest.Digest) []harbortest.Vulnerability {
		if strings.Contains(repo, "dirty") {
			return []harbortest.Vulnerability{{ID: "CVE-2024-9001", Package: "openssl", Version: "3.0.1", FixVersion: "3.0.15", Severity: "Critical"}}
		}
		return []harbortest.Vulnerability{{ID: "CVE-2024-9003", Package: "bash", Version: "5.1", Severity: "Low"}}
	})
	_, d := se.push(t, "wait/clean")
	se.push(t, "wait/dirty")

	// Before any scan, knowing the digest is not enough to pull it.
	denial(t, se.env, "/v2/wait/clean/blobs/"+d.String())

	se.allowed(t, "wait/clean") // waits for the scanner (1.5 s), then serves
	mustContain(t, "denial", denial(t, se.env, "/v2/wait/dirty/manifests/v1"), "1 critical", "CVE-2024-9001 openssl")

	reqs := se.scanner.Requests()
	if len(reqs) != 2 {
		t.Fatalf("scanner got %d scan requests, want 2: %+v", len(reqs), reqs)
	}
	for _, r := range reqs {
		if r.RegistryURL != se.srv.URL || !strings.HasPrefix(r.Authorization, "Bearer pcs_") || !r.Pulled {
			t.Errorf("scanner request %+v: want a pull through Portcullis (%s) with a scanner credential", r, se.srv.URL)
		}
	}
	// The scanner's credential opens that one image only.
	req, _ := http.NewRequest(http.MethodGet, se.srv.URL+"/v2/scan/missing/manifests/v1", nil)
	req.Header.Set("Authorization", reqs[0].Authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusForbidden {
		t.Errorf("credential used for another repository: %d", resp.StatusCode)
	}
	// The verdict is kept: the next decision needs no scan.
	time.Sleep(30 * time.Millisecond)
	se.allowed(t, "wait/clean")
	if n := len(se.scanner.Requests()); n != 2 {
		t.Errorf("rescanned: %d requests", n)
	}
}

func TestStaleReportRefreshedByScanner(t *testing.T) {
	se := newScanEnv(t, nil)
	ref, _ := se.push(t, "fresh/app")
	se.attestVuln(t, ref, se.scanKey, time.Now().Add(-10*24*time.Hour), low) // 10 days old, maxAge 7d
	se.allowed(t, "fresh/app")                                               // the scanner was asked for a fresh report
	if n := len(se.scanner.Requests()); n != 1 {
		t.Errorf("scanner asked %d times, want 1", n)
	}
}

// TestScanGateVEXAttestation: an OpenVEX attestation by the scan signers suppresses the finding it covers.
func TestScanGateVEXAttestation(t *testing.T) {
	se := newScanEnv(t, nil)
	for _, tc := range []struct {
		repo  string
		key   func() keyPair
		allow bool
	}{
		{"scan/vexed", func() keyPair { return se.scanKey }, true},
		{"scan/vexbyother", func() keyPair { return se.otherKey }, false}, // VEX from an untrusted signer does not count
	} {
		t.Run(tc.repo, func(t *testing.T) {
			ref, d := se.push(t, tc.repo)
			se.attestVuln(t, ref, se.scanKey, time.Now().Add(-time.Hour), critical)
			vex := fmt.Sprintf(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://acme.example/vex/%s","author":"security@acme.example",
"timestamp":"%s","version":1,"statements":[{"vulnerability":{"name":"CVE-2024-9001"},
"products":[{"@id":"%s"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}`,
				d.Encoded()[:8], time.Now().UTC().Format(time.RFC3339), d)
			cosigntest.Attest(t, se.bin, ref, tc.key().priv, "openvex", []byte(vex))
			if tc.allow {
				se.allowed(t, tc.repo)
				return
			}
			mustContain(t, "denial", denial(t, se.env, "/v2/"+tc.repo+"/manifests/v1"), "1 critical")
		})
	}
}

// TestRefresherRenewsReportBeforeItAgesOut: a busy image whose report is about to age out gets a fresh scan in the
// background, not on a pull.
func TestRefresherRenewsReportBeforeItAgesOut(t *testing.T) {
	se := newScanEnv(t, nil)
	ref, _ := se.push(t, "fresh/busy")
	se.attestVuln(t, ref, se.scanKey, time.Now().Add(-7*24*time.Hour+30*time.Minute), low) // ages out in 30 minutes
	se.allowed(t, "fresh/busy")
	if n := len(se.scanner.Requests()); n != 0 {
		t.Fatalf("the pull itself asked the scanner (%d): the report was still fresh", n)
	}
	if n := se.gate.Refresh(context.Background(), time.Hour); n != 1 {
		t.Fatalf("refreshed %d decisions, want 1", n)
	}
	if n := len(se.scanner.Requests()); n != 1 {
		t.Errorf("refresher asked the scanner %d times, want 1 (the report ages out within the margin)", n)
	}
}

// vexStatement is one OpenVEX statement: a vulnerability's status, dated, optionally narrowed to a subcomponent.
type vexStatement struct {
	id, status   string
	at           time.Time
	subcomponent string
}

// openVEX renders an OpenVEX v0.2.0 document whose statements are about the image d.
func openVEX(d digest.Digest, stmts ...vexStatement) []byte {
	var list []map[string]any
	for _, s := range stmts {
		product := map[string]any{"@id": "pkg:oci/app@" + strings.Replace(d.String(), ":", "%3A", 1)}
		if s.subcomponent != "" {
			product["subcomponents"] = []map[string]any{{"@id": s.subcomponent}}
		}
		st := map[string]any{"vulnerability": map[string]any{"name": s.id}, "status": s.status,
			"timestamp": s.at.UTC().Format(time.RFC3339), "products": []any{product}}
		if s.status == "not_affected" {
			st["justification"] = "vulnerable_code_not_in_execute_path"
		}
		list = append(list, st)
	}
	b, _ := json.Marshal(map[string]any{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://acme.example/vex/" + d.Encoded()[:12],
		"author": "security@acme.example", "timestamp": time.Now().UTC().Format(time.RFC3339), "version": 1, "statements": list})
	return b
}

// TestScanGatePostedVEXOnlyForCIRules: VEX CI posts counts only in rules whose sources include ci; a rule that
// trusts attestations alone still takes attested VEX.
func TestScanGatePostedVEXOnlyForCIRules(t *testing.T) {
	se := newScanEnv(t, nil)
	ref, d := se.push(t, "attested/app")
	se.attestVuln(t, ref, se.scanKey, time.Now().Add(-time.Hour), critical)
	se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{id: critical.id, status: "not_affected", at: time.Now().Add(-time.Minute)}))
	mustContain(t, "denial", denial(t, se.env, "/v2/attested/app/manifests/v1"), "1 critical", "CVE-2024-9001 openssl")

	cosigntest.Attest(t, se.bin, ref, se.scanKey.priv, "openvex",
		openVEX(d, vexStatement{id: critical.id, status: "not_affected", at: time.Now().Add(-time.Minute)}))
	time.Sleep(30 * time.Millisecond) // past the decision TTL
	se.allowed(t, "attested/app")
}

// TestScanGateVEXSubcomponents: a statement narrowed to a subcomponent waives the vulnerability in that package
// only.
func TestScanGateVEXSubcomponents(t *testing.T) {
	se := newScanEnv(t, nil)
	inLibssl := trivyVuln{critical.id, "libssl3", "3.0.1", "3.0.15", "CRITICAL"}
	ref, d := se.push(t, "scan/two-packages")
	se.attestVuln(t, ref, se.scanKey, time.Now().Add(-time.Hour), critical, inLibssl)
	ref, d2 := se.push(t, "scan/one-package")
	se.attestVuln(t, ref, se.scanKey, time.Now().Add(-time.Hour), critical)

	at := time.Now().Add(-time.Minute)
	se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{critical.id, "not_affected", at, "pkg:deb/debian/openssl@3.0.1?arch=amd64"}))
	se.post(t, "/admin/v1/vex", openVEX(d2, vexStatement{critical.id, "not_affected", at, "pkg:deb/debian/openssl@3.0.1?arch=amd64"}))
	msg := denial(t, se.env, "/v2/scan/two-packages/manifests/v1")
	mustContain(t, "denial", msg, "1 critical", "CVE-2024-9001 libssl3")
	if strings.Contains(msg, "CVE-2024-9001 openssl") {
		t.Errorf("denial %q counts the waived openssl finding", msg)
	}
	se.allowed(t, "scan/one-package")
	// A subcomponent at another version waives nothing.
	ref, d3 := se.push(t, "scan/other-version")
	se.attestVuln(t, ref, se.scanKey, time.Now().Add(-time.Hour), critical)
	se.post(t, "/admin/v1/vex", openVEX(d3, vexStatement{critical.id, "not_affected", at, "pkg:deb/debian/openssl@3.0.2"}))
	mustContain(t, "denial", denial(t, se.env, "/v2/scan/other-version/manifests/v1"), "CVE-2024-9001 openssl")
}

// TestScanGateVEXWithdrawn: a later affected or under_investigation statement withdraws an earlier waiver, whether
// they are in one document, in documents posted one after the other, or one attested and one posted.
func TestScanGateVEXWithdrawn(t *testing.T) {
	se := newScanEnv(t, nil)
	t0 := time.Now().Add(-time.Hour)
	pushVulnerable := func(t *testing.T, repo string) (string, digest.Digest) {
		ref, d := se.push(t, repo)
		se.attestVuln(t, ref, se.scanKey, t0, critical)
		return ref, d
	}
	t.Run("within one document", func(t *testing.T) {
		_, d := pushVulnerable(t, "scan/one-doc")
		// Listed first but made later: the document's order does not matter, the timestamps do.
		se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{id: critical.id, status: "under_investigation", at: t0.Add(2 * time.Minute)},
			vexStatement{id: critical.id, status: "not_affected", at: t0.Add(time.Minute)}))
		mustContain(t, "denial", denial(t, se.env, "/v2/scan/one-doc/manifests/v1"), "1 critical")
	})
	t.Run("across posted documents", func(t *testing.T) {
		_, d := pushVulnerable(t, "scan/two-docs")
		se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{id: critical.id, status: "not_affected", at: t0.Add(time.Minute)}))
		se.allowed(t, "scan/two-docs")
		se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{id: critical.id, status: "affected", at: t0.Add(2 * time.Minute)}))
		mustContain(t, "denial", denial(t, se.env, "/v2/scan/two-docs/manifests/v1"), "1 critical")
		// A waiver dated before the withdrawal does not bring it back.
		se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{id: critical.id, status: "not_affected", at: t0.Add(90 * time.Second)}))
		mustContain(t, "denial", denial(t, se.env, "/v2/scan/two-docs/manifests/v1"), "1 critical")
	})
	t.Run("posted affected after an attested waiver", func(t *testing.T) {
		ref, d := pushVulnerable(t, "scan/attested-then-posted")
		cosigntest.Attest(t, se.bin, ref, se.scanKey.priv, "openvex", openVEX(d, vexStatement{id: critical.id, status: "not_affected", at: t0.Add(time.Minute)}))
		se.allowed(t, "scan/attested-then-posted")
		se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{id: critical.id, status: "affected", at: t0.Add(2 * time.Minute)}))
		mustContain(t, "denial", denial(t, se.env, "/v2/scan/attested-then-posted/manifests/v1"), "1 critical")
	})
	t.Run("attested waiver after a posted affected", func(t *testing.T) {
		ref, d := pushVulnerable(t, "scan/posted-then-attested")
		se.post(t, "/admin/v1/vex", openVEX(d, vexStatement{id: critical.id, status: "affected", at: t0.Add(time.Minute)}))
		cosigntest.Attest(t, se.bin, ref, se.scanKey.priv, "openvex", openVEX(d, vexStatement{id: critical.id, status: "not_affected", at: t0.Add(2 * time.Minute)}))
		se.allowed(t, "scan/posted-then-attested")
	})
}

// TestCIReportBoundToItsImage: a posted report that names another image's digest, or a scan time in the future,
// is refused and changes nothing.
func TestCIReportBoundToItsImage(t *testing.T) {
	se := newScanEnv(t, func(string, digest.Digest) []harbortest.Vulnerability {
		return []harbortest.Vulnerability{{ID: critical.id, Package: critical.pkg, Version: critical.installed, FixVersion: critical.fixed, Severity: "Critical"}}
	})
	_, d := se.push(t, "wait/bound")
	_, other := se.push(t, "wait/other")
	trivy := func(created time.Time, about digest.Digest, vulns ...trivyVuln) []byte {
		r := trivyReport(created, vulns...)
		r["ArtifactName"] = se.up.Host() + "/wait/bound@" + about.String()
		r["Metadata"] = map[string]any{"RepoDigests": []string{se.up.Host() + "/wait/bound@" + about.String()}}
		b, _ := json.Marshal(r)
		return b
	}
	// The other image's clean report, posted for this one.
	status, msg := se.postStatus(t, "/admin/v1/reports/"+d.String(), trivy(time.Now(), other, low))
	if status != http.StatusBadRequest {
		t.Fatalf("report about another image: %d %s, want 400", status, msg)
	}
	mustContain(t, "refusal", msg, "DIGEST_MISMATCH", d.String(), other.String())
	// A clean report dated tomorrow, which would stay fresh past any maxAge.
	tomorrow := time.Now().Add(24 * time.Hour).UTC()
	status, msg = se.postStatus(t, "/admin/v1/reports/"+d.String(), trivy(tomorrow, d, low))
	if status != http.StatusBadRequest {
		t.Fatalf("report from the future: %d %s, want 400", status, msg)
	}
	mustContain(t, "refusal", msg, "REPORT_INVALID", tomorrow.Format(time.RFC3339), "future")
	// Neither counted: the rule waits for its scanner, which finds the critical.
	mustContain(t, "denial", denial(t, se.env, "/v2/wait/bound/manifests/v1"), "1 critical")
	// The report about this image is taken.
	se.post(t, "/admin/v1/reports/"+d.String(), trivy(time.Now(), d, low))
	se.allowed(t, "wait/bound")
}

// TestScanCredentialKeepsManifestsAndBlobsApart: the scanner's credential opens an index's child manifests as
// manifests and their configs and layers as blobs, and never one as the other.
func TestScanCredentialKeepsManifestsAndBlobsApart(t *testing.T) {
	// The scan finds a critical: the image is denied, so only the credential opens anything of it.
	se := newScanEnv(t, func(string, digest.Digest) []harbortest.Vulnerability {
		return []harbortest.Vulnerability{{ID: critical.id, Package: critical.pkg, Version: critical.installed, FixVersion: critical.fixed, Severity: "Critical"}}
	})
	idx := se.up.PushRandomIndex(t, "wait/multi:v1")
	denial(t, se.env, "/v2/wait/multi/manifests/v1") // scanned on the pull, with a credential, through Portcullis
	reqs := se.scanner.Requests()
	if len(reqs) != 1 || !reqs[0].Pulled {
		t.Fatalf("scanner requests %+v, want one that pulled", reqs)
	}
	auth := reqs[0].Authorization
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	child := im.Manifests[0].Digest
	img, err := idx.Image(child)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()
	config, _ := img.ConfigName()

	tests := []struct {
		name, path string
		served     bool
	}{
		{"child manifest as a manifest", "/v2/wait/multi/manifests/" + child.String(), true},
		{"layer as a blob", "/v2/wait/multi/blobs/" + layer.String(), true},
		{"config as a blob", "/v2/wait/multi/blobs/" + config.String(), true},
		{"layer as a manifest", "/v2/wait/multi/manifests/" + layer.String(), false},
		{"config as a manifest", "/v2/wait/multi/manifests/" + config.String(), false},
		{"child manifest as a blob", "/v2/wait/multi/blobs/" + child.String(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := se.get(t, http.MethodGet, tt.path, "Authorization", auth)
			if served := resp.StatusCode == http.StatusOK; served != tt.served {
				t.Errorf("GET %s with the scanner's credential: %d %.200s; want served=%v", tt.path, resp.StatusCode, body, tt.served)
			}
		})
	}
}

// TestReportPostedDuringScanAndWaitCounts: a CI report posted while the gate waits for the scanner moves the facts
// epoch under the decision being made; the gate decides again instead of caching, under the new epoch, a verdict
// that never saw the report (which, with an hour's decision TTL, would ignore it for an hour).
func TestReportPostedDuringScanAndWaitCounts(t *testing.T) {
	se := newScanEnv(t, func(string, digest.Digest) []harbortest.Vulnerability {
		return []harbortest.Vulnerability{{ID: "CVE-2024-9001", Package: "openssl", Version: "3.0.1", FixVersion: "3.0.15", Severity: "Critical"}}
	}, admission.WithDecisionTTL(time.Hour, time.Hour))
	_, d := se.push(t, "wait/race")
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, se.srv.URL+"/v2/wait/race/manifests/v1", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	// The scanner takes 1.5 s; CI posts the fixed build's report meanwhile, dated after the scan it races.
	deadline := time.Now().Add(10 * time.Second)
	for len(se.scanner.Requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	clean, _ := json.Marshal(trivyReport(time.Now().Add(time.Minute), low))
	se.post(t, "/admin/v1/reports/"+d.String(), clean)
	t.Logf("pull during the scan: %d", <-first)
	// Whatever the racing pull got, the report is not ignored afterwards.
	se.allowed(t, "wait/race")
}
