package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNotaryRoot(t *testing.T) {
	tests := []struct {
		name    string
		root    string
		want    Notary
		wantGUN string // for upstream docker.io, repository library/app
	}{
		{
			name:    "defaults",
			root:    "{server: https://notary.example/, rootKeys: [keys/release.pub]}",
			want:    Notary{Server: "https://notary.example", RootKeysPEM: [][]byte{[]byte(testKey)}, GUN: DefaultNotaryGUN},
			wantGUN: "docker.io/library/app",
		},
		{
			name: "certificate, delegations and a gun",
			root: "{server: https://n, rootKeys: [cert.pem], delegations: [targets/releases, targets], gun: 'hub.acme/{repository}'}",
			want: Notary{Server: "https://n", RootKeysPEM: [][]byte{[]byte(testFiles["cert.pem"])},
				Delegations: []string{"targets/releases", "targets"}, GUN: "hub.acme/{repository}"},
			wantGUN: "hub.acme/library/app",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, "trust:\n  dct:\n    notary: "+tt.root+"\ndefault:\n  signedBy: {anyOf: [dct]}\n")
			got := p.TrustRoots()["dct"].Notary
			if got == nil {
				t.Fatal("the root has no Notary")
			}
			if diff := cmp.Diff(tt.want, *got); diff != "" {
				t.Errorf("Notary (-want +got):\n%s", diff)
			}
			if g := got.CollectionFor("docker.io", "library/app"); g != tt.wantGUN {
				t.Errorf("CollectionFor = %q, want %q", g, tt.wantGUN)
			}
		})
	}
}

// TestNotaryRootHash checks that what a notary root pins is part of the policy hash, so that changing it makes
// cached decisions stale.
func TestNotaryRootHash(t *testing.T) {
	a := mustParse(t, "trust:\n  dct: {notary: {server: https://n, rootKeys: [keys/release.pub]}}\ndefault: {signedBy: {anyOf: [dct]}}\n")
	b := mustParse(t, "trust:\n  dct: {notary: {server: https://n, rootKeys: [keys/release.pub], delegations: [targets/releases]}}\ndefault: {signedBy: {anyOf: [dct]}}\n")
	if a.Hash() == b.Hash() {
		t.Error("a change of delegations did not change the policy hash")
	}
}
