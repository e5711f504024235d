package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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
	// referrers index, as the proxy caps the manifests it serves.
	maxManifestSize = 4 << 20
	// maxErrorBody caps the body of a response that is not a success, which
	// is only ever quoted in an error.
	maxErrorBody = 64 << 10
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
		return fmt.Errorf("%s is an index, not a %s manifest", what, k.name)
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

// readLayer reads the content of the layer desc of img, the artifact what
// (which names it in reasons), once checkLayer passed it. go-containerregistry
// stops at desc.Size and checks the digest; the LimitReader bounds the read on
// its own too. A descriptor that lies (the
// content is larger, smaller or other) is invalid evidence; a transport
// failure while reading is ErrUnavailable.
func readLayer(what string, img layerSource, desc ocispec.Descriptor, k evidenceKind) ([]byte, error) {
	h, err := v1.NewHash(desc.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("%s layer %s: %w", what, desc.Digest, err)
	}
	l, err := img.LayerByDigest(h)
	if err != nil {
		return nil, readFailure(what+" layer "+desc.Digest.String(), err)
	}
	return readCapped(what, l, desc, k)
}

// layerSource is the part of v1.Image readLayer needs.
type layerSource interface {
	LayerByDigest(v1.Hash) (v1.Layer, error)
}

// readCapped reads l, described by desc, at most k.maxSize bytes; artifact
// names what l is a layer of in reasons.
func readCapped(artifact string, l v1.Layer, desc ocispec.Descriptor, k evidenceKind) ([]byte, error) {
	what := artifact + " layer " + desc.Digest.String()
	// The raw bytes (signature layers are not compressed). go-containerregistry
	// refuses a Content-Length other than desc.Size here, before reading.
	rc, err := l.Compressed()
	if err == nil {
		defer rc.Close()
	}
	var b []byte
	if err == nil {
		b, err = io.ReadAll(io.LimitReader(rc, k.maxSize+1))
	}
	switch {
	case asBound(err) != nil:
		return nil, asBound(err)
	case isTransportFailure(err):
		return nil, unavailable("read "+what, err)
	case isNotFound(err):
		return nil, fmt.Errorf("%s is not in the registry", what)
	case err != nil:
		// The registry answered, with bytes other than the descriptor's.
		return nil, fmt.Errorf("%s does not match its descriptor of %d bytes: %v", what, desc.Size, err)
	case int64(len(b)) > k.maxSize:
		return nil, exceeded("%s is more than %s", what, bytesString(k.maxSize))
	}
	return b, nil
}

// isTransportFailure reports whether err is the connection's or the
// registry's fault rather than the content's: a request that failed or was
// answered with an error status, a body read that failed, a cancelled or
// expired context. A 404 is not: it is the registry's answer that content an
// artifact names is not there, which whoever pushed the artifact controls.
func isTransportFailure(err error) bool {
	var (
		be *bodyError
		ue *url.Error
		te *transport.Error
	)
	if errors.As(err, &te) {
		return te.StatusCode != http.StatusNotFound
	}
	return errors.As(err, &be) || errors.As(err, &ue) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// isNotFound reports whether err is a registry 404.
func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// capped bounds every response body the verifier reads, whatever library
// reads it: manifests and referrers indexes at maxManifestSize, anything else
// (blobs, redirected blob downloads, tokens) at blob bytes, all of them
// together at the session's budget, and the bodies of failed requests at
// maxErrorBody (truncated, not refused, and not counted: they are dropped
// once quoted, and there are only as many as requests). Reading past a bound
// fails with a *boundError; a failure of the underlying body is marked as a
// *bodyError, so that a dropped connection is not taken for bad content.
type capped struct {
	next   http.RoundTripper
	blob   int64
	budget *budget // nil: no budget
}

func (c capped) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	what, limit := r.URL.Path, c.blob
	if strings.Contains(r.URL.Path, "/manifests/") || strings.Contains(r.URL.Path, "/referrers/") {
		limit = maxManifestSize
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body = &cappedBody{rc: resp.Body, left: maxErrorBody, truncate: true}
		return resp, nil
	}
	refuse := func(err error) (*http.Response, error) {
		resp.Body.Close()
		resp.Body = &cappedBody{err: err}
		return resp, nil
	}
	if resp.ContentLength > limit {
		return refuse(exceeded("%s is %d bytes, more than %s", what, resp.ContentLength, bytesString(limit)))
	}
	if c.budget != nil {
		if err := c.budget.fit(resp.ContentLength, fmt.Sprintf("%s is %d bytes", what, resp.ContentLength)); err != nil {
			return refuse(err)
		}
	}
	resp.Body = &cappedBody{rc: resp.Body, left: limit, tooLarge: exceeded("%s is more than %s", what, bytesString(limit)),
		budget: c.budget, what: what}
	return resp, nil
}

// cappedBody reads at most left bytes of rc, and no more than its budget has
// left; what lies beyond is an error (tooLarge, or the budget's), or the end
// of the body when truncate is set.
type cappedBody struct {
	rc       io.ReadCloser
	left     int64
	truncate bool
	tooLarge error
	err      error   // returned at once: the body is refused
	budget   *budget // nil: none
	what     string  // the body, in the budget's reason
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	left, over := b.left, b.tooLarge
	if b.budget != nil && b.budget.left() < left {
		left, over = b.budget.left(), nil
	}
	if left <= 0 {
		if b.truncate {
			return 0, io.EOF
		}
		// One byte more tells a body of exactly the bound from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			if over == nil {
				over = b.budget.exceeded("reading " + b.what + " went past it")
			}
			b.err = over
			return 0, b.err
		}
		return 0, b.wrap(err)
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.budget != nil {
		b.budget.spend(n)
	}
	return n, b.wrap(err)
}

func (b *cappedBody) wrap(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &bodyError{err: err}
}

func (b *cappedBody) Close() error {
	if b.rc == nil {
		return nil
	}
	return b.rc.Close()
}

// bodyError is a failure of the connection while a response body was read.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

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
