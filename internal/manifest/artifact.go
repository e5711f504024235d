package manifest

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// artifactLayerTypes are the content media types of the artifacts that ride along with an image. No container
// runtime unpacks a layer of these types (containerd and Docker refuse a layer type they do not know), so a
// manifest made only of them cannot be run, whatever its config says.
var artifactLayerTypes = map[string]bool{
	"application/vnd.dev.cosign.simplesigning.v1+json": true, // cosign signature (.sig)
	"application/vnd.dsse.envelope.v1+json":            true, // cosign attestation (.att), DSSE
	"application/vnd.in-toto+json":                     true, // in-toto statement
	"application/vnd.oci.empty.v1+json":                true, // an artifact with its data in annotations
	"application/spdx+json":                            true, // SPDX
	"text/spdx":                                        true,
	"text/spdx+json":                                   true,
	"text/spdx+xml":                                    true,
	"application/vnd.cyclonedx":                        true, // CycloneDX
	"application/vnd.cyclonedx+json":                   true,
	"application/vnd.cyclonedx+xml":                    true,
	"application/vnd.syft+json":                        true, // cosign attach sbom --type syft
	"application/vnd.openvex+json":                     true, // OpenVEX
	"application/openvex+json":                         true,
	"application/jose+json":                            true, // Notation signature, JWS envelope
	"application/cose":                                 true, // Notation signature, COSE envelope
}

// artifactLayerPrefixes cover families with versions in the type: sigstore bundles
// ("application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.dev.sigstore.bundle+json;version=0.3").
var artifactLayerPrefixes = []string{"application/vnd.dev.sigstore.bundle"}

// artifactConfigTypes are the configs an artifact manifest may have. The OCI and Docker image configs are among
// them because cosign's classic .sig and .att manifests carry one (with artifact layers, so nothing to run).
var artifactConfigTypes = map[string]bool{
	"application/vnd.oci.empty.v1+json":                 true,
	"application/vnd.oci.image.config.v1+json":          true, // cosign classic signatures and attestations
	"application/vnd.docker.container.image.v1+json":    true, // the same, with COSIGN_DOCKER_MEDIA_TYPES
	"application/vnd.cncf.notary.signature":             true, // Notation
	"application/vnd.dev.cosign.artifact.sig.v1+json":   true,
	"application/vnd.dev.cosign.artifact.att.v1+json":   true,
	"application/vnd.dev.cosign.artifact.sbom.v1+json":  true,
	"application/vnd.unknown.config.v1+json":            true, // ORAS's default
	"application/vnd.cncf.oras.artifact.config.v1+json": true,
}

// IsArtifactLayerType reports whether mt is the media type of a signature, attestation, SBOM, VEX or bundle.
func IsArtifactLayerType(mt string) bool {
	b := base(mt)
	if artifactLayerTypes[b] {
		return true
	}
	for _, p := range artifactLayerPrefixes {
		if strings.HasPrefix(b, p) {
			return true
		}
	}
	return false
}

// ArtifactOf reports why the manifest is not an artifact of the image subject, or nil when it is one: an image
// or artifact manifest (no child manifests) whose every layer is a signature, attestation, SBOM, VEX or bundle
// type, whose config is empty or a known artifact config, and whose subject, when it names one, is subject.
// Such a manifest can be served along with an admitted image; it admits nothing else (it has no children), and
// its blobs are what a verifier reads, not a filesystem.
func (c Contents) ArtifactOf(subject digest.Digest) error {
	if c.IsIndex() {
		return fmt.Errorf("it is an index (%s), not an artifact", c.MediaType)
	}
	switch base(c.MediaType) {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest, MediaTypeOCIArtifact:
	default:
		return fmt.Errorf("media type %s is not an artifact manifest", c.MediaType)
	}
	if c.Subject != nil && c.Subject.Digest != subject {
		return fmt.Errorf("its subject is %s, not %s", c.Subject.Digest, subject)
	}
	if c.Config != nil && !artifactConfigTypes[base(c.Config.MediaType)] {
		return fmt.Errorf("its config type %q is not an artifact config", c.Config.MediaType)
	}
	if len(c.Layers) == 0 {
		return fmt.Errorf("it has no content")
	}
	for _, l := range c.Layers {
		if !IsArtifactLayerType(l.MediaType) {
			return fmt.Errorf("layer %s has media type %q, not a signature, attestation, SBOM or bundle type", l.Digest, l.MediaType)
		}
	}
	return nil
}

// base strips media type parameters and case.
func base(mt string) string {
	b, _, _ := strings.Cut(mt, ";")
	return strings.ToLower(strings.TrimSpace(b))
}
