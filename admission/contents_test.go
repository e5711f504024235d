package admission

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestParsedManifestsNeverLendAnotherManifestsContents: the gate remembers a digest's parsed manifest, but a Subject
// that carries other bytes under that digest gets its own bytes parsed, never the remembered contents.
func TestParsedManifestsNeverLendAnotherManifestsContents(t *testing.T) {
	var p parsedManifests
	a := image(t, "v1", digest.FromString("layer a"))
	b := image(t, "v1", digest.FromString("layer b"))
	b.Digest = a.Digest // a caller's Subject whose bytes do not match its digest
	for _, tc := range []struct {
		name string
		s    Subject
		want digest.Digest
	}{
		{"first parse", a, digest.FromString("layer a")},
		{"remembered", a, digest.FromString("layer a")},
		{"same digest, other bytes", b, digest.FromString("layer b")},
		{"the first bytes again", a, digest.FromString("layer a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := p.parse(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Layers[0].Digest; got != tc.want {
				t.Errorf("layer %s, want %s", got, tc.want)
			}
		})
	}
}
