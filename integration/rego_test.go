package integration

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/containerdtest"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/regotest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/policy/rego"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// regoMediums is a module on the scan facts that the built-in thresholds cannot say: mediums are admitted, but
// not more than three.
const regoMediums = `      package acme.edge

      deny contains msg if {
        input.scan.counts.medium > 3
        msg := sprintf("%d medium findings, at most 3 in internet-facing repositories", [input.scan.counts.medium])
      }
`

// regoPolicy has the same signature and scan gate in every rule; the Rego module is what differs.
const regoPolicy = `trust:
  release: {key: release.pub}
  scanner: {key: scanner.pub}
rules:
  - name: builtin-only
    match: {repository: "builtin/**"}
    signedBy: {anyOf: [release]}
    scan: {maxSeverity: medium, signedBy: {anyOf: [scanner]}}
  - name: edge
    match: {repository: "edge/**"}
    signedBy: {anyOf: [release]}
    scan: {maxSeverity: medium, signedBy: {anyOf: [scanner]}}
    rego: |
` + regoMediums + `  - name: edge-warn
    match: {repository: "warn/**"}
    mode: warn
    signedBy: {anyOf: [release]}
    scan: {maxSeverity: medium, signedBy: {anyOf: [scanner]}}
    rego: |
` + regoMediums + `  - name: provenance
    match: {repository: "prov/**"}
    signedBy: {anyOf: [release]}
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
        signedBy: {anyOf: [release]}
    rego: |
      package acme.provenance

      deny contains msg if {
        some a in input.attestations
        a.predicateType == "https://slsa.dev/provenance/v1"
        a.predicate.runDetails.builder.id != "https://ci.acme.example/builder"
        msg := sprintf("%s:%s built by %v, not by https://ci.acme.example/builder", [input.image.repository, input.image.tag, a.predicate.runDetails.builder.id])
      }
  - name: slow
    match: {repository: "slow/**"}
    signedBy: {anyOf: [release]}
    rego: |` + regoLoop + `  - name: slow-allowed
    match: {repository: "slowok/**"}
    signedBy: {anyOf: [release]}
    onError: allow
    rego: |` + regoLoop + `default:
  signedBy: {anyOf: [release]}
`

// regoLoop runs 10^10 steps: far past the 100 ms bound.
const regoLoop = `
      package acme.slow

      deny contains "never" if {
        some i in numbers.range(1, 100000)
        some j in numbers.range(1, 100000)
        i * j == -1
      }
`

func medium(n int) []trivyVuln {
	var out []trivyVuln
	for i := range n {
		out = append(out, trivyVuln{"CVE-2024-71" + string(rune('0'+i)), "lib" + string(rune('a'+i)), "1.0", "1.1", "MEDIUM"})
	}
	return out
}

type regoEnv struct {
	*env
	bin              string
	release, scanner keyPair
	auditor          *admission.Auditor
}

