package manifest

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest and index media types: every type a registry serves as a manifest.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	// MediaTypeOCIArtifact is the short-lived OCI artifact manifest (image-spec 1.1 release candidates), whose
	// contents are "blobs" rather than "layers".
	MediaTypeOCIArtifact = "application/vnd.oci.artifact.manifest.v1+json"
)

// AcceptTypes is the one Accept list for a manifest request: the OCI and Docker v2 manifest and index types,
// index first. Portcullis sends it upstream when it resolves a tag or its caller names no types, and a client that
// sends no Accept gets these. Each call returns a new slice, so callers may keep or change it.
func AcceptTypes() []string {
	return []string{ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, MediaTypeDockerManifestList, MediaTypeDockerManifest}
}

// IsManifestType reports whether mt is a manifest or index media type (parameters ignored).
func IsManifestType(mt string) bool {
	switch base(mt) {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList,
		MediaTypeDockerSchema1, MediaTypeDockerSchema1JWS, MediaTypeOCIArtifact:
		return true
	}
	return false
}

// IsIndexType reports whether mt is an index (manifest list) media type.
func IsIndexType(mt string) bool {
	switch base(mt) {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// Contents is what one manifest refers to.
type Contents struct {
	// MediaType is the manifest's own mediaType field, or, when it has none, what its shape says (an OCI index
	// when it lists manifests, Docker schema 1 when it has fsLayers, an OCI image manifest otherwise).
	MediaType string
	// ArtifactType is the manifest's artifactType field, if any.
	ArtifactType string
	// Config is the config descriptor; nil for an index, a schema 1 manifest and an OCI artifact manifest.
	Config *ocispec.Descriptor
	// Layers are the content blobs: an image manifest's layers, an OCI artifact manifest's blobs, or a schema 1
	// manifest's fsLayers (by blobSum, media type and size unknown).
	Layers []ocispec.Descriptor
	// Manifests are an index's children.
	Manifests []ocispec.Descriptor
	// Subject is the manifest this one refers to (a referrer's image); nil when it has none.
	Subject *ocispec.Descriptor
}

// raw is every field of every manifest shape Parse reads.
type raw struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Blobs         []ocispec.Descriptor `json:"blobs"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	FSLayers      []struct {
		BlobSum digest.Digest `json:"blobSum"`
	} `json:"fsLayers"`
}

// ErrMalformed is wrapped by every Parse error: the bytes are not a manifest Portcullis can read.
var ErrMalformed = errors.New("malformed manifest")

// Parse reads a manifest's contents. Every descriptor must carry a valid digest: a manifest that names
// something it cannot address is malformed.
func Parse(body []byte) (Contents, error) {
	var m raw
	if err := json.Unmarshal(body, &m); err != nil {
		return Contents{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	c := Contents{MediaType: m.mediaType(), ArtifactType: m.ArtifactType, Config: m.Config, Subject: m.Subject}
	c.Layers = append(append(c.Layers, m.Layers...), m.Blobs...)
	for _, l := range m.FSLayers {
		c.Layers = append(c.Layers, ocispec.Descriptor{Digest: l.BlobSum, Size: -1})
	}
	c.Manifests = m.Manifests
	check := func(what string, d *ocispec.Descriptor) error {
		if d == nil {
			return nil
		}
		if err := d.Digest.Validate(); err != nil {
			return fmt.Errorf("%w: %s digest %q: %v", ErrMalformed, what, d.Digest, err)
		}
		return nil
	}
	if err := errors.Join(check("config", c.Config), check("subject", c.Subject)); err != nil {
		return Contents{}, err
	}
	for i := range c.Layers {
		if err := check("layer", &c.Layers[i]); err != nil {
			return Contents{}, err
		}
	}
	for i := range c.Manifests {
		if err := check("child manifest", &c.Manifests[i]); err != nil {
			return Contents{}, err
		}
	}
	return c, nil
}

// mediaType is the manifest's mediaType field, or what its shape says when it has none.
func (m *raw) mediaType() string {
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.SchemaVersion == 1 || m.FSLayers != nil:
		return MediaTypeDockerSchema1JWS
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	}
	return ocispec.MediaTypeImageManifest
}

// MediaTypeOf returns a manifest's media type as Parse would, without checking its descriptors: what to send as
// Content-Type for stored bytes. The error says the bytes are not JSON.
func MediaTypeOf(body []byte) (string, error) {
	var m raw
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m.mediaType(), nil
}

// IsIndex reports whether the manifest is an index: it lists child manifests.
func (c Contents) IsIndex() bool { return IsIndexType(c.MediaType) || len(c.Manifests) > 0 }

// Blobs returns every blob the manifest names: its config, then its layers.
func (c Contents) Blobs() []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, 0, 1+len(c.Layers))
	if c.Config != nil {
		out = append(out, *c.Config)
	}
	return append(out, c.Layers...)
}
