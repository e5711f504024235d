package integration

import (
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

func TestAttestationRequirement(t *testing.T) {
	bin := cosigntest.Binary(t)
	release, ci, other := cosignKey(t), cosignKey(t), cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "ci.pub": ci.pubPEM(t), "other.pub": other.pubPEM(t)}
	pol := `trust:
  release: {key: release.pub}
  ci: {key: ci.pub}
  other: {key: other.pub}
rules:
  - name: provenance
    match: {repository: "prov/**"}
    signedBy: {anyOf: [release]}
    attestations:
      - predicateType: https://slsa.dev/provenance/v1
        signedBy: {anyOf: [ci]}
        conditions:
          - {path: runDetails.builder.id, equals: "https://ci.acme.example/builder"}
`
	e := newEnv(t, withPolicy(pol, files))
	const slsa = "https://slsa.dev/provenance/v1"
	goodPred := []byte(`{"buildDefinition":{"buildType":"x"},"runDetails":{"builder":{"id":"https://ci.acme.example/builder"}}}`)
	otherBuilder := []byte(`{"buildDefinition":{"buildType":"x"},"runDetails":{"builder":{"id":"https://evil.example/builder"}}}`)
	push := func(repo string) string {
		img := e.up.PushRandomImage(t, repo+":v1", 1, 1000)
		d, _ := img.Digest()
		ref := e.up.Ref(repo + "@" + d.String())
		cosigntest.Sign(t, bin, ref, release.priv)
		return ref
	}
	cosigntest.Attest(t, bin, push("prov/present"), ci.priv, slsa, goodPred)
	push("prov/missing")
	cosigntest.Attest(t, bin, push("prov/wrongkey"), other.priv, slsa, goodPred)
	cosigntest.Attest(t, bin, push("prov/wrongbuilder"), ci.priv, slsa, otherBuilder)

	tests := []struct {
		repo  string
		allow bool
		want  string
	}{
		{"prov/present", true, ""},
		{"prov/missing", false, "attestation " + slsa},
		{"prov/wrongkey", false, "attestation " + slsa},
		{"prov/wrongbuilder", false, "evil.example"},
	}
	for _, tc := range tests {
		t.Run(tc.repo, func(t *testing.T) {
			if tc.allow {
				if _, err := crane.Pull(e.ref(tc.repo+":v1"), pullOpts()...); err != nil {
					t.Fatal(err)
				}
				return
			}
			mustContain(t, "denial", denial(t, e, "/v2/"+tc.repo+"/manifests/v1"), tc.want)
		})
	}
}

func TestKeylessSignature(t *testing.T) {
	bin := cosigntest.Binary(t)
	ca := cosigntest.TestCA(t)
	files := map[string][]byte{"trusted_root.json": ca.TrustedRoot(t)}
	pol := `trust:
  github-ci:
    keyless:
      trustedRoot: trusted_root.json
      issuer: https://token.actions.githubusercontent.com
      subjectRegExp: '^https://github.com/acme/'
    ignoreTlog: true
    ignoreSCT: true
default:
  signedBy: {anyOf: [github-ci]}
`
	e := newEnv(t, withPolicy(pol, files))
	sign := func(repo, subject, issuer string) {
		img := e.up.PushRandomImage(t, repo+":v1", 1, 1000)
		d, _ := img.Digest()
		cosigntest.SignKeyless(t, bin, e.up.Ref(repo+"@"+d.String()), ca.Leaf(t, subject, issuer))
	}
	sign("kl/trusted", "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main", "https://token.actions.githubusercontent.com")
	sign("kl/otherorg", "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main", "https://token.actions.githubusercontent.com")
	sign("kl/otherissuer", "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main", "https://accounts.example.com")
	other := cosigntest.TestCA(t) // a CA the trusted root does not know
	img := e.up.PushRandomImage(t, "kl/otherca:v1", 1, 1000)
	d, _ := img.Digest()
	cosigntest.SignKeyless(t, bin, e.up.Ref("kl/otherca@"+d.String()),
		other.Leaf(t, "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main", "https://token.actions.githubusercontent.com"))

	if _, err := crane.Pull(e.ref("kl/trusted:v1"), pullOpts()...); err != nil {
		t.Fatalf("keyless-signed image from the trusted identity: %v", err)
	}
	for _, repo := range []string{"kl/otherorg", "kl/otherissuer", "kl/otherca"} {
		t.Run(repo, func(t *testing.T) {
			mustContain(t, "denial", denial(t, e, "/v2/"+repo+"/manifests/v1"), "not signed by github-ci")
		})
	}
}

// TestCosign3Bundle: cosign 3's default storage, a sigstore bundle under the referrers fallback tag sha256-<hex>
// on CNCF Distribution, which has no referrers API.
func TestCosign3Bundle(t *testing.T) {
	bin3 := cosigntest.Binary3(t)
	if !cosigntest.IsV3(bin3) {
		t.Log("cosign v3 did not build; signing with cosign v2 --new-bundle-format (same bundle artifact)")
	}
	release, wrong := cosignKey(t), cosignKey(t)
	for _, tc := range []struct {
		name  string
		pub   []byte
		allow bool
	}{{"right key", release.pubPEM(t), true}, {"wrong key", wrong.pubPEM(t), false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withPolicy(releasePolicy(""), map[string][]byte{"release.pub": tc.pub, "other.pub": tc.pub}))
			img := e.up.PushRandomImage(t, "c3/app:v1", 2, 2000)
			d, _ := img.Digest()
			cosigntest.SignBundle(t, bin3, e.up.Ref("c3/app@"+d.String()), release.priv)
			if n := e.up.Hits().CountPath(http.MethodPut, "/v2/c3/app/manifests/sha256-"+d.Hex); n == 0 {
				t.Logf("note: bundle not stored under the fallback tag (referrers API?)")
			}
			if tc.allow {
				got, err := crane.Pull(e.ref("c3/app:v1"), pullOpts()...)
				if err != nil {
					t.Fatalf("cosign 3 signed image: %v", err)
				}
				sameImage(t, img, got)
				return
			}
			mustContain(t, "denial", denial(t, e, "/v2/c3/app/manifests/v1"), "not signed by release")
		})
	}
	_ = registrytest.Platforms
}
