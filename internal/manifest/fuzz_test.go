package manifest_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/manifest"
)

// FuzzParse: any bytes parse or fail with ErrMalformed, and a parsed manifest's shape check never panics. What
// parses round trips: its contents written back as a manifest of the same media type parse to the same contents, so
// what Portcullis admits (config, layers, children, subject) is exactly what the bytes name.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1"},"layers":[]}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1"}]}`))
	f.Add([]byte(`{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1"}]}`))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1","size":7,"platform":{"architecture":"arm64","os":"linux"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"digest":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1","size":1}],"subject":{"digest":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1","size":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := manifest.Parse(b)
		if err != nil {
			if !errors.Is(err, manifest.ErrMalformed) {
				t.Fatalf("error %q does not wrap ErrMalformed", err)
			}
			return
		}
		_ = c.ArtifactOf("sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1")
		for _, d := range append(c.Blobs(), c.Manifests...) {
			if d.Digest.Validate() != nil {
				t.Fatalf("Parse returned an invalid digest %q", d.Digest)
			}
		}
		if mt, err := manifest.MediaTypeOf(b); err != nil || mt != c.MediaType {
			t.Fatalf("MediaTypeOf = %q, %v; Parse says %q", mt, err, c.MediaType)
		}
		out, err := json.Marshal(struct {
			SchemaVersion int                  `json:"schemaVersion"`
			MediaType     string               `json:"mediaType"`
			ArtifactType  string               `json:"artifactType,omitempty"`
			Config        *ocispec.Descriptor  `json:"config,omitempty"`
			Layers        []ocispec.Descriptor `json:"layers,omitempty"`
			Manifests     []ocispec.Descriptor `json:"manifests,omitempty"`
			Subject       *ocispec.Descriptor  `json:"subject,omitempty"`
		}{2, c.MediaType, c.ArtifactType, c.Config, c.Layers, c.Manifests, c.Subject})
		if err != nil {
			t.Fatalf("writing the contents back: %v", err)
		}
		back, err := manifest.Parse(out)
		if err != nil {
			t.Fatalf("the contents written back do not parse: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, back, emptyIsNil); diff != "" {
			t.Fatalf("round trip (-parsed +written back):\n%s\n%s", diff, out)
		}
		if c.IsIndex() != back.IsIndex() {
			t.Fatalf("IsIndex %v, written back %v", c.IsIndex(), back.IsIndex())
		}
	})
}

// emptyIsNil compares an empty list with a missing one as equal, and an empty map with a missing one: JSON's
// omitempty cannot tell them apart, and neither can a manifest's meaning.
var emptyIsNil = cmp.FilterValues(func(a, b any) bool {
	return isEmpty(a) && isEmpty(b)
}, cmp.Comparer(func(a, b any) bool { return true }))

func isEmpty(v any) bool {
	switch x := v.(type) {
	case []ocispec.Descriptor:
		return len(x) == 0
	case []string:
		return len(x) == 0
	case map[string]string:
		return len(x) == 0
	case []byte:
		return len(x) == 0
	}
	return false
}
