package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
)

const (
	// bundleArtifactPrefix starts the artifactType of a referrer that holds a
	// sigstore bundle ("application/vnd.dev.sigstore.bundle.v0.3+json").
	bundleArtifactPrefix = "application/vnd.dev.sigstore.bundle"
	// intotoPayloadType is the DSSE payload type of an in-toto statement.
	intotoPayloadType = "application/vnd.in-toto+json"
	// cosignSignPredicate is the predicate type of a bundle that is an image
	// signature rather than an attestation (cosign 2 --new-bundle-format, cosign 3).
	cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
	// emptyConfigType is the media type of the OCI empty descriptor, the
	// config of artifact manifests.
	emptyConfigType = "application/vnd.oci.empty.v1+json"
	// maxBundleSize caps one bundle layer read into memory.
	maxBundleSize = 4 << 20
)

// session is one look at one image's evidence: the image reference, its hash,
// and remote options sharing one puller (one auth handshake per call).
type session struct {
	ref          name.Digest
	hash         v1.Hash
	ropts        []remote.Option
	maxReferrers int
}

// open prepares a session for t.
func (v *Verifier) open(ctx context.Context, t Target) (*session, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	var nameOpts []name.Option
	if t.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.NewDigest(t.Registry+"/"+t.Repository+"@"+t.Digest.String(), nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("verifier: target reference: %w", err)
	}
	hash, err := v1.NewHash(t.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("verifier: target digest: %w", err)
	}
	tr := t.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	if !t.Insecure {
		tr = httpsOnly{host: ref.RegistryStr(), next: tr}
	}
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(tr),
		remote.WithAuth(authn.Anonymous),
		remote.WithUserAgent(v.userAgent),
		// Retries are the transport's business; a failure here is reported
		// at once so that the caller can fail closed.
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryStatusCodes(),
	}
	puller, err := remote.NewPuller(ropts...)
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	return &session{
		ref:          ref,
		hash:         hash,
		ropts:        append(ropts, remote.Reuse(puller)),
		maxReferrers: v.maxReferrers,
	}, nil
}

// httpsOnly sends every request for host over HTTPS. go-containerregistry
// picks plain HTTP for loopback and private addresses, or falls back to it
// when HTTPS fails there; a target that is not Insecure must never be read
// in clear text.
type httpsOnly struct {
	host string
	next http.RoundTripper
}

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && r.URL.Host == h.host {
		r = r.Clone(r.Context())
		r.URL.Scheme = "https"
	}
	return h.next.RoundTrip(r)
}

// tag returns the image's cosign tag with suffix: sha256-<hex>.sig for "sig",
// sha256-<hex> (the referrers fallback tag) for "".
func (s *session) tag(suffix string) name.Tag {
	t := s.hash.Algorithm + "-" + s.hash.Hex
	if suffix != "" {
		t += "." + suffix
	}
	return s.ref.Context().Tag(t)
}

// classic reads the signatures (suffix "sig") or attestations ("att") stored
// under the image's cosign tag. Layers that cannot be parsed are returned as
// invalid; a registry failure is an error.
func (s *session) classic(suffix string) (sigs []oci.Signature, invalid []error, err error) {
	tag := s.tag(suffix)
	found, err := ociremote.Signatures(tag, ociremote.WithRemoteOptions(s.ropts...))
	if err != nil {
		return nil, nil, unavailable("read "+tag.String(), err)
	}
	layers, err := found.Get()
	if err != nil {
		return nil, nil, unavailable("read "+tag.String(), err)
	}
	for _, l := range layers {
		payload, err := l.Payload() // the one blob fetch per layer
		if err != nil {
			return nil, nil, unavailable("read "+tag.String()+" layer", err)
		}
		sig, err := static.Copy(prefetched{sigLayer: l, payload: payload})
		if err != nil {
			invalid = append(invalid, err)
			continue
		}
		sigs = append(sigs, sig)
	}
	return sigs, invalid, nil
}

// prefetched is a signature layer whose payload was already read, so that
// static.Copy does not fetch it again and its errors are about content only.
type prefetched struct {
	sigLayer
	payload []byte
}

// sigLayer names oci.Signature for embedding (its method set has a
// Signature method, which an embedded field of that name would shadow).
type sigLayer = oci.Signature

func (p prefetched) Payload() ([]byte, error) { return p.payload, nil }

// bundleEvidence is one sigstore bundle attached to the image, with its
// in-toto statement as claimed (trusted only after verification).
type bundleEvidence struct {
	bundle    *sgbundle.Bundle
	statement statement
}

