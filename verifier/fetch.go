package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/signature"
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

// session is one look at one image's evidence, for one decision: the
// signatures and the attestations it asks about. Every read goes through the
// Source once per session, whichever kind of evidence needs it first, and
// later needs wait for it: the referrers index (listed as soon as the
// session opens, beside the classic tags), referrer manifests, blobs and
// parsed bundles. Each kind has a budget of its own (see budget).
type session struct {
	ctx          context.Context
	src          Source
	ref          string // registry/repository@digest, in reasons
	repo         string
	dgst         digest.Digest
	hash         v1.Hash
	maxReferrers int
	maxLayers    int

	// The referrers listing runs from open until close or until it is read.
	stopListing context.CancelFunc
	listed      chan struct{}
	listing     referrersList

	manifests memo[digest.Digest, []byte] // referrer manifests by digest
	blobs     memo[blobKey, []byte]       // layers and bundles, as their descriptors name them
	parsed    memo[blobKey, parsedBundle] // bundles, parsed once
}

// referrersList is the image's referrers index, as listed.
type referrersList struct {
	descs []ocispec.Descriptor
	size  int64 // bytes read: each kind's budget counts them
	err   error // ErrUnavailable, or invalid evidence
}

// open prepares a session for t, read through t.Source or a client built for
// it.
func (v *Verifier) open(ctx context.Context, t Target) (*session, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	hash, err := v1.NewHash(t.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("verifier: target digest: %w", err)
	}
	src, err := v.source(t)
	if err != nil {
		return nil, err
	}
	return &session{
		ctx:          ctx,
		src:          src,
		ref:          t.Registry + "/" + t.Repository + "@" + t.Digest.String(),
		repo:         t.Repository,
		dgst:         t.Digest,
		hash:         hash,
		maxReferrers: v.maxReferrers,
		maxLayers:    v.maxLayers,
	}, nil
}

// startListing lists the image's referrers in the background, beside the
// classic tags: one kind or the other will most likely want them.
func (s *session) startListing() {
	ctx, cancel := context.WithCancel(s.ctx)
	s.stopListing, s.listed = cancel, make(chan struct{})
	go func() {
		defer close(s.listed)
		s.listing = s.list(ctx)
	}()
}

// close stops what the session started and nobody waited for: a listing of
// referrers that no kind needed after all.
func (s *session) close() {
	if s.stopListing != nil {
		s.stopListing()
		<-s.listed
	}
}

// tag returns the image's cosign tag with suffix: sha256-<hex>.sig for "sig",
// sha256-<hex> (the referrers fallback tag) for "".
func (s *session) tag(suffix string) string {
	t := s.hash.Algorithm + "-" + s.hash.Hex
	if suffix != "" {
		t += "." + suffix
	}
	return t
}

// classic reads the signatures (k is signatureKind) or attestations
// (attestationKind) stored under the image's cosign tag, drawing on b. The
// manifest's descriptors are checked against the bounds and against what is
// left of the budget before any layer is fetched, and each layer is read with
// a cap. An artifact or a layer that breaks a bound, is malformed or does not
// match its descriptor is returned as invalid; a registry failure is an error.
func (s *session) classic(k evidenceKind, b *budget) (sigs []oci.Signature, invalid []error, err error) {
	tag := s.tag(k.suffix)
	what := k.name + " artifact " + tag
	raw, _, _, err := s.src.Manifest(s.ctx, s.repo, tag, nil)
	switch {
	case isNotFound(err):
		return nil, nil, nil // no such tag: no evidence of this format
	case err != nil:
		err = readFailure(what, err)
		if errors.Is(err, ErrUnavailable) {
			return nil, nil, err
		}
		return nil, []error{err}, nil
	}
	if err := s.fitManifest(b, what, raw); err != nil {
		return nil, []error{err}, nil
	}
	c, err := manifest.Parse(raw)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", what, err)}, nil
	}
	if err := checkArtifact(what, c, s.maxLayers, k); err != nil {
		return nil, []error{err}, nil
	}
	size := layersSize(c)
	if err := b.take(size, fmt.Sprintf("%s has %d layers of %d bytes in all", what, len(c.Layers), size)); err != nil {
		return nil, []error{err}, nil
	}
	for _, desc := range c.Layers {
		payload, err := s.layer(what, desc)
		switch {
		case errors.Is(err, ErrUnavailable):
			return nil, nil, err
		case err != nil:
			invalid = append(invalid, err)
			continue
		}
		sigs = append(sigs, classicSignature(desc, payload))
	}
	return sigs, invalid, nil
}

// fitManifest counts a manifest or index of the evidence what, read through
// its cap, against b; one larger than maxManifestSize (a registry client
// with a larger cap) is refused.
func (s *session) fitManifest(b *budget, what string, raw []byte) error {
	if len(raw) > maxManifestSize {
		return exceeded("%s is more than %s", what, bytesString(maxManifestSize))
	}
	return b.take(int64(len(raw)), fmt.Sprintf("%s is %d bytes", what, len(raw)))
}

