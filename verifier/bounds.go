package verifier

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/manifest"
)

// Bounds on what one image's evidence may make the verifier read. The
// signature artifacts live in the upstream, which anyone who can push there
// controls: without them one manifest whose layers all name one large blob
// (within cosign's own limits: 1,000 layers, 128 MiB each) would make a
// single pull read gigabytes into memory.
const (
	// DefaultMaxArtifactLayers is the default of WithMaxArtifactLayers.
	DefaultMaxArtifactLayers = 32
	// DefaultMaxSignatureSize is the default of WithMaxSignatureSize.
	DefaultMaxSignatureSize = 1 << 20
	// DefaultMaxAttestationSize is the default of WithMaxAttestationSize.
	DefaultMaxAttestationSize = 16 << 20
	// maxManifestSize caps a signature, attestation or bundle manifest and a
	// referrers index, as the proxy caps the manifests it serves. The
	// registry client reads each through its own cap (the proxy's manifest
	// cap; this one for a client the verifier builds), and one larger than
	// this is refused once read.
	maxManifestSize = 4 << 20
)

// evidenceKind is what a read is looking for: it names the evidence in
// reasons and sets the per-layer bound.
type evidenceKind struct {
	name    string // "signature" or "attestation"
	suffix  string // the classic tag's: "sig" or "att"
	maxSize int64  // per layer, bytes
	// largerIsOther: a bundle larger than maxSize is another kind of
	// evidence, skipped unread, rather than invalid.
	largerIsOther bool
}

func (v *Verifier) signatureKind() evidenceKind {
	return evidenceKind{name: "signature", suffix: "sig", maxSize: v.maxSignatureSize, largerIsOther: true}
}

func (v *Verifier) attestationKind() evidenceKind {
	return evidenceKind{name: "attestation", suffix: "att", maxSize: v.maxAttestationSize}
}

// boundError says that evidence broke a bound: too many layers, a layer or a
// manifest too large. It is invalid evidence, never ErrUnavailable: the
// registry answered, with something Portcullis will not read.
type boundError struct {
	msg    string
	budget bool // the evidence budget ran out (see budget)
}

func (e *boundError) Error() string { return e.msg }

func exceeded(format string, args ...any) error {
	return &boundError{msg: fmt.Sprintf(format, args...)}
}

// checkArtifact checks the manifest of the artifact what (e.g. "signature
// artifact sha256-<hex>.sig") before any of its content is fetched: at most
// maxLayers layers, each of a known size of at most k.maxSize bytes.
func checkArtifact(what string, c manifest.Contents, maxLayers int, k evidenceKind) error {
	if c.IsIndex() {
		return fmt.Errorf("%s: an index where a %s manifest belongs", what, k.name)
	}
	if n := len(c.Layers); n > maxLayers {
		return exceeded("%s has %d layers, more than %d", what, n, maxLayers)
	}
	for _, l := range c.Layers {
		if err := checkLayer(what, l, k); err != nil {
			return err
		}
	}
	return nil
}

// checkLayer checks one layer descriptor of the artifact what against k's
// size bound. A size below zero would read without a bound in
// go-containerregistry.
func checkLayer(what string, l ocispec.Descriptor, k evidenceKind) error {
	switch {
	case l.Size < 0:
		return fmt.Errorf("%s layer %s has no size", what, l.Digest)
	case l.Size > k.maxSize:
		return exceeded("%s layer %s is %d bytes, more than %s", what, l.Digest, l.Size, bytesString(k.maxSize))
	}
	return nil
}

// layersSize returns the sum of the layer sizes c declares, which
// checkArtifact passed (so it cannot overflow).
func layersSize(c manifest.Contents) int64 {
	var n int64
	for _, l := range c.Layers {
		n += l.Size
	}
	return n
}

// bytesString writes n in the largest binary unit that divides it.
func bytesString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