// statement is the part of an in-toto statement the verifier reads.
type statement struct {
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// referrers returns the image's referrers index through the referrers API,
// or the sha256-<hex> fallback tag on registries without it (empty when
// neither has anything).
func (s *session) referrers() (*v1.IndexManifest, error) {
	idx, err := remote.Referrers(s.ref, s.ropts...)
	if err != nil {
		return nil, unavailable("list referrers of "+s.ref.String(), err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, unavailable("list referrers of "+s.ref.String(), err)
	}
	return m, nil
}

// bundles reads the sigstore bundles attached to the image, at most
// maxReferrers of them. Bundles that cannot be parsed are returned as
// invalid; a registry failure is an error.
func (s *session) bundles() (found []bundleEvidence, invalid []error, err error) {
	idx, err := s.referrers()
	if err != nil {
		return nil, nil, err
	}
	n := 0
	for _, desc := range idx.Manifests {
		if !maybeBundle(desc) {
			continue // not sigstore's: an SBOM, a Notation signature, ...
		}
		if n++; n > s.maxReferrers {
			break
		}
		b, err := s.bundle(desc)
		switch {
		case errors.Is(err, errNotBundle):
			continue
		case errors.Is(err, ErrUnavailable):
			return nil, nil, err
		case err != nil:
			invalid = append(invalid, err)
			continue
		}
		found = append(found, b)
	}
	return found, invalid, nil
}

// errNotBundle marks a referrer that turned out not to hold a sigstore bundle.
var errNotBundle = errors.New("not a sigstore bundle")

// maybeBundle reports whether the referrer desc may hold a sigstore bundle:
// its artifactType says so, or it says nothing useful. Some registries (go-
// containerregistry's pkg/registry among them) report the config media type,
// which for cosign's bundles is the OCI empty descriptor's, instead of the
// manifest's artifactType.
func maybeBundle(desc v1.Descriptor) bool {
	switch {
	case strings.HasPrefix(desc.ArtifactType, bundleArtifactPrefix):
		return true
	case desc.ArtifactType == "" || desc.ArtifactType == emptyConfigType:
		return true
	}
	return false
}

// bundle fetches and parses the bundle in the referrer manifest desc.
func (s *session) bundle(desc v1.Descriptor) (bundleEvidence, error) {
	ref := s.ref.Context().Digest(desc.Digest.String())
	img, err := remote.Image(ref, s.ropts...)
	if err != nil {
		return bundleEvidence{}, unavailable("read bundle "+ref.String(), err)
	}
	m, err := img.Manifest()
	if err != nil {
		return bundleEvidence{}, unavailable("read bundle "+ref.String(), err)
	}
	if len(m.Layers) != 1 || !strings.HasPrefix(string(m.Layers[0].MediaType), bundleArtifactPrefix) {
		return bundleEvidence{}, errNotBundle
	}
	raw, err := readLayer(img, m.Layers[0])
	if err != nil {
		return bundleEvidence{}, unavailable("read bundle "+ref.String(), err)
	}
	b := &sgbundle.Bundle{}
	if err := b.UnmarshalJSON(raw); err != nil {
		return bundleEvidence{}, fmt.Errorf("referrer %s: %w", desc.Digest, err)
	}
	if !b.MinVersion("v0.3") {
		return bundleEvidence{}, fmt.Errorf("referrer %s: bundle version too old", desc.Digest)
	}
	st, err := bundleStatement(b)
	if err != nil {
		return bundleEvidence{}, fmt.Errorf("referrer %s: %w", desc.Digest, err)
	}
	return bundleEvidence{bundle: b, statement: st}, nil
}

// readLayer reads one layer of img, at most maxBundleSize bytes; the remote
// layer checks its digest as it is read.
func readLayer(img v1.Image, desc v1.Descriptor) ([]byte, error) {
	if desc.Size > maxBundleSize {
		return nil, fmt.Errorf("layer %s is %d bytes, more than %d", desc.Digest, desc.Size, maxBundleSize)
	}
	l, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxBundleSize+1))
}

// bundleStatement returns the in-toto statement of a DSSE bundle.
func bundleStatement(b *sgbundle.Bundle) (statement, error) {
	env, ok := b.Content.(*protobundle.Bundle_DsseEnvelope)
	if !ok || env.DsseEnvelope == nil {
		return statement{}, errors.New("bundle holds no DSSE envelope")
	}
	if env.DsseEnvelope.PayloadType != intotoPayloadType {
		return statement{}, fmt.Errorf("DSSE payload type %q, want %q", env.DsseEnvelope.PayloadType, intotoPayloadType)
	}
	return parseStatement(env.DsseEnvelope.Payload)
}

func parseStatement(payload []byte) (statement, error) {
	var st statement
	if err := json.NewDecoder(bytes.NewReader(payload)).Decode(&st); err != nil {
		return statement{}, fmt.Errorf("in-toto statement: %w", err)
	}
	if st.PredicateType == "" {
		return statement{}, errors.New("in-toto statement has no predicate type")
	}
	return st, nil
}

// isNotFound reports whether err is a registry 404.
func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// manifestBlobs lists the config and layer digests of an image manifest; an
// index has none of its own.
func manifestBlobs(mediaType types.MediaType, raw []byte) ([]v1.Hash, error) {
	if mediaType.IsIndex() {
		return nil, nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	out := make([]v1.Hash, 0, 1+len(m.Layers))
	if m.Config.Digest.Hex != "" {
		out = append(out, m.Config.Digest)
	}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out, nil
}
