package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/portcullis/portcullis/internal/manifest"
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
)

// session is one look at one image's evidence: the image reference, its hash,
// remote options sharing one puller (one auth handshake per call), and the
// budget everything the session reads draws on. A session serves one call:
// the Signatures and Attestations calls of one decision each open their own,
// so each reads the referrers and bundles and has a budget of its own.
// Sharing one would need a per-decision handle in the API (see the proxy's
// Gather), not a cache here.
type session struct {
	ref          name.Digest
	hash         v1.Hash
	ropts        []remote.Option
	maxReferrers int
	maxLayers    int
	budget       *budget

	// refs memoizes referrers: cosign bundles and Notation signatures are
	// both found there, and one look reads the index once.
	refs     []ocispec.Descriptor
	refsErr  error
	refsRead bool
}

// open prepares a session for t, looking for evidence of kind k (which names
// the budget in reasons).
func (v *Verifier) open(ctx context.Context, t Target, k evidenceKind) (*session, error) {
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
	// Under go-containerregistry's own transports, so that every body any
	// library reads for this session is bounded, and counted.
	b := newBudget(k.name+"s", v.budget)
	tr = capped{next: tr, blob: max(v.maxSignatureSize, v.maxAttestationSize), budget: b}
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
		maxLayers:    v.maxLayers,
		budget:       b,
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

// classic reads the signatures (k is signatureKind) or attestations
// (attestationKind) stored under the image's cosign tag. The manifest's
// descriptors are checked against the bounds and against what is left of the
// budget before any layer is fetched, and each layer is read with a cap. An
// artifact or a layer that breaks a bound, is malformed or does not match its
// descriptor is returned as invalid; a registry failure is an error.
func (s *session) classic(k evidenceKind) (sigs []oci.Signature, invalid []error, err error) {
	tag := s.tag(k.suffix)
	what := k.name + " artifact " + tag.TagStr()
	found, err := ociremote.Signatures(tag, ociremote.WithRemoteOptions(s.ropts...))
	if err != nil {
		err = readFailure(what, err)
		if errors.Is(err, ErrUnavailable) {
			return nil, nil, err
		}
		return nil, []error{err}, nil
	}
	raw, err := found.RawManifest()
	if err != nil {
		return nil, nil, unavailable("read "+tag.String(), err)
	}
	c, err := manifest.Parse(raw)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", what, err)}, nil
	}
	if err := checkArtifact(what, c, s.maxLayers, k); err != nil {
		return nil, []error{err}, nil
	}
	size := layersSize(c)
	if err := s.budget.fit(size, fmt.Sprintf("%s has %d layers of %d bytes in all", what, len(c.Layers), size)); err != nil {
		return nil, []error{err}, nil
	}
	layers, err := found.Get()
	if err != nil {
		// The manifest was read; what go-containerregistry or cosign refuse
		// in it is the content's fault.
		return nil, []error{fmt.Errorf("%s: %w", what, err)}, nil
	}
	if len(layers) != len(c.Layers) {
		return nil, []error{fmt.Errorf("%s: %d layers read, %d listed", what, len(layers), len(c.Layers))}, nil
	}
	for i, l := range layers {
		desc := c.Layers[i]
		if d, err := l.Digest(); err != nil || d.String() != desc.Digest.String() {
			return nil, []error{fmt.Errorf("%s: layer %d is not %s", what, i, desc.Digest)}, nil
		}
		payload, err := readCapped(what, l, desc, k) // the one blob fetch per layer
		switch {
		case errors.Is(err, ErrUnavailable):
			return nil, nil, err
		case isBudget(err):
			return sigs, append(invalid, err), nil // nothing more can be read
		case err != nil:
			invalid = append(invalid, err)
			continue
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

// readFailure sorts an error met while reading the evidence what: the
// connection's or the registry's fault (see isTransportFailure) is
// ErrUnavailable; anything else is the content's fault (a bound broken, a
// manifest go-containerregistry refuses, an index where an image manifest
// belongs) and is returned as invalid evidence, so that what a pusher puts
// in the upstream can never turn into "could not decide".
func readFailure(what string, err error) error {
	if be := asBound(err); be != nil {
		return be
	}
	if isTransportFailure(err) {
		return unavailable("read "+what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// asBound returns the bound err broke, or nil.
func asBound(err error) *boundError {
	var be *boundError
	if errors.As(err, &be) {
		return be
	}
	return nil
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

// referrers returns the descriptors in the image's referrers index, through
// the referrers API or the sha256-<hex> fallback tag on registries without it
// (none when neither has anything). An index too large or malformed is
// invalid evidence: an error that is not ErrUnavailable.
func (s *session) referrers() ([]ocispec.Descriptor, error) {
	if !s.refsRead {
		s.refs, s.refsErr = s.readReferrers()
		s.refsRead = true
	}
	return s.refs, s.refsErr
}

func (s *session) readReferrers() ([]ocispec.Descriptor, error) {
	idx, err := remote.Referrers(s.ref, s.ropts...)
	if err != nil {
		return nil, readFailure("referrers of "+s.ref.String(), err)
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, unavailable("list referrers of "+s.ref.String(), err)
	}
	c, err := manifest.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	return c.Manifests, nil
}

// bundles reads the sigstore bundles attached to the image, at most
// maxReferrers of them, each layer bounded by k. Bundles that cannot be
// parsed or break a bound are returned as invalid; a registry failure is an
// error.
func (s *session) bundles(k evidenceKind) (found []bundleEvidence, invalid []error, err error) {
	descs, err := s.referrers()
	if errors.Is(err, ErrUnavailable) {
		return nil, nil, err
	}
	if err != nil {
		return nil, []error{err}, nil
	}
	n := 0
	for _, desc := range descs {
		if !maybeBundle(desc) {
			continue // not sigstore's: an SBOM, a Notation signature, ...
		}
		if n++; n > s.maxReferrers {
			invalid = append(invalid, exceeded("more than %d referrers may hold a bundle; the rest were not read", s.maxReferrers))
			break
		}
		b, err := s.bundle(desc, k)
		switch {
		case errors.Is(err, errNotBundle):
			continue
		case errors.Is(err, ErrUnavailable):
			return nil, nil, err
		case isBudget(err):
			return found, append(invalid, err), nil // nothing more can be read
		case err != nil:
			invalid = append(invalid, err)
			continue
		}
		found = append(found, b)
	}
	return found, invalid, nil
}

// errNotBundle marks a referrer that turned out not to hold a sigstore bundle
// of the kind looked for.
var errNotBundle = errors.New("not a sigstore bundle")

// maybeBundle reports whether the referrer desc may hold a sigstore bundle:
// its artifactType says so, or it says nothing useful. Some registries (go-
// containerregistry's pkg/registry among them) report the config media type,
// which for cosign's bundles is the OCI empty descriptor's, instead of the
// manifest's artifactType.
func maybeBundle(desc ocispec.Descriptor) bool {
	switch {
	case strings.HasPrefix(desc.ArtifactType, bundleArtifactPrefix):
		return true
	case desc.ArtifactType == "" || desc.ArtifactType == emptyConfigType:
		return true
	}
	return false
}

// bundle fetches and parses the bundle in the referrer manifest desc. Its
// one layer is checked against k's bound and the budget before it is
// fetched; when
// k.largerIsOther, a larger bundle is not k's kind of evidence (a signature
// bundle is small; an attestation may be large) and is skipped unread.
func (s *session) bundle(desc ocispec.Descriptor, k evidenceKind) (bundleEvidence, error) {
	got, c, err := s.referrerManifest(desc)
	if err != nil {
		return bundleEvidence{}, err
	}
	if c.IsIndex() || len(c.Layers) != 1 || !strings.HasPrefix(c.Layers[0].MediaType, bundleArtifactPrefix) {
		return bundleEvidence{}, errNotBundle
	}
	layer := c.Layers[0]
	what := k.name + " referrer " + desc.Digest.String()
	if err := checkLayer(what, layer, k); err != nil {
		if k.largerIsOther && asBound(err) != nil {
			return bundleEvidence{}, errNotBundle
		}
		return bundleEvidence{}, err
	}
	if err := s.budget.fit(layer.Size, fmt.Sprintf("%s layer %s is %d bytes", what, layer.Digest, layer.Size)); err != nil {
		return bundleEvidence{}, err
	}
	img, err := layers(got, desc)
	if err != nil {
		return bundleEvidence{}, err
	}
	raw, err := readLayer(what, img, layer, k)
	if err != nil {
		return bundleEvidence{}, err
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

// referrerManifest fetches the referrer manifest desc (bounded, like every
// read of the session) and parses it. Nothing more is fetched until the
// caller, having checked the layers, asks the result for one (layers).
func (s *session) referrerManifest(desc ocispec.Descriptor) (*remote.Descriptor, manifest.Contents, error) {
	ref := s.ref.Context().Digest(desc.Digest.String())
	got, err := remote.Get(ref, s.ropts...)
	if err != nil {
		return nil, manifest.Contents{}, readFailure("referrer "+desc.Digest.String(), err)
	}
	c, err := manifest.Parse(got.Manifest)
	if err != nil {
		return nil, manifest.Contents{}, fmt.Errorf("referrer %s: %w", desc.Digest, err)
	}
	return got, c, nil
}

// layers returns the layer source of the referrer got.
func layers(got *remote.Descriptor, desc ocispec.Descriptor) (layerSource, error) {
	img, err := got.Image()
	if err != nil {
		return nil, readFailure("referrer "+desc.Digest.String(), err)
	}
	return img, nil
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
