package policy

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzParse(f *testing.F) {
	for _, doc := range []string{fullDoc, evalDoc, scanPolicy, "", "rules: []\n", "default: {mode: warn}\n", trustHeader} {
		f.Add(doc)
	}
	paths, _ := filepath.Glob("../configs/policies/*.yaml")
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	facts := Facts{
		Now:   time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
		Image: testImage,
		Signatures: map[string]SignatureResult{
			"release": {Verified: true}, "ci": {Reason: "no signatures found"},
		},
		Attestations: []Attestation{
			{PredicateType: slsa, SignedBy: []string{"github-ci"}, Predicate: []byte(goodProvenance)},
			{PredicateType: slsa, SignedBy: []string{"release"}, Predicate: []byte(`[1, {"a": null}]`)},
		},
		Scan: report("scanner", 48*time.Hour, finding("CVE-2024-3094", "critical", "xz", "5.6.2"), finding("CVE-1", "weird", "a", "")),
	}
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := Parse([]byte(doc), "p.yaml", testFiles.read)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			return
		}
		if len(p.Hash()) != 64 {
			t.Fatalf("Hash = %q", p.Hash())
		}
		rules := append(p.Rules(), p.Default())
		for _, r := range rules {
			up, repo := r.Pattern()
			_ = p.Match(up, repo)
			_ = r.Requirements().Roots()
			d := r.Evaluate(facts)
			if d.Message == "" || d.Allowed != (len(d.Failures) == 0 || r.Mode() != ModeEnforce) {
				t.Fatalf("inconsistent decision %+v", d)
			}
			checksAgree(t, d)
			_ = r.Evaluate(Facts{})
		}
		for _, name := range []string{"docker.io/library/alpine", "ghcr.io/acme/app"} {
			if p.Match(name[:len("docker.io")], name) == nil {
				t.Fatal("Match returned nil")
			}
		}
	})
}
