package manifest_test

import (
	"testing"

	"github.com/portcullis/portcullis/internal/manifest"
)

// FuzzParse: any bytes parse or fail with ErrMalformed, and a parsed manifest's shape check never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1"},"layers":[]}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1"}]}`))
	f.Add([]byte(`{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := manifest.Parse(b)
		if err != nil {
			return
		}
		_ = c.ArtifactOf("sha256:6a88d6e1a7eb5b0ee44a7e72c4cb8a92fa2d7c8af6b0e5a3e8ab3ae0f0c4b4c1")
		for _, d := range append(c.Blobs(), c.Manifests...) {
			if d.Digest.Validate() != nil {
				t.Fatalf("Parse returned an invalid digest %q", d.Digest)
			}
		}
	})
}
