package admission

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/cache"
)

func TestScanCredentialGrants(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	kv := cache.NewMemory(cache.WithClock(clock.Now))
	t.Cleanup(func() { _ = kv.Close() })
	c := NewScanCredentials(kv)
	c.now = clock.Now

	d := func(s string) digest.Digest { return digest.FromString(s) }
	image := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},
		"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":1}]}`, ocispec.MediaTypeImageManifest, d("config"), d("layer")))
	artifact := []byte(fmt.Sprintf(`{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"application/spdx+json",
		"blobs":[{"mediaType":"application/spdx+json","digest":%q,"size":1}]}`, d("sbom")))
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[
		{"mediaType":%q,"digest":%q,"size":1},
		{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","digest":%q,"size":1},
		{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":1},
		{"digest":%q,"size":1}]}`,
		ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, d("image"), d("artifact"), d("disguised-layer"), d("untyped")))

	tok, err := c.Mint(ctx, "up", "app", d("index"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := c.Mint(ctx, "up", "app", d("elsewhere"), time.Minute)

	type step struct {
		name  string
		blob  bool // ask the blobs endpoint, else the manifests endpoint
		tok   string
		repo  string
		dgst  digest.Digest
		body  []byte
		allow bool
	}
	steps := []step{
		{name: "a child before its index was served", tok: tok, repo: "app", dgst: d("image"), body: image},
		{name: "the image it was minted for", tok: tok, repo: "app", dgst: d("index"), body: index, allow: true},
		{name: "not in another repository", tok: tok, repo: "other", dgst: d("index"), body: index},
		{name: "a child manifest as a manifest", tok: tok, repo: "app", dgst: d("image"), body: image, allow: true},
		{name: "a child manifest is not a blob", blob: true, tok: tok, repo: "app", dgst: d("image")},
		{name: "an index entry of a layer type is not a manifest", tok: tok, repo: "app", dgst: d("disguised-layer"), body: image},
		{name: "nor is one with no media type", tok: tok, repo: "app", dgst: d("untyped"), body: image},
		{name: "the config as a blob", blob: true, tok: tok, repo: "app", dgst: d("config"), allow: true},
		{name: "a layer as a blob", blob: true, tok: tok, repo: "app", dgst: d("layer"), allow: true},
		{name: "a layer is not a manifest", tok: tok, repo: "app", dgst: d("layer"), body: image},
		{name: "the config is not a manifest", tok: tok, repo: "app", dgst: d("config"), body: []byte(`{}`)},
		{name: "an artifact child", tok: tok, repo: "app", dgst: d("artifact"), body: artifact, allow: true},
		{name: "its blobs as blobs", blob: true, tok: tok, repo: "app", dgst: d("sbom"), allow: true},
		{name: "another credential's grants are its own", blob: true, tok: other, repo: "app", dgst: d("layer")},
		{name: "no credential", blob: true, tok: "", repo: "app", dgst: d("layer")},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var got bool
			if s.blob {
				got = c.AllowBlob(ctx, s.tok, "up", s.repo, s.dgst)
			} else {
				var err error
				got, err = c.AllowManifest(ctx, s.tok, "up", s.repo, s.dgst, s.body)
				// A live credential for the repository that does not grant the manifest says why; anything
				// else is not a scanner's request and is left to admission.
				if holder := s.tok == tok && s.repo == "app"; !got && holder != (err != nil) {
					t.Errorf("err = %v for a refused manifest, want one only for the credential's holder", err)
				}
			}
			if got != s.allow {
				t.Errorf("allowed = %v, want %v", got, s.allow)
			}
		})
	}
	t.Run("bytes that are not a manifest are not served as the image", func(t *testing.T) {
		tok, _ := c.Mint(ctx, "up", "app", d("garbage"), time.Minute)
		if ok, err := c.AllowManifest(ctx, tok, "up", "app", d("garbage"), []byte("\x1f\x8b not json")); ok || err == nil {
			t.Errorf("allowed = %v, err = %v; want refused with a reason", ok, err)
		}
	})
	t.Run("nothing once the credential expired", func(t *testing.T) {
		clock.Add(time.Minute + time.Second)
		if ok, _ := c.AllowManifest(ctx, tok, "up", "app", d("index"), index); ok || c.AllowBlob(ctx, tok, "up", "app", d("layer")) {
			t.Error("allowed after expiry")
		}
	})
}
