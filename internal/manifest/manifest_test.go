package manifest_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/manifest"
)

var (
	subject = digest.FromString("admitted image")
	other   = digest.FromString("some other image")
	blobA   = digest.FromString("a")
	blobB   = digest.FromString("b")
)

func desc(mt string, d digest.Digest) map[string]any {
	return map[string]any{"mediaType": mt, "digest": d.String(), "size": 10}
}

func doc(t *testing.T, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		body map[string]any
		want manifest.Contents
	}{
		{
			name: "image manifest: config, layers, subject",
			body: map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
				"config": desc(ocispec.MediaTypeImageConfig, blobA), "layers": []any{desc(ocispec.MediaTypeImageLayerGzip, blobB)},
				"subject": desc(ocispec.MediaTypeImageManifest, subject)},
			want: manifest.Contents{MediaType: ocispec.MediaTypeImageManifest,
				Config:  &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: blobA, Size: 10},
				Layers:  []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: blobB, Size: 10}},
				Subject: &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: 10}},
		},
		{
			name: "artifact manifest: blobs are its layers",
			body: map[string]any{"mediaType": manifest.MediaTypeOCIArtifact, "artifactType": "application/vnd.example",
				"blobs": []any{desc("application/vnd.in-toto+json", blobA)}},
			want: manifest.Contents{MediaType: manifest.MediaTypeOCIArtifact, ArtifactType: "application/vnd.example",
				Layers: []ocispec.Descriptor{{MediaType: "application/vnd.in-toto+json", Digest: blobA, Size: 10}}},
		},
		{
			name: "index without a mediaType field",
			body: map[string]any{"schemaVersion": 2, "manifests": []any{desc(ocispec.MediaTypeImageManifest, blobA)}},
			want: manifest.Contents{MediaType: ocispec.MediaTypeImageIndex,
				Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: blobA, Size: 10}}},
		},
		{
			name: "schema 1: fsLayers by blobSum",
			body: map[string]any{"schemaVersion": 1, "fsLayers": []any{map[string]any{"blobSum": blobA.String()}}},
			want: manifest.Contents{MediaType: manifest.MediaTypeDockerSchema1JWS,
				Layers: []ocispec.Descriptor{{Digest: blobA, Size: -1}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := manifest.Parse(doc(t, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":             `{"layers": [`,
		"layer without digest": `{"layers": [{"mediaType": "x", "size": 1}]}`,
		"bad child digest":     `{"manifests": [{"digest": "sha256:xyz"}]}`,
		"bad subject":          `{"subject": {"digest": "md5:00"}}`,
		"bad config":           `{"config": {"digest": ""}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := manifest.Parse([]byte(body)); !errors.Is(err, manifest.ErrMalformed) {
				t.Errorf("Parse(%s) = %v, want ErrMalformed", body, err)
			}
		})
	}
}

func TestBlobs(t *testing.T) {
	c := manifest.Contents{Config: &ocispec.Descriptor{Digest: blobA}, Layers: []ocispec.Descriptor{{Digest: blobB}}}
	got := c.Blobs()
	if len(got) != 2 || got[0].Digest != blobA || got[1].Digest != blobB {
		t.Errorf("Blobs = %v", got)
	}
}

func TestArtifactOf(t *testing.T) {
	sig := desc("application/vnd.dev.cosign.simplesigning.v1+json", blobB)
	imageConfig := desc(ocispec.MediaTypeImageConfig, blobA)
	empty := desc("application/vnd.oci.empty.v1+json", blobA)
	tests := []struct {
		name    string
		body    map[string]any
		wantErr string // "" when it is an artifact of subject
	}{
		{name: "cosign .sig: image config, simple signing layers",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": imageConfig, "layers": []any{sig, sig}}},
		{name: "cosign .sig with Docker media types",
			body: map[string]any{"mediaType": manifest.MediaTypeDockerManifest,
				"config": desc("application/vnd.docker.container.image.v1+json", blobA), "layers": []any{sig}}},
		{name: "cosign .att: DSSE layers",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": imageConfig,
				"layers": []any{desc("application/vnd.dsse.envelope.v1+json", blobB)}}},
		{name: "sigstore bundle referrer with its subject",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
				"config": empty, "layers": []any{desc("application/vnd.dev.sigstore.bundle.v0.3+json", blobB)},
				"subject": desc(ocispec.MediaTypeImageManifest, subject)}},
		{name: "bundle media type with a version parameter",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": empty,
				"layers": []any{desc("application/vnd.dev.sigstore.bundle+json;version=0.3", blobB)}}},
		{name: "notation signature",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": desc("application/vnd.cncf.notary.signature", blobA),
				"layers": []any{desc("application/jose+json", blobB)}, "subject": desc(ocispec.MediaTypeImageManifest, subject)}},
		{name: "SPDX SBOM",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": imageConfig, "layers": []any{desc("text/spdx", blobB)}}},
		{name: "OCI artifact manifest with blobs",
			body: map[string]any{"mediaType": manifest.MediaTypeOCIArtifact, "blobs": []any{desc("application/vnd.cyclonedx+json", blobB)}}},

		{name: "runnable image",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": imageConfig,
				"layers": []any{desc(ocispec.MediaTypeImageLayerGzip, blobB)}},
			wantErr: "not a signature"},
		{name: "a signature layer and a filesystem layer",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": imageConfig,
				"layers": []any{sig, desc("application/vnd.docker.image.rootfs.diff.tar.gzip", blobB)}},
			wantErr: "rootfs.diff.tar.gzip"},
		{name: "runnable image whose subject is the admitted image",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": imageConfig,
				"layers": []any{desc(ocispec.MediaTypeImageLayer, blobB)}, "subject": desc(ocispec.MediaTypeImageManifest, subject)},
			wantErr: "not a signature"},
		{name: "artifact of another image",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": empty,
				"layers": []any{sig}, "subject": desc(ocispec.MediaTypeImageManifest, other)},
			wantErr: "subject is " + other.String()},
		{name: "index under an artifact tag",
			body:    map[string]any{"mediaType": ocispec.MediaTypeImageIndex, "manifests": []any{desc(ocispec.MediaTypeImageManifest, blobA)}},
			wantErr: "index"},
		{name: "index without a mediaType field",
			body:    map[string]any{"manifests": []any{desc(ocispec.MediaTypeImageManifest, blobA)}},
			wantErr: "index"},
		{name: "unknown config",
			body: map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": desc("application/vnd.wasm.config.v1+json", blobA),
				"layers": []any{sig}},
			wantErr: "not an artifact config"},
		{name: "no layers",
			body:    map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "config": empty, "layers": []any{}},
			wantErr: "no content"},
		{name: "schema 1",
			body:    map[string]any{"schemaVersion": 1, "fsLayers": []any{map[string]any{"blobSum": blobA.String()}}},
			wantErr: "not an artifact manifest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := manifest.Parse(doc(t, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			err = c.ArtifactOf(subject)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("ArtifactOf = %v, want an artifact", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("ArtifactOf = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIsManifestType(t *testing.T) {
	for mt, want := range map[string]bool{
		ocispec.MediaTypeImageManifest:              true,
		ocispec.MediaTypeImageIndex + "; charset=x": true,
		manifest.MediaTypeDockerManifestList:        true,
		ocispec.MediaTypeImageLayerGzip:             false,
		ocispec.MediaTypeImageConfig:                false,
		"application/vnd.dev.sigstore.bundle+json":  false,
	} {
		if got := manifest.IsManifestType(mt); got != want {
			t.Errorf("IsManifestType(%q) = %v", mt, got)
		}
	}
}

// TestAcceptTypes: the one Accept list names manifest types only, index first, and a caller that changes its copy
// changes no one else's.
func TestAcceptTypes(t *testing.T) {
	got := manifest.AcceptTypes()
	want := []string{ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, manifest.MediaTypeDockerManifestList, manifest.MediaTypeDockerManifest}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("AcceptTypes (-want +got):\n%s", d)
	}
	for _, mt := range got {
		if !manifest.IsManifestType(mt) {
			t.Errorf("AcceptTypes names %q, not a manifest type", mt)
		}
	}
	got[0] = "changed"
	if again := manifest.AcceptTypes(); again[0] != ocispec.MediaTypeImageIndex {
		t.Errorf("a caller's change reached the next caller: %q", again[0])
	}
}
