package verifier_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

const (
	slsaV1   = "https://slsa.dev/provenance/v1"
	vulnType = "https://cosign.sigstore.dev/attestation/vuln/v1"
)

func TestAttestations(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	reg := registrytest.New(t)
	release, scanner := newKeyPair(t), newKeyPair(t)
	provenance := []byte(`{"buildDefinition":{"buildType":"https://example.com/build/v1"},"runDetails":{"builder":{"id":"https://ci.example"}}}`)
	scan := []byte(`{"scanner":{"uri":"pkg:github/aquasecurity/trivy","version":"0.58.1"},"metadata":{"scanFinishedOn":"2025-01-01T00:00:00Z"}}`)

	attested := pushImage(t, reg, "team/app")
	cosigntest.Attest(t, bin, attested.ref, release.priv, slsaV1, provenance)
	cosigntest.Attest(t, bin, attested.ref, scanner.priv, vulnType, scan)
	bare := pushImage(t, reg, "team/app")
	scannerOnly := pushImage(t, reg, "team/app")
	cosigntest.Attest(t, bin, scannerOnly.ref, scanner.priv, slsaV1, provenance)

	v := newVerifier(t, keyRoot(t, "release", release.pub), keyRoot(t, "scanner", scanner.pub))
	tests := []struct {
		name  string
		image image
		roots []string
		want  []policy.Attestation
	}{
		{
			name: "each predicate with its signer", image: attested, roots: []string{"release", "scanner"},
			want: []policy.Attestation{
				{PredicateType: slsaV1, SignedBy: []string{"release"}, Predicate: provenance},
				{PredicateType: vulnType, SignedBy: []string{"scanner"}, Predicate: scan},
			},
		},
		{
			name: "only the roots asked", image: attested, roots: []string{"release"},
			want: []policy.Attestation{{PredicateType: slsaV1, SignedBy: []string{"release"}, Predicate: provenance}},
		},
		{name: "no attestations", image: bare, roots: []string{"release", "scanner"}},
		{name: "signed with a key not asked for", image: scannerOnly, roots: []string{"release"}},
		{name: "no roots", image: attested},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Attestations(t.Context(), tt.image.target, tt.roots)
			if err != nil {
				t.Fatalf("Attestations: %v", err)
			}
			if diff := cmp.Diff(verifier.AttestationResult{Verified: tt.want}, got, jsonEqual, cmpopts.EquateEmpty(),
				cmpopts.SortSlices(func(a, b policy.Attestation) bool { return a.PredicateType < b.PredicateType })); diff != "" {
				t.Errorf("attestations (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAttestationsBundle covers attestations in cosign 3's default format: a
// sigstore bundle under the fallback tag, next to the signature bundle,
// which must not be reported as an attestation.
func TestAttestationsBundle(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary3(t)
	reg := registrytest.New(t)
	release, other := newKeyPair(t), newKeyPair(t)
	provenance := []byte(`{"buildDefinition":{"buildType":"https://example.com/build/v1"}}`)

	img := pushImage(t, reg, "team/app")
	cosigntest.SignBundle(t, bin, img.ref, release.priv)
	cosigntest.AttestBundle(t, bin, img.ref, release.priv, slsaV1, provenance)

	v := newVerifier(t, keyRoot(t, "release", release.pub), keyRoot(t, "other", other.pub))
	got, err := v.Attestations(t.Context(), img.target, []string{"release", "other"})
	if err != nil {
		t.Fatalf("Attestations: %v", err)
	}
	want := verifier.AttestationResult{Verified: []policy.Attestation{{PredicateType: slsaV1, SignedBy: []string{"release"}, Predicate: provenance}}}
	if diff := cmp.Diff(want, got, jsonEqual); diff != "" {
		t.Errorf("attestations (-want +got):\n%s", diff)
	}
}

// jsonEqual compares raw JSON by value, not by bytes.
var jsonEqual = cmp.Comparer(func(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	return cmp.Equal(x, y)
})
