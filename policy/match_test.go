package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
		literal int
	}{
		{"**", []string{"a", "a/b", "a/b/c"}, nil, 0},
		{"*", []string{"a", "alpine"}, []string{"a/b"}, 0},
		{"acme/**", []string{"acme", "acme/app", "acme/team/app"}, []string{"acmex", "acme-x/app", "x/acme/app"}, 5},
		{"acme/*", []string{"acme/app"}, []string{"acme", "acme/team/app"}, 5},
		{"**/cache", []string{"cache", "x/cache", "x/y/cache"}, []string{"xcache", "cache/x"}, 5},
		{"a/**/b", []string{"a/b", "a/x/b", "a/x/y/b"}, []string{"ab", "a/b/c"}, 3},
		{"a/**/**", []string{"a", "a/b", "a/b/c"}, []string{"b"}, 2},
		{"library/alpine", []string{"library/alpine"}, []string{"library/alpine2", "library"}, 14},
		{"app-?", []string{"app-1", "app-x"}, []string{"app-", "app-10", "app-/"}, 4},
		{"team-*/app", []string{"team-a/app", "team-/app"}, []string{"team-a/b/app"}, 9},
		{"a.b_c", []string{"a.b_c"}, []string{"aXb_c"}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			g, err := compileGlob(tt.pattern, "._-")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.match {
				if !g.match(s) {
					t.Errorf("%q does not match %q", tt.pattern, s)
				}
			}
			for _, s := range tt.noMatch {
				if g.match(s) {
					t.Errorf("%q matches %q", tt.pattern, s)
				}
			}
			if g.literal != tt.literal {
				t.Errorf("literal = %d, want %d", g.literal, tt.literal)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	p := mustParse(t, `
rules:
  - name: any-acme            # glob upstream
    match: {upstream: "*", repository: "acme/**"}
  - name: ghcr-all            # exact upstream, least specific repository
    match: {upstream: ghcr.io}
  - name: ghcr-acme
    match: {upstream: ghcr.io, repository: "acme/**"}
  - name: ghcr-acme-star      # same literal count as ghcr-acme: file order breaks the tie
    match: {upstream: ghcr.io, repository: "acme/*"}
  - name: ghcr-acme-app
    match: {upstream: GHCR.io, repository: "acme/app"}
  - name: ghcr-acme-app-glob  # fewer literal characters than acme/app
    match: {upstream: ghcr.io, repository: "acme/ap?"}
  - name: gcr-mirrors
    match: {upstream: "*.gcr.io", repository: "distroless/**"}
  - name: gcr-distroless-static
    match: {upstream: "*.gcr.io", repository: "distroless/static"}
  - name: local
    match: {upstream: "localhost:5000", repository: "**"}
`)
	tests := []struct {
		upstream, repository string
		want                 string
	}{
		{"ghcr.io", "acme/app", "ghcr-acme-app"},
		{"GHCR.IO", "acme/app", "ghcr-acme-app"}, // hosts compare case-insensitively
		{"ghcr.io", "acme/api", "ghcr-acme-app-glob"},
		{"ghcr.io", "acme/web", "ghcr-acme"}, // tie with ghcr-acme-star: first in file
		{"ghcr.io", "acme/team/web", "ghcr-acme"},
		{"ghcr.io", "acme", "ghcr-acme"},
		{"ghcr.io", "other/app", "ghcr-all"},
		{"quay.io", "acme/app", "any-acme"}, // only the glob-upstream rule matches
		{"docker.io", "library/alpine", "default"},
		{"eu.gcr.io", "distroless/static", "gcr-distroless-static"},
		{"eu.gcr.io", "distroless/base", "gcr-mirrors"},
		{"gcr.io", "distroless/base", "default"}, // "*.gcr.io" needs a subdomain
		{"localhost:5000", "a/b/c", "local"},
		{"localhost:5001", "a/b/c", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.upstream+"/"+tt.repository, func(t *testing.T) {
			if got := p.Match(tt.upstream, tt.repository).Name(); got != tt.want {
				t.Errorf("Match = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMatchExactUpstreamBeatsLiteralCount(t *testing.T) {
	p := mustParse(t, `
rules:
  - {name: glob-upstream, match: {upstream: "ghcr.*", repository: "acme/team/app"}}
  - {name: exact-upstream, match: {upstream: ghcr.io, repository: "**"}}
`)
	if got := p.Match("ghcr.io", "acme/team/app").Name(); got != "exact-upstream" {
		t.Errorf("Match = %q, want exact-upstream", got)
	}
}

// A policy that forgets its default section must not admit what no rule names: the gate fails closed.
func TestMatchNoDefaultSection(t *testing.T) {
	p := mustParse(t, "rules:\n  - {name: a, match: {repository: a}}\n")
	r := p.Match("docker.io", "b")
	d := r.Evaluate(Facts{Image: "docker.io/b@sha256:" + fmt.Sprintf("%064x", 1)})
	if r.Name() != "default" || d.Allowed || !strings.Contains(d.Message, "no rule matches this repository and the policy has no default: section") {
		t.Errorf("default rule %q decided %+v, want a denial naming the missing default section", r.Name(), d)
	}
	if p.HasDefault() {
		t.Error("HasDefault is true for a policy without a default section")
	}
	if q := mustParse(t, "default: {}\n"); !q.HasDefault() || !q.Default().Evaluate(Facts{}).Allowed {
		t.Error("an empty default section must admit (it says so in so many words)")
	}
	if p.Hash() == mustParse(t, "rules:\n  - {name: a, match: {repository: a}}\ndefault: {}\n").Hash() {
		t.Error("a policy without a default section hashes like one with an admitting default")
	}
	if got := len(p.Rules()); got != 1 {
		t.Errorf("Rules() has %d rules, want 1", got)
	}
}
