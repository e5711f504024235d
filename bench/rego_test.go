package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/regotest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/policy/rego"
)

// regoModule50 is a 50-line module of the kind platform teams write: provenance from our builder, a fresh base,
// a cap on mediums in unwaived findings, a blocklist of packages.
const regoModule50 = `package bench.edge

builder := "https://github.com/acme/builder/.github/workflows/release.yml@refs/heads/main"
blocked := {"log4j-core", "xz-utils", "event-stream"}

provenance := [a.predicate |
	some a in input.attestations
	a.predicateType == "https://slsa.dev/provenance/v1"
]

deny contains "no SLSA provenance" if count(provenance) == 0

deny contains msg if {
	some p in provenance
	p.runDetails.builder.id != builder
	msg := sprintf("built by %v, not by our builder", [p.runDetails.builder.id])
}

deny contains msg if {
	some p in provenance
	some dep in p.buildDefinition.resolvedDependencies
	dep.annotations.role == "base"
	age := time.parse_rfc3339_ns(input.now) - time.parse_rfc3339_ns(dep.annotations.created)
	age > ((90 * 24) * 3600) * 1000000000
	msg := sprintf("base image %v is older than 90 days", [dep.name])
}

deny contains msg if {
	input.scan.counts.medium > 3
	msg := sprintf("%d medium findings, at most 3", [input.scan.counts.medium])
}

deny contains msg if {
	some f in input.scan.findings
	not f.waived
	f.package in blocked
	msg := sprintf("%s is blocked (%s)", [f.package, f.id])
}

unfixed := [f.id |
	some f in input.scan.findings
	f.severity in {"critical", "high"}
	f.fixedVersion == ""
	not f.waived
]

deny contains msg if {
	count(unfixed) > 5
	msg := sprintf("%d unfixed high or critical findings", [count(unfixed)])
}
`

// benchRego: what a Rego rule adds to a cold decision (Rule.Evaluate with and without a 50-line module over the
// same facts: a signature, an SLSA provenance attestation and a 200-finding scan report), and that a cached decision
// evaluates no module at all (evaluations counted through the engine).
func benchRego(t *testing.T, rep *report) {
	if n := strings.Count(regoModule50, "\n"); n != 50 {
		t.Fatalf("the module has %d lines, want 50", n)
	}
	const base = "trust:\n  release: {keyData: %q}\nrules:\n  - name: edge\n    match: {repository: \"bench/**\"}\n    signedBy: {anyOf: [release]}\n" +
		"    attestations: [{predicateType: https://slsa.dev/provenance/v1, signedBy: {anyOf: [release]}}]\n    scan: {maxSeverity: critical}\n"
	key := benchKeyPEM(t)
	engine, err := rego.New()
	if err != nil {
		t.Fatal(err)
	}
	var evals atomic.Int64
	opts := policy.WithModuleCompiler(regotest.CountingCompiler{ModuleCompiler: engine, N: &evals})
	without, err := policy.Parse([]byte(fmt.Sprintf(base, key)), "policy.yaml", nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	withDoc := fmt.Sprintf(base, key) + "    rego: |\n" + indent(regoModule50, "      ")
	with, err := policy.Parse([]byte(withDoc), "policy.yaml", nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	facts := regoFacts()
	measure := func(p *policy.Policy) time.Duration {
		r := p.Match("ghcr.io", "bench/app")
		var lat []time.Duration
		for range 2000 {
			start := time.Now()
			d := r.Evaluate(facts)
			lat = append(lat, time.Since(start))
			if !d.Allowed {
				t.Fatalf("denied: %v", d.Failures)
			}
		}
		return percentile(lat, 50)
	}
	const row = "Rego module, 50 lines, cold decision (Rule.Evaluate, 200 findings)"
	pw, p0 := measure(with), measure(without)
	rep.add(row, sysGated, "p50 us with module", us(pw), true)
	rep.add(row, sysGated, "p50 us without", us(p0), true)
	rep.check("Rego: a 50-line module on a cold decision", "<= 1 ms", fmt.Sprintf("%.0f us added (%.0f us with, %.0f us without)", us(pw-p0), us(pw), us(p0)),
		pw-p0 <= time.Millisecond)

	// Cached: the gate decides once; every later Admit is answered from the decision cache.
	g, err := admission.NewGate(with, regoEvidence{facts}, cache.NewMemory(), admission.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	s := admission.Subject{Upstream: "ghcr.io", Repository: "bench/app", Digest: digest.FromString("bench"), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Manifest: []byte(`{"schemaVersion":2}`)}
	s.Digest = digest.FromBytes(s.Manifest)
	if _, err := g.Admit(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	before := evals.Load()
	for range n {
		if v, err := g.Admit(context.Background(), s); err != nil || !v.Allowed {
			t.Fatalf("cached admit: %+v %v", v, err)
		}
	}
	cached := evals.Load() - before
	rep.add("Rego module evaluations per cached decision", sysGated, "evaluations", float64(cached)/n, true)
	rep.check("Rego: a cached decision evaluates no module", "0", fmt.Sprintf("%d over %d cached Admits", cached, n), cached == 0)
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pre + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// regoFacts: a verified signature, our builder's provenance with a fresh base, and 200 findings, none above the
// module's limits.
func regoFacts() policy.Facts {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	pred, _ := json.Marshal(map[string]any{
		"runDetails": map[string]any{"builder": map[string]any{"id": "https://github.com/acme/builder/.github/workflows/release.yml@refs/heads/main"}},
		"buildDefinition": map[string]any{"resolvedDependencies": []any{
			map[string]any{"name": "base", "annotations": map[string]any{"role": "base", "created": "2026-11-01T00:00:00Z"}},
		}},
	})
	rep := &policy.ScanReport{Source: policy.SourceCI, Scanner: "Trivy", ScanTime: now.Add(-time.Hour)}
	sev := []policy.Severity{"low", "low", "unknown", "medium", "low"}
	for i := range 200 {
		s := sev[i%len(sev)]
		if s == "medium" && i > 15 {
			s = "low"
		}
		rep.Findings = append(rep.Findings, policy.Finding{ID: fmt.Sprintf("CVE-2026-%04d", i), Severity: s, Package: fmt.Sprintf("pkg%d", i),
			InstalledVersion: "1.0", FixedVersion: "1.1"})
	}
	return policy.Facts{Now: now, Image: "ghcr.io/bench/app@sha256:...",
		Ref:          policy.ImageRef{Upstream: "ghcr.io", Repository: "bench/app", Tag: "v1", Digest: digest.FromString("bench")},
		Signatures:   map[string]policy.SignatureResult{"release": {Verified: true}},
		Attestations: []policy.Attestation{{PredicateType: "https://slsa.dev/provenance/v1", SignedBy: []string{"release"}, Predicate: pred}},
		Scan:         rep}
}

// regoEvidence hands the gate the same facts every time.
type regoEvidence struct{ f policy.Facts }

func (e regoEvidence) Gather(context.Context, admission.Subject, policy.Requirements, admission.GatherOptions) (policy.Facts, error) {
	return e.f, nil
}

// benchKeyPEM is a fresh ECDSA P-256 public key, PEM: the policy's trust root (no signature is verified here).
func benchKeyPEM(t *testing.T) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
