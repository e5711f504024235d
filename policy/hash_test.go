package policy

import (
	"strings"
	"testing"
)

func TestHash(t *testing.T) {
	base := mustParse(t, fullDoc).Hash()
	if len(base) != 64 || strings.Trim(base, "0123456789abcdef") != "" {
		t.Fatalf("Hash = %q, want 64 lower-case hex digits", base)
	}

	same := map[string]string{
		"parsed again":      fullDoc,
		"comments":          "# a comment\n" + strings.ReplaceAll(fullDoc, "rules:\n", "rules: # the rules\n"),
		"explicit defaults": strings.Replace(fullDoc, "default:\n", "default:\n  mode: enforce\n  onError: deny\n  keepLastGood: false\n", 1),
		"flow style": strings.Replace(fullDoc, "    match: {upstream: ghcr.io, repository: \"acme/**\"}\n",
			"    match:\n      upstream: ghcr.io\n      repository: acme/**\n", 1),
	}
	// Move the release root to the end of the trust section.
	same["trust order"] = strings.Replace(strings.Replace(fullDoc, "  release: {key: keys/release.pub}\n", "", 1),
		"    ignoreSCT: true\n", "    ignoreSCT: true\n  release: {key: keys/release.pub}\n", 1)
	for name, doc := range same {
		t.Run("same/"+name, func(t *testing.T) {
			if got := mustParse(t, doc).Hash(); got != base {
				t.Errorf("Hash changed: %s, want %s", got, base)
			}
		})
	}

	changed := map[string]string{
		"mode":             strings.Replace(fullDoc, "mode: warn", "mode: audit", 1),
		"rule order":       strings.Replace(fullDoc, "rules:\n", "rules:\n  - {name: first, match: {repository: x}}\n", 1),
		"allowlist until":  strings.Replace(fullDoc, "{id: CVE-2024-3094, until: 2026-12-31", "{id: CVE-2024-3094, until: 2027-01-01", 1),
		"global allowlist": strings.Replace(fullDoc, "CVE-2023-0001", "CVE-2023-0002", 1),
		"maxAge":           strings.Replace(fullDoc, "maxAge: 7d", "maxAge: 8d", 1),
		"condition":        strings.Replace(fullDoc, `equals: "https://github.com/acme/builder"`, `matches: "https://github.com/acme/builder"`, 1),
		"scanner url":      strings.Replace(fullDoc, "http://harbor-scanner-trivy:8080", "http://harbor-scanner-trivy:8081", 1),
		"identity":         strings.Replace(fullDoc, "subjectRegExp: '^https://github.com/acme/'", "subjectRegExp: '^https://github.com/acme/x'", 1),
		"inline key":       strings.Replace(fullDoc, `\nMFkw\n`, `\nMFkx\n`, 1),
		"ignoreTlog":       strings.Replace(fullDoc, "  release: {key: keys/release.pub}", "  release: {key: keys/release.pub, ignoreTlog: false}", 1),
	}
	for name, doc := range changed {
		t.Run("changed/"+name, func(t *testing.T) {
			if got := mustParse(t, doc).Hash(); got == base {
				t.Errorf("Hash did not change")
			}
		})
	}

	t.Run("changed/key file", func(t *testing.T) {
		fs := files{}
		for k, v := range testFiles {
			fs[k] = v
		}
		fs["keys/release.pub"] = strings.Replace(testKey, "kNBb", "kNBc", 1)
		p, err := Parse([]byte(fullDoc), "p.yaml", fs.read)
		if err != nil {
			t.Fatal(err)
		}
		if p.Hash() == base {
			t.Errorf("Hash did not change with the key file")
		}
	})
	t.Run("changed/trusted root file", func(t *testing.T) {
		fs := files{}
		for k, v := range testFiles {
			fs[k] = v
		}
		fs["trusted_root.json"] = `{"mediaType": "x"}`
		p, err := Parse([]byte(fullDoc), "p.yaml", fs.read)
		if err != nil {
			t.Fatal(err)
		}
		if p.Hash() == base {
			t.Errorf("Hash did not change with the trusted root")
		}
	})
	t.Run("same/file name", func(t *testing.T) {
		p, err := Parse([]byte(fullDoc), "other/../p.yaml", func(name string) ([]byte, error) {
			return testFiles.read(strings.TrimPrefix(name, "other/../"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if p.Hash() != base {
			t.Errorf("Hash depends on the file name")
		}
	})
}
