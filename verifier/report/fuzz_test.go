package report

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/policy"
)

// FuzzDetect feeds arbitrary bytes to every parser: none may panic, and a
// report that parses holds only policy's Severity constants (none of them
// "none": a listed finding is at least low) and at most MaxFindings findings.
func FuzzDetect(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"SchemaVersion":2,"Results":[{"Vulnerabilities":[{"Severity":"high"}]}]}`))
	f.Add([]byte(`{"version":"2.1.0","runs":[{"results":[{"ruleId":"x","ruleIndex":-1}]}]}`))
	f.Add([]byte(`{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"tools":[]},"vulnerabilities":[{"affects":[{"ref":"urn:cdx:x#%zz"}]}]}`))
	f.Add([]byte(`{"scanner":{"result":{"scanner":{"result":{}}}},"metadata":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Detect(b)
		if err == nil {
			if len(rep.Findings) > MaxFindings {
				t.Fatalf("%d findings", len(rep.Findings))
			}
			for _, fd := range rep.Findings {
				switch fd.Severity {
				case policy.SeverityUnknown, policy.SeverityLow, policy.SeverityMedium, policy.SeverityHigh, policy.SeverityCritical:
				default:
					t.Fatalf("severity %q not normalised", fd.Severity)
				}
			}
		}
		if v, err := ParseOpenVEX(b); err == nil {
			for _, d := range v.Digests() {
				_ = v.For(d)
			}
		}
		_, _ = ImageDigests(b)
		_, _ = ParseCosignVuln(b)
		_, _ = ParseHarbor(b)
	})
}
