package imageref

import (
	"strings"
	"testing"
)

func TestGrammar(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"library/alpine", true}, {"a__b/c--d/e.f_g", true}, {strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false}, {"Acme/app", false}, {"acme/app/", false}, {"localhost:5000/app", false},
		{"acme//app", false}, {"-acme", false}, {"acme_/app", false},
	} {
		if got := IsRepository(tc.path); got != tc.ok {
			t.Errorf("IsRepository(%.40q) = %v", tc.path, got)
		}
	}
	for tag, ok := range map[string]bool{"v1.2": true, "_x": true, "latest": true, strings.Repeat("a", 128): true,
		strings.Repeat("a", 129): false, ".x": false, "a b": false, "": false, "a:b": false} {
		if got := IsTag(tag); got != ok {
			t.Errorf("IsTag(%.20q) = %v", tag, got)
		}
	}
	for name, want := range map[string][2]string{
		"ghcr.io/acme/app":    {"ghcr.io", "acme/app"},
		"localhost/app":       {"localhost", "app"},
		"registry:5000/a/b":   {"registry:5000", "a/b"},
		"acme/app":            {"", "acme/app"},
		"alpine":              {"", "alpine"},
		"Bad.Host_name/app/x": {"", "Bad.Host_name/app/x"},
	} {
		if p, rest := SplitName(name); p != want[0] || rest != want[1] {
			t.Errorf("SplitName(%q) = %q, %q", name, p, rest)
		}
	}
	if r, err := UpstreamRepository("docker.io", "alpine"); err != nil || r != "library/alpine" {
		t.Errorf("docker.io alpine = %q, %v", r, err)
	}
	if r, err := UpstreamRepository("ghcr.io", "alpine"); err != nil || r != "alpine" {
		t.Errorf("ghcr.io alpine = %q, %v", r, err)
	}
	if _, err := UpstreamRepository("ghcr.io", "Alpine"); err == nil {
		t.Error("upper case accepted")
	}
}
