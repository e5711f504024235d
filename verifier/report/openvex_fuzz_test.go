package report

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// FuzzOpenVEX: any bytes parse or fail with an error wrapping ErrMalformed, ErrUnsupported or ErrTooLarge. A
// document that parses names only valid digests, says something about each of them, keeps each image's statements
// in time order with a known status, and round trips: the statements For one image, written back as an OpenVEX
// v0.2.0 document, read back as the same vulnerabilities, statuses, times and packages.
func FuzzOpenVEX(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "openvex.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(vexFuzzSeed)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseOpenVEX(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %q wraps none of ErrMalformed, ErrUnsupported, ErrTooLarge", err)
			}
			return
		}
		for _, d := range v.Digests() {
			if d.Validate() != nil {
				t.Fatalf("Digests returned an invalid digest %q", d)
			}
			stmts := v.For(d)
			if len(stmts) == 0 {
				t.Fatalf("no statement For %s, which Digests lists", d)
			}
			for i, st := range stmts {
				switch st.Status {
				case policy.VEXNotAffected, policy.VEXAffected, policy.VEXFixed, policy.VEXUnderInvestigation:
				default:
					t.Fatalf("status %q", st.Status)
				}
				if len(st.IDs) == 0 {
					t.Fatalf("statement %d names no vulnerability", i)
				}
				if i > 0 && st.Time.Before(stmts[i-1].Time) {
					t.Fatalf("statements out of time order: %s before %s", stmts[i-1].Time, st.Time)
				}
			}
			stmts = slices.DeleteFunc(stmts, func(st policy.VEXStatement) bool { return !vexRoundTrippable(st) })
			if len(stmts) == 0 {
				continue
			}
			doc := vexWrite(t, d, stmts)
			back, err := OpenVEXFor(doc, d)
			if err != nil {
				t.Fatalf("re-reading %s: %v", doc, err)
			}
			if len(back) != len(stmts) {
				t.Fatalf("round trip: %d statements, want %d\n%s", len(back), len(stmts), doc)
			}
			for i := range back {
				a, b := stmts[i], back[i]
				if a.Status != b.Status || !a.Time.Equal(b.Time) || !slices.Equal(a.IDs, b.IDs) || !slices.Equal(a.Packages, b.Packages) {
					t.Fatalf("round trip of statement %d:\n got %+v\nwant %+v\n%s", i, b, a, doc)
				}
			}
		}
	})
}

// vexFuzzSeed is a v0.2.0 document with subcomponents, an alias, bare ids and dated statements about one image.
var vexFuzzSeed = []byte(`{"@context":"https://openvex.dev/ns/v0.2.0","timestamp":"2026-01-01T00:00:00Z","statements":[
{"vulnerability":{"name":"CVE-2024-3094","aliases":["GHSA-x"]},"products":[{"@id":"pkg:oci/app@sha256%3A` + digest.FromString("a").Encoded() + `","subcomponents":[{"@id":"pkg:deb/debian/xz-utils@5.6.0"}]}],"status":"not_affected","justification":"vulnerable_code_not_present","timestamp":"2026-01-02T00:00:00Z"},
{"vulnerability":"CVE-2024-1","products":["` + digest.FromString("a").String() + `"],"status":"affected"},
{"vulnerability":{"@id":"https://nvd.example/CVE-2024-2"},"products":[{"@id":"` + digest.FromString("a").String() + `","subcomponents":["openssl"]}],"status":"fixed","last_updated":"2026-01-03T00:00:00.5+02:00"}]}`)

// vexRoundTrippable reports whether vexWrite can express st: package names that are not package URLs and carry no
// version read back as they are; a versioned package would have to be written as a package URL, whose name part the
// reader normalises.
func vexRoundTrippable(st policy.VEXStatement) bool {
	for _, p := range st.Packages {
		if p.Version != "" {
			return false
		}
		if _, ok := parsePURL(p.Name); ok {
			return false
		}
	}
	return true
}

// vexWrite writes stmts as an OpenVEX v0.2.0 document about the image d.
func vexWrite(t *testing.T, d digest.Digest, stmts []policy.VEXStatement) []byte {
	t.Helper()
	type sub struct {
		ID string `json:"@id"`
	}
	type product struct {
		ID            string `json:"@id"`
		Subcomponents []sub  `json:"subcomponents,omitempty"`
	}
	type vuln struct {
		Name    string   `json:"name"`
		Aliases []string `json:"aliases,omitempty"`
	}
	type statement struct {
		Vulnerability vuln      `json:"vulnerability"`
		Products      []product `json:"products"`
		Status        string    `json:"status"`
		Timestamp     string    `json:"timestamp,omitempty"`
	}
	doc := struct {
		Context    string      `json:"@context"`
		Statements []statement `json:"statements"`
	}{Context: "https://openvex.dev/ns/v0.2.0"}
	for _, st := range stmts {
		p := product{ID: d.String()}
		for _, pk := range st.Packages {
			p.Subcomponents = append(p.Subcomponents, sub{ID: pk.Name})
		}
		s := statement{Vulnerability: vuln{Name: st.IDs[0], Aliases: st.IDs[1:]}, Products: []product{p}, Status: st.Status}
		if !st.Time.IsZero() {
			s.Timestamp = st.Time.UTC().Format(time.RFC3339Nano)
		}
		doc.Statements = append(doc.Statements, s)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