// layer returns the content of the layer desc of the artifact what (which
// names it in reasons), once checkLayer passed it and the budget took it: a
// blob other than desc says is invalid evidence, a failure to read it
// ErrUnavailable.
func (s *session) layer(what string, desc ocispec.Descriptor) ([]byte, error) {
	key := blobKey{digest: desc.Digest, size: desc.Size}
	b, err := s.blobs.do(key, func() ([]byte, error) { return fetchBlob(s.ctx, s.src, s.repo, key) })
	if err != nil {
		return nil, readFailure(what+" layer "+desc.Digest.String(), err)
	}
	return b, nil
}

// classicSignature is the cosign signature in the layer desc of a .sig or
// .att artifact, whose payload was read (bounded, and checked against desc).
func classicSignature(desc ocispec.Descriptor, payload []byte) oci.Signature {
	d := v1.Descriptor{
		MediaType:   types.MediaType(desc.MediaType),
		Size:        desc.Size,
		Digest:      v1.Hash{Algorithm: desc.Digest.Algorithm().String(), Hex: desc.Digest.Encoded()},
		Annotations: desc.Annotations,
	}
	return prefetched{
		sigLayer: signature.New(static.NewLayer(payload, d.MediaType), d),
		payload:  payload,
	}
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
// cosign does not copy it again.
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

// list reads the image's referrers index: through the referrers API and, on
// registries without it (CNCF Distribution), the sha256-<hex> fallback tag,
// both asked at once so that a registry without the API costs no extra round
// trip (the fallback's answer is dropped when the API answers). None when
// neither has anything. An index too large or malformed is invalid
// evidence: an error that is not ErrUnavailable.
func (s *session) list(ctx context.Context) referrersList {
	what := "referrers of " + s.ref
	a := s.askReferrers(ctx)
	idx := a.index
	switch {
	case a.err != nil:
		return referrersList{err: readFailure(what, a.err)}
	case !a.supported && isNotFound(a.tagErr):
		return referrersList{}
	case !a.supported && a.tagErr != nil:
		return referrersList{err: readFailure(what, a.tagErr)}
	case !a.supported:
		idx = a.tag
	}
	if len(idx) > maxManifestSize {
		return referrersList{err: exceeded("%s: the index is more than %s", what, bytesString(maxManifestSize))}
	}
	c, err := manifest.Parse(idx)
	if err != nil {
		return referrersList{err: fmt.Errorf("referrers index: %w", err)}
	}
	if !c.IsIndex() {
		return referrersList{err: fmt.Errorf("referrers index: %s is a manifest, not an index", s.tag(""))}
	}
	return referrersList{descs: c.Manifests, size: int64(len(idx))}
}

// referrersAnswers is what the registry said about an image's referrers.
type referrersAnswers struct {
	index     []byte // the referrers API's index
	supported bool   // the registry has the referrers API
	err       error  // the referrers API could not be asked
	tag       []byte // the fallback tag's index
	tagErr    error
}

// askReferrers asks the referrers API and the sha256-<hex> fallback tag at once, or only the one the registry
// answers when the source knows which (and the fallback tag after all when the API is gone).
func (s *session) askReferrers(ctx context.Context) referrersAnswers {
	askAPI, askTag := true, true
	if k, ok := s.src.(ReferrersAPIKnower); ok {
		if supported, known := k.ReferrersAPI(); known {
			askAPI, askTag = supported, !supported
		}
	}
	var a referrersAnswers
	readTag := func() { a.tag, _, _, a.tagErr = s.src.Manifest(ctx, s.repo, s.tag(""), manifest.AcceptTypes()) }
	done := make(chan struct{})
	switch {
	case askTag && askAPI:
		go func() {
			defer close(done)
			readTag()
		}()
	case askTag:
		readTag()
		close(done)
	default:
		close(done)
	}
	if askAPI {
		a.index, a.supported, a.err = s.src.Referrers(ctx, s.repo, s.dgst, "")
	}
	<-done
	if !askTag && a.err == nil && !a.supported {
		readTag()
	}
	return a
}

// ReferrersAPIKnower is a Source that knows whether its registry has the referrers API (upstream.Client learns it
// from the registry's answers): the listing then asks only the API, or only the fallback tag. A Source that wraps
// another passes the question on.
type ReferrersAPIKnower interface {
	ReferrersAPI() (supported, known bool)
}

// referrers waits for the listing and counts it against b.
func (s *session) referrers(b *budget) ([]ocispec.Descriptor, error) {
	<-s.listed
	l := s.listing
	if l.err != nil {
		return nil, l.err
	}
	if err := b.take(l.size, fmt.Sprintf("the referrers index of %s is %d bytes", s.ref, l.size)); err != nil {
		return nil, err
	}
	return l.descs, nil
}

// bundles reads the sigstore bundles attached to the image, at most
// maxReferrers of them, each layer bounded by k, drawing on b. Bundles that
// cannot be parsed or break a bound are returned as invalid; a registry
// failure is an error.
func (s *session) bundles(k evidenceKind, b *budget) (found []bundleEvidence, invalid []error, err error) {
	return readReferrers(s, b, maybeBundle, "referrers may hold a bundle", func(desc ocispec.Descriptor) (bundleEvidence, error) {
		return s.bundle(desc, k, b)
	})
}

// readReferrers reads, with read, the image's referrers that match picks (the listing drawn on b), at most
// maxReferrers of them (what names them in the reason when there are more). A referrer read answers errNotBundle
// for does not count as found; one that breaks a bound or is malformed is invalid, and a spent budget stops the
// reading; a registry failure is an error.
func readReferrers[T any](s *session, b *budget, picks func(ocispec.Descriptor) bool, what string, read func(ocispec.Descriptor) (T, error)) (found []T, invalid []error, err error) {
	descs, err := s.referrers(b)
	if errors.Is(err, ErrUnavailable) {
		return nil, nil, err
	}
	if err != nil {
		return nil, []error{err}, nil
	}
	n := 0
	for _, desc := range descs {
		if !picks(desc) {
			continue
		}
		if n++; n > s.maxReferrers {
			invalid = append(invalid, exceeded("more than %d %s; the rest were not read", s.maxReferrers, what))
			break
		}
		v, err := read(desc)
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
		found = append(found, v)
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
// fetched; when k.largerIsOther, a larger bundle is not k's kind of evidence
// (a signature bundle is small; an attestation may be large) and is skipped
// unread.
func (s *session) bundle(desc ocispec.Descriptor, k evidenceKind, b *budget) (bundleEvidence, error) {
	what := k.name + " referrer " + desc.Digest.String()
	c, err := s.referrerManifest(desc, what, b)
	if err != nil {
		return bundleEvidence{}, err
	}
	if c.IsIndex() || len(c.Layers) != 1 || !strings.HasPrefix(c.Layers[0].MediaType, bundleArtifactPrefix) {
		return bundleEvidence{}, errNotBundle
	}
	layer := c.Layers[0]
	if err := checkLayer(what, layer, k); err != nil {
		if k.largerIsOther && asBound(err) != nil {
			return bundleEvidence{}, errNotBundle
		}
		return bundleEvidence{}, err
	}
	if err := b.take(layer.Size, fmt.Sprintf("%s layer %s is %d bytes", what, layer.Digest, layer.Size)); err != nil {
		return bundleEvidence{}, err
	}
	content, err := s.layer(what, layer)
	if err != nil {
		return bundleEvidence{}, err
	}
	p, _ := s.parsed.do(blobKey{digest: layer.Digest, size: layer.Size}, func() (parsedBundle, error) {
		return parseBundle(content), nil
	})
	if p.err != nil {
		return bundleEvidence{}, fmt.Errorf("referrer %s: %w", desc.Digest, p.err)
	}
	return p.evidence, nil
}

// referrerManifest reads the referrer manifest desc once per session (the
// other kind of evidence, or the other format, may want it too), counts it
// against b as the evidence what, and parses it.
func (s *session) referrerManifest(desc ocispec.Descriptor, what string, b *budget) (manifest.Contents, error) {
	raw, err := s.manifests.do(desc.Digest, func() ([]byte, error) {
		body, _, _, err := s.src.Manifest(s.ctx, s.repo, desc.Digest.String(), nil)
		return body, err
	})
	if err != nil {
		return manifest.Contents{}, readFailure("referrer "+desc.Digest.String(), err)
	}
	if err := s.fitManifest(b, what, raw); err != nil {
		return manifest.Contents{}, err
	}
	c, err := manifest.Parse(raw)
	if err != nil {
		return manifest.Contents{}, fmt.Errorf("referrer %s: %w", desc.Digest, err)
	}
	return c, nil
}

// parsedBundle is a bundle layer parsed, or why it could not be.
type parsedBundle struct {
	evidence bundleEvidence
	err      error
}

func parseBundle(raw []byte) parsedBundle {
	b := &sgbundle.Bundle{}
	if err := b.UnmarshalJSON(raw); err != nil {
		return parsedBundle{err: err}
	}
	if !b.MinVersion("v0.3") {
		return parsedBundle{err: errors.New("bundle version too old")}
	}
	st, err := bundleStatement(b)
	if err != nil {
		return parsedBundle{err: err}
	}
	return parsedBundle{evidence: bundleEvidence{bundle: b, statement: st}}
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

// memo runs a read once per key and hands every later caller its result,
// waiting while it runs: one session reads each thing once, whichever kind of
// evidence asks first.
type memo[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*memoCall[V]
}

type memoCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// do returns f's result for key, running f only if no call for key ran or
// runs.
func (m *memo[K, V]) do(key K, f func() (V, error)) (V, error) {
	m.mu.Lock()
	if c, ok := m.calls[key]; ok {
		m.mu.Unlock()
		<-c.done
		return c.val, c.err
	}
	c := &memoCall[V]{done: make(chan struct{})}
	if m.calls == nil {
		m.calls = map[K]*memoCall[V]{}
	}
	m.calls[key] = c
	m.mu.Unlock()
	defer close(c.done)
	c.val, c.err = f()
	return c.val, c.err
}