func newRegoEnv(t *testing.T) *regoEnv {
	t.Helper()
	re := &regoEnv{bin: cosigntest.Binary(t), release: cosignKey(t), scanner: cosignKey(t)}
	journal, err := cache.OpenFileJournal(t.TempDir(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	re.auditor = admission.NewAuditor(journal, testLogger(t))
	re.env = newEnv(t, withPolicy(regoPolicy, re.files(t), admission.WithAudit(re.auditor)))
	return re
}

func (re *regoEnv) files(t testing.TB) map[string][]byte {
	return map[string][]byte{"release.pub": re.release.pubPEM(t), "scanner.pub": re.scanner.pubPEM(t)}
}

// push pushes repo:v1, signs it with the release key and returns its digest reference on the upstream.
func (re *regoEnv) push(t testing.TB, repo string) (string, digest.Digest) {
	t.Helper()
	img := re.up.PushRandomImage(t, repo+":v1", 1, 1024)
	h, _ := img.Digest()
	ref := re.up.Ref(repo + "@" + h.String())
	cosigntest.Sign(t, re.bin, ref, re.release.priv)
	return ref, digest.Digest(h.String())
}

// scanned pushes and signs repo:v1 with a vulnerability attestation from the scanner listing vulns.
func (re *regoEnv) scanned(t testing.TB, repo string, vulns ...trivyVuln) digest.Digest {
	t.Helper()
	ref, d := re.push(t, repo)
	cosigntest.Attest(t, re.bin, ref, re.scanner.priv, "vuln", vulnPredicate(time.Now().Add(-time.Hour), vulns...))
	return d
}

func (re *regoEnv) subject(t testing.TB, repo string, d digest.Digest) admission.Subject {
	t.Helper()
	raw, err := crane.Manifest(re.up.Ref(repo+"@"+d.String()), crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := crane.Head(re.up.Ref(repo+"@"+d.String()), crane.Insecure)
	return admission.Subject{Upstream: re.up.Host(), Repository: repo, Tag: "v1", Digest: d, MediaType: string(mt.MediaType), Manifest: raw}
}

// TestRegoScanCounts: a Rego deny on input.scan.counts.medium > 3 refuses a cosign-signed image whose signed
// vulnerability report the built-in thresholds admit (maxSeverity: medium), with the module's message in the 403
// body, explain and the audit log; three mediums pass.
func TestRegoScanCounts(t *testing.T) {
	re := newRegoEnv(t)
	re.scanned(t, "builtin/app", medium(4)...)
	four := re.scanned(t, "edge/four", medium(4)...)
	re.scanned(t, "edge/three", medium(3)...)
	const msg = "rego: 4 medium findings, at most 3 in internet-facing repositories"

	t.Run("built-in thresholds admit four mediums", func(t *testing.T) {
		if _, err := crane.Pull(re.ref("builtin/app:v1"), pullOpts()...); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the module refuses them, its message in the 403", func(t *testing.T) {
		mustContain(t, "denial", denial(t, re.env, "/v2/edge/four/manifests/v1"), `denied by rule "edge"`, msg)
	})
	t.Run("three mediums pass", func(t *testing.T) {
		if _, err := crane.Pull(re.ref("edge/three:v1"), pullOpts()...); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("explain lists the message as a failure of the rego check", func(t *testing.T) {
		x, err := re.gate.Explain(context.Background(), re.subject(t, "edge/four", four))
		if err != nil {
			t.Fatal(err)
		}
		pd := x.Evaluation.Decision
		if pd.Allowed || !containsString(pd.Failures, msg) {
			t.Fatalf("explain: allowed %v, failures %q", pd.Allowed, pd.Failures)
		}
		var found bool
		for _, c := range pd.Checks {
			if c.Requirement == "rego" {
				found = !c.Passed
			}
		}
		if !found {
			t.Errorf("no failed rego check in %+v", pd.Checks)
		}
	})
	t.Run("the audit log records the message", func(t *testing.T) {
		recs, err := re.auditor.Query(context.Background(), admission.AuditQuery{Kind: admission.AuditDenial, Image: "edge/four"})
		if err != nil || len(recs) == 0 {
			t.Fatalf("audit: %v %v", recs, err)
		}
		mustContain(t, "audit reason", recs[0].Reason, msg)
	})
}

func containsString(list []string, want string) bool {
	for _, s := range list {
		if strings.Contains(s, want) {
			return true
		}
	}
	return false
}

// TestRegoAttestationPredicate: a module on an attestation's predicate (runDetails.builder.id) admits the image
// our builder made and refuses the other, naming the builder and the image (input.image); an image without provenance fails the built-in
// attestation requirement before the module is asked.
func TestRegoAttestationPredicate(t *testing.T) {
	re := newRegoEnv(t)
	const slsa = "https://slsa.dev/provenance/v1"
	ours := []byte(`{"buildDefinition":{"buildType":"x"},"runDetails":{"builder":{"id":"https://ci.acme.example/builder"}}}`)
	theirs := []byte(`{"buildDefinition":{"buildType":"x"},"runDetails":{"builder":{"id":"https://evil.example/builder"}}}`)
	ref, _ := re.push(t, "prov/ours")
	cosigntest.Attest(t, re.bin, ref, re.release.priv, slsa, ours)
	ref, _ = re.push(t, "prov/theirs")
	cosigntest.Attest(t, re.bin, ref, re.release.priv, slsa, theirs)
	re.push(t, "prov/none")

	if _, err := crane.Pull(re.ref("prov/ours:v1"), pullOpts()...); err != nil {
		t.Fatalf("our builder's image: %v", err)
	}
	mustContain(t, "denial", denial(t, re.env, "/v2/prov/theirs/manifests/v1"),
		"rego: prov/theirs:v1 built by https://evil.example/builder, not by https://ci.acme.example/builder")
	mustContain(t, "denial", denial(t, re.env, "/v2/prov/none/manifests/v1"), "attestation "+slsa)
}

// TestRegoWarnMode: in warn mode the module's message is served as a Warning header, not a 403.
func TestRegoWarnMode(t *testing.T) {
	re := newRegoEnv(t)
	re.scanned(t, "warn/app", medium(5)...)
	resp, _ := re.get(t, http.MethodGet, "/v2/warn/app/manifests/v1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("warn mode: %d", resp.StatusCode)
	}
	mustContain(t, "Warning", resp.Header.Get("Warning"), "299 - ", "rego: 5 medium findings, at most 3", "warn mode")
}

// TestRegoTimeBound: a module that loops past the time bound (100 ms) is the rule's onError: denied by default,
// admitted with onError: allow, both saying why.
func TestRegoTimeBound(t *testing.T) {
	re := newRegoEnv(t)
	re.push(t, "slow/app")
	re.push(t, "slowok/app")
	start := time.Now()
	mustContain(t, "denial", denial(t, re.env, "/v2/slow/app/manifests/v1"), "rego: could not decide: evaluation passed its time bound (100ms)")
	if took := time.Since(start); took > time.Minute {
		t.Errorf("the denial took %s", took)
	}
	resp, _ := re.get(t, http.MethodGet, "/v2/slowok/app/manifests/v1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("onError: allow: %d", resp.StatusCode)
	}
}

// TestRegoRefusedAtLoad: a module that calls http.send (or net.*, opa.runtime) does not load, so no policy with one
// can be put in force; the error names the policy file's line.
func TestRegoRefusedAtLoad(t *testing.T) {
	engine, err := rego.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{`http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).body`, `net.lookup_ip_addr("example.com")`, `opa.runtime().env`} {
		doc := "default:\n  rego: |\n    package p\n\n    deny contains msg if {\n      msg := " + call + "\n    }\n"
		_, err := policy.Parse([]byte(doc), "policy.yaml", nil, policy.WithModuleCompiler(engine))
		if err == nil || !strings.Contains(err.Error(), "policy.yaml:6: default.rego:") || !strings.Contains(err.Error(), "is not available") {
			t.Errorf("%s: %v", call, err)
		}
	}
}

// TestRegoCachedDecisionEvaluatesNothing: a Rego rule costs nothing on a cached decision: the module runs once on
// the cold decision, admitted or denied, and never on the pulls the cache answers.
func TestRegoCachedDecisionEvaluatesNothing(t *testing.T) {
	re := newRegoEnv(t)
	four := re.scanned(t, "edge/four", medium(4)...)
	three := re.scanned(t, "edge/three", medium(3)...)
	engine, err := rego.New()
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	files := re.files(t)
	pol, err := policy.Parse([]byte(regoPolicy), "policy.yaml", func(name string) ([]byte, error) { return files[name], nil },
		policy.WithModuleCompiler(regotest.CountingCompiler{ModuleCompiler: engine, N: &n}))
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(pol.TrustRoots())
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(re.up.Host(), re.up.URL(), benchClient...)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := admission.NewEvidence(v, map[string]admission.Endpoint{re.up.Host(): client}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := admission.NewGate(pol, ev, cache.NewMemory(), admission.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		repo  string
		d     digest.Digest
		allow bool
	}{{"edge/four", four, false}, {"edge/three", three, true}} {
		t.Run(tc.repo, func(t *testing.T) {
			s := re.subject(t, tc.repo, tc.d)
			before := n.Load()
			for i := range 5 {
				v, err := g.Admit(context.Background(), s)
				if err != nil || v.Allowed != tc.allow {
					t.Fatalf("pull %d: %+v %v", i, v, err)
				}
			}
			if got := n.Load() - before; got != 1 {
				t.Errorf("5 pulls evaluated the module %d times, want 1 (the cold decision)", got)
			}
		})
	}
}

// TestContainerdRegoDenialShowsMessage: `ctr pull` of an image a Rego module denies fails with the module's message
// (containerd shows the 403's reason phrase), and the image the module admits is pulled.
func TestContainerdRegoDenialShowsMessage(t *testing.T) {
	d := containerdtest.Start(t)
	re := newRegoEnv(t)
	re.scanned(t, "edge/four", medium(4)...)
	re.scanned(t, "edge/three", medium(3)...)
	hosts := containerdtest.WriteHostsDir(t, re.up.Host(), re.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := d.Pull(ctx, re.up.Ref("edge/three:v1"), hosts, ""); err != nil {
		t.Fatalf("three mediums: %v\n%s", err, out)
	}
	out, err := d.Pull(ctx, re.up.Ref("edge/four:v1"), hosts, "")
	if err == nil {
		t.Fatalf("four mediums pulled:\n%s", out)
	}
	mustContain(t, "ctr output", out, "403 portcullis: ", `denied by rule "edge"`, "rego: 4 medium findings, at most 3 in internet-facing repositories")
	t.Logf("ctr shows: %s", strings.TrimSpace(out))
}
