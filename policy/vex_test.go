package policy

import "testing"

func TestVEXStatementCovers(t *testing.T) {
	f := Finding{ID: "CVE-2024-1", Package: "golang.org/x/crypto", InstalledVersion: "v0.21.0"}
	tests := []struct {
		name string
		s    VEXStatement
		want bool
	}{
		{"whole image", VEXStatement{IDs: []string{"CVE-2024-1"}}, true},
		{"id by alias, any case", VEXStatement{IDs: []string{"GO-2024-9", " cve-2024-1 "}}, true},
		{"another vulnerability", VEXStatement{IDs: []string{"CVE-2024-2"}}, false},
		{"no ids", VEXStatement{}, false},
		{"package by name", VEXStatement{IDs: []string{"CVE-2024-1"}, Packages: []VEXPackage{{Name: "golang.org/x/crypto"}}}, true},
		{"one of several packages", VEXStatement{IDs: []string{"CVE-2024-1"}, Packages: []VEXPackage{{Name: "x"}, {Name: "golang.org/x/crypto", Version: "0.21.0"}}}, true},
		{"another package", VEXStatement{IDs: []string{"CVE-2024-1"}, Packages: []VEXPackage{{Name: "golang.org/x/net"}}}, false},
		{"another version", VEXStatement{IDs: []string{"CVE-2024-1"}, Packages: []VEXPackage{{Name: "golang.org/x/crypto", Version: "v0.22.0"}}}, false},
		{"a package with no name covers nothing", VEXStatement{IDs: []string{"CVE-2024-1"}, Packages: []VEXPackage{{}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Covers(f); got != tt.want {
				t.Errorf("Covers = %v, want %v", got, tt.want)
			}
		})
	}
	for in, want := range map[string]string{"v1.2": "1.2", "V1": "1", "v": "v", "version": "version", "1.0": "1.0"} {
		if got := trimV(in); got != want {
			t.Errorf("trimV(%q) = %q, want %q", in, got, want)
		}
	}
}
