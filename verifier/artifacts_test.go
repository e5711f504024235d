package verifier_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/verifier"
)

func TestArtifacts(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	reg := registrytest.New(t)
	key := newKeyPair(t)

	img := pushImage(t, reg, "team/app")
	cosigntest.Sign(t, bin, img.ref, key.priv)
	cosigntest.Attest(t, bin, img.ref, key.priv, slsaV1, []byte(`{}`))
	cosigntest.SignBundle(t, cosigntest.Binary3(t), img.ref, key.priv)
	bare := pushImage(t, reg, "team/app")

	v := newVerifier(t)
	got, err := v.Artifacts(t.Context(), img.target)
	if err != nil {
		t.Fatalf("Artifacts: %v", err)
	}

	// What a registry client sees under the cosign tags and in the fallback
	// index, fetched independently.
	prefix := "team/app:sha256-" + img.target.Digest.Encoded()
	sig, sigBlobs := manifest(t, reg.Ref(prefix+".sig"))
	att, attBlobs := manifest(t, reg.Ref(prefix+".att"))
	index, _ := manifest(t, reg.Ref(prefix))
	want := []verifier.Artifact{
		{Tag: "sha256-" + img.target.Digest.Encoded() + ".sig", Digest: sig, Blobs: sigBlobs},
		{Tag: "sha256-" + img.target.Digest.Encoded() + ".att", Digest: att, Blobs: attBlobs},
		{Tag: "sha256-" + img.target.Digest.Encoded(), Digest: index},
	}
	idx, err := remote.Index(parseRef(t, reg.Ref(prefix)))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("fallback index lists %d referrers, want 1 (the signature bundle)", len(im.Manifests))
	}
	ref, refBlobs := manifest(t, reg.Ref("team/app@"+im.Manifests[0].Digest.String()))
	want = append(want, verifier.Artifact{Digest: ref, Blobs: refBlobs})
	if len(refBlobs) != 2 {
		t.Errorf("bundle referrer has %d blobs, want 2 (empty config and bundle)", len(refBlobs))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}

	t.Run("none", func(t *testing.T) {
		got, err := v.Artifacts(t.Context(), bare.target)
		if err != nil {
			t.Fatalf("Artifacts: %v", err)
		}
		if diff := cmp.Diff([]verifier.Artifact(nil), got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("artifacts (-want +got):\n%s", diff)
		}
	})
}

// manifest fetches ref's manifest and returns its digest and, for an image
// manifest, its config and layer digests.
func manifest(t *testing.T, ref string) (digest.Digest, []digest.Digest) {
	t.Helper()
	desc, err := remote.Get(parseRef(t, ref))
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	if desc.MediaType.IsIndex() {
		return digest.Digest(desc.Digest.String()), nil
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blobs := []digest.Digest{digest.Digest(m.Config.Digest.String())}
	for _, l := range m.Layers {
		blobs = append(blobs, digest.Digest(l.Digest.String()))
	}
	return digest.Digest(desc.Digest.String()), blobs
}
