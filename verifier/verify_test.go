package verifier_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/notationtest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

// TestVerifyReadsOnce: one Verify asks for signatures and attestations in one look: the referrers index, each
// bundle's manifest and each bundle are read once, though both kinds of evidence read them.
func TestVerifyReadsOnce(t *testing.T) {
	t.Parallel()
	bin3 := cosigntest.Binary3(t)
	reg := registrytest.New(t, registrytest.WithGGCR()) // the referrers API
	release, ci := newKeyPair(t), newKeyPair(t)
	img := pushImage(t, reg, "team/app")
	cosigntest.SignBundle(t, bin3, img.ref, release.priv)
	provenance := []byte(`{"buildDefinition":{"buildType":"x"}}`)
	cosigntest.AttestBundle(t, bin3, img.ref, ci.priv, slsaV1, provenance)
	v := newVerifier(t, keyRoot(t, "release", release.pub), keyRoot(t, "ci", ci.pub))

	reg.Hits().Reset()
	got, err := v.Verify(t.Context(), img.target, verifier.Query{Signatures: []string{"release"}, Attestations: []string{"ci"}})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	checkResults(t, got.Signatures, map[string]policy.SignatureResult{"release": verified(verifier.FormatBundle)})
	if len(got.Attestations.Verified) != 1 || got.Attestations.Verified[0].PredicateType != slsaV1 {
		t.Errorf("attestations %+v, want the provenance by ci", got.Attestations)
	}
	hits := reg.Hits()
	if n := hits.CountPath(http.MethodGet, "/v2/team/app/referrers/"+img.target.Digest.String()); n != 1 {
		t.Errorf("%d referrers requests, want 1", n)
	}
	// Two bundles: each manifest and each layer once. The .sig and .att tags (404) and the fallback tag once each.
	if n := hits.Count(http.MethodGet, registrytest.KindBlob); n != 2 {
		t.Errorf("%d blob GETs, want 2 (one per bundle)", n)
	}
	if n := hits.Count(http.MethodGet, registrytest.KindManifest); n != 5 {
		t.Errorf("%d manifest GETs, want 5: .sig, .att, the fallback tag, two bundles", n)
	}
	if n := hits.Count("", registrytest.KindPing); n != 0 {
		t.Errorf("%d pings", n)
	}
}

// TestVerifyReadsNotationOnce: a Notation signature is a referrer like a cosign bundle, so one Verify asking for
// a cosign root and a Notation root lists the referrers once, and reads the Notation manifest and its envelope
// once, through the same session as the bundle.
func TestVerifyReadsNotationOnce(t *testing.T) {
	t.Parallel()
	bin3 := cosigntest.Binary3(t)
	reg := registrytest.New(t, registrytest.WithGGCR()) // the referrers API
	repo := notationtest.Repo(t, reg.Host(), "team/app", true)
	ca := notationtest.NewCA(t, "Acme Root")
	acme := ca.Leaf(t, notationtest.Subject("acme"), time.Time{}, time.Time{})
	release := newKeyPair(t)
	img := pushImage(t, reg, "team/app")
	cosigntest.SignBundle(t, bin3, img.ref, release.priv)
	notationtest.Sign(t, repo, acme, img.target.Digest, notationtest.JWS)
	v := newVerifier(t, keyRoot(t, "release", release.pub), notationRoot("acme", ca, "*"))

	reg.Hits().Reset()
	got, err := v.Verify(t.Context(), img.target, verifier.Query{Signatures: []string{"release", "acme"}})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	checkResults(t, got.Signatures, map[string]policy.SignatureResult{
		"release": verified(verifier.FormatBundle), "acme": verified(verifier.FormatNotation)})
	hits := reg.Hits()
	if n := hits.CountPath(http.MethodGet, "/v2/team/app/referrers/"+img.target.Digest.String()); n != 1 {
		t.Errorf("%d referrers requests, want 1", n)
	}
	// The bundle's and the Notation signature's manifest and layer, each once; .sig (404) and the fallback tag.
	if n := hits.Count(http.MethodGet, registrytest.KindBlob); n != 2 {
		t.Errorf("%d blob GETs, want 2 (the bundle, the envelope)", n)
	}
	if n := hits.Count(http.MethodGet, registrytest.KindManifest); n != 4 {
		t.Errorf("%d manifest GETs, want 4: .sig, the fallback tag, the bundle, the Notation signature", n)
	}
}
