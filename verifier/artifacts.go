package verifier

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// Artifact is one signature, attestation or bundle manifest that belongs to
// an image, so that the proxy can serve it to `cosign verify` through itself.
type Artifact struct {
	// Tag is the tag the manifest is found under: sha256-<hex>.sig,
	// sha256-<hex>.att, or sha256-<hex> for the referrers fallback index;
	// empty for a referrer reached by digest.
	Tag string
	// Digest is the manifest's digest.
	Digest digest.Digest
	// Blobs are the manifest's config and layer digests (none for an index).
	Blobs []digest.Digest
}

// Artifacts lists the cosign artifacts of the image: the manifests under its
// .sig and .att tags, the referrers fallback index under its sha256-<hex> tag,
// and every referrer manifest (from the referrers API, or from that index),
// each with its blobs. Nothing is verified here. The error is non-nil when the
// registry could not be read (ErrUnavailable).
func (v *Verifier) Artifacts(ctx context.Context, t Target) ([]Artifact, error) {
	s, err := v.open(ctx, t)
	if err != nil {
		return nil, err
	}
	var out []Artifact
	seen := map[v1.Hash]bool{}
	add := func(a Artifact, h v1.Hash) {
		if !seen[h] {
			seen[h] = true
			out = append(out, a)
		}
	}
	for _, suffix := range []string{"sig", "att", ""} {
		tag := s.tag(suffix)
		a, h, ok, err := s.artifact(tag)
		if err != nil {
			return nil, err
		}
		if ok {
			add(a, h)
		}
	}
	idx, err := s.referrers()
	if err != nil {
		return nil, err
	}
	for _, desc := range idx.Manifests {
		if seen[desc.Digest] {
			continue
		}
		a, h, ok, err := s.artifact(s.ref.Context().Digest(desc.Digest.String()))
		if err != nil {
			return nil, err
		}
		if ok {
			add(a, h)
		}
	}
	return out, nil
}

// artifact fetches the manifest at ref; ok is false when there is none.
func (s *session) artifact(ref name.Reference) (a Artifact, h v1.Hash, ok bool, err error) {
	desc, err := remote.Get(ref, s.ropts...)
	if isNotFound(err) {
		return Artifact{}, v1.Hash{}, false, nil
	}
	if err != nil {
		return Artifact{}, v1.Hash{}, false, unavailable("read "+ref.String(), err)
	}
	blobs, err := manifestBlobs(desc.MediaType, desc.Manifest)
	if err != nil {
		return Artifact{}, v1.Hash{}, false, unavailable("parse "+ref.String(), err)
	}
	a = Artifact{Digest: digest.Digest(desc.Digest.String())}
	if tag, isTag := ref.(name.Tag); isTag {
		a.Tag = tag.TagStr()
	}
	for _, b := range blobs {
		a.Blobs = append(a.Blobs, digest.Digest(b.String()))
	}
	if err := a.Digest.Validate(); err != nil {
		return Artifact{}, v1.Hash{}, false, fmt.Errorf("%w: %s: %w", ErrUnavailable, ref, err)
	}
	return a, desc.Digest, true, nil
}
