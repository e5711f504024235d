package verifier

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// Target is one image manifest in an upstream registry.
type Target struct {
	// Registry is the host[:port] of the upstream endpoint, e.g.
	// 127.0.0.1:6000 or registry-1.docker.io. It names the image in reasons,
	// and is where a registry client built for the call connects.
	Registry string
	// Insecure selects plain HTTP for a registry client built for the call.
	Insecure bool
	// Repository is upstream-relative, e.g. library/alpine.
	Repository string
	// Digest is the manifest's digest.
	Digest digest.Digest
	// Source reads the registry: the proxy's registry client for the
	// upstream (with its token cache and connection pool, and its scheme, so
	// that nothing is probed), or a decorator of it. Nil: a registry client
	// is built for the call from Registry, Insecure and Transport.
	Source Source
	// Transport carries the requests of a registry client built for the call
	// (Source nil), authenticated as the caller sees fit; retries belong here
	// too. Nil means http.DefaultTransport, anonymous (with anonymous bearer
	// tokens when the registry asks).
	Transport http.RoundTripper
}

// Query names the trust roots one look at an image checks its evidence
// against.
type Query struct {
	// Signatures are the roots whose signatures are checked; none: the
	// image's signatures are not looked for.
	Signatures []string
	// Attestations are the roots whose attestations are checked; none: the
	// image's attestations are not looked for.
	Attestations []string
}

// Findings is what Verify found.
type Findings struct {
	// Signatures has one result per root named in Query.Signatures, as
	// Signatures returns them.
	Signatures map[string]policy.SignatureResult
	// Attestations is what Attestations returns for Query.Attestations.
	Attestations AttestationResult
}

// Verifier checks cosign evidence against a fixed set of trust roots, parsed
// once by New. It holds no per-image state and is safe for concurrent use.
type Verifier struct {
	roots              map[string]*trustRoot
	userAgent          string
	maxReferrers       int
	maxLayers          int
	maxSignatureSize   int64
	maxAttestationSize int64
	budget             int64
}

// Option configures a Verifier built by New.
type Option func(*Verifier) error

// WithUserAgent sets the User-Agent sent to registries by the registry
// clients the verifier builds for a Target without a Source (a Source sends
// its own). Default: "portcullis-verifier".
func WithUserAgent(ua string) Option {
	return func(v *Verifier) error {
		v.userAgent = ua
		return nil
	}
}

// WithMaxReferrers caps how many referrers of one image that may hold a
// sigstore bundle are fetched and checked; the rest are not read, so an image
// cluttered with referrers costs a bounded number of requests. It must be
// positive. Default: 32.
func WithMaxReferrers(n int) Option {
	return func(v *Verifier) error {
		if n <= 0 {
			return fmt.Errorf("verifier: max referrers must be positive, got %d", n)
		}
		v.maxReferrers = n
		return nil
	}
}

// WithMaxArtifactLayers caps the layers of one signature or attestation
// manifest (the .sig and .att tags; a bundle has one). An artifact with more
// is invalid evidence, and none of its layers is read. It must be positive.
// Default: DefaultMaxArtifactLayers (32).
func WithMaxArtifactLayers(n int) Option {
	return func(v *Verifier) error {
		if n <= 0 {
			return fmt.Errorf("verifier: max artifact layers must be positive, got %d", n)
		}
		v.maxLayers = n
		return nil
	}
}

// WithMaxSignatureSize caps one signature layer (of the .sig tag, or a
// signature bundle), in bytes, as its descriptor states it and as it is
// read. A .sig artifact with a larger layer is invalid evidence and none of
// it is read; a larger bundle is not read as a signature (it may be an
// attestation). It must be positive. Default: DefaultMaxSignatureSize (1 MiB).
func WithMaxSignatureSize(n int64) Option {
	return func(v *Verifier) error {
		if n <= 0 {
			return fmt.Errorf("verifier: max signature size must be positive, got %d", n)
		}
		v.maxSignatureSize = n
		return nil
	}
}

// WithMaxAttestationSize caps one attestation layer (of the .att tag, or an
// attestation bundle), in bytes, as its descriptor states it and as it is
// read. An artifact with a larger layer is invalid evidence and none of it is
// read. How many such layers one image may make the verifier read is bounded
// by WithEvidenceBudget. It must be positive. Default:
// DefaultMaxAttestationSize (16 MiB).
func WithMaxAttestationSize(n int64) Option {
	return func(v *Verifier) error {
		if n <= 0 {
			return fmt.Errorf("verifier: max attestation size must be positive, got %d", n)
		}
		v.maxAttestationSize = n
		return nil
	}
}

// WithEvidenceBudget caps the bytes one look at an image (a Verify, or a
// Signatures or Attestations call) may read of its signatures, and as many of
// its attestations, each kind's evidence together: manifests, referrers
// indexes, signature and attestation layers, bundles (what both kinds read
// counts for each). It bounds the memory one look at an image can pin,
// whatever is pushed to the upstream (the per-artifact bounds alone allow 32
// layers of 16 MiB under .att, and as much again in bundles). Evidence that does not fit in what is left is refused
// unread, from its descriptors, when they say how large it is, and while it
// is read otherwise; it is invalid evidence, with a reason such as
// "attestations of this image need more than 64 MiB of evidence: ...". A
// budget below WithMaxAttestationSize is the tighter bound on one
// attestation too. It must be positive. Default: DefaultEvidenceBudget
// (64 MiB).
func WithEvidenceBudget(n int64) Option {
	return func(v *Verifier) error {
		if n <= 0 {
			return fmt.Errorf("verifier: evidence budget must be positive, got %d", n)
		}
		v.budget = n
		return nil
	}
}

// New parses every cosign trust root's material once: PEM public keys (ECDSA,
// RSA, Ed25519) and trusted_root.json documents; notary roots are left to
// package verifier/dct. A root whose material cannot be
// used is a *RootError naming it. The map key is the root's name.
func New(roots map[string]policy.TrustRoot, opts ...Option) (*Verifier, error) {
	v := &Verifier{
		roots:              make(map[string]*trustRoot, len(roots)),
		userAgent:          "portcullis-verifier",
		maxReferrers:       32,
		maxLayers:          DefaultMaxArtifactLayers,
		maxSignatureSize:   DefaultMaxSignatureSize,
		maxAttestationSize: DefaultMaxAttestationSize,
		budget:             DefaultEvidenceBudget,
	}
	for _, o := range opts {
		if err := o(v); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(roots)) {
		if roots[name].Notary != nil {
			continue // Docker Content Trust: package verifier/dct reads it
		}
		r, err := parseRoot(name, roots[name])
		if err != nil {
			return nil, &RootError{Root: name, Err: err}
		}
		v.roots[name] = r
	}
	return v, nil
}

// Verify checks the image's signatures and attestations against the roots q
// names, as Signatures and Attestations do, in one look: the .sig and .att
// tags and the referrers index are read at once, and what both kinds of
// evidence need (the referrers index, the bundles) is read once. Each kind
// reads within a budget of its own (WithEvidenceBudget). The error is non-nil
// only when the evidence could not be read (ErrUnavailable) or a root is
// unknown; it names the kind of evidence ("signatures: ...").
func (v *Verifier) Verify(ctx context.Context, t Target, q Query) (Findings, error) {
	sigRoots, err := v.lookup(q.Signatures)
	if err != nil {
		return Findings{}, err
	}
	attRoots, err := v.lookup(q.Attestations)
	if err != nil {
		return Findings{}, err
	}
	// One kind that cannot be read stops the other: the decision fails anyway.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := v.open(ctx, t)
	if err != nil {
		return Findings{}, err
	}
	f := Findings{Signatures: make(map[string]policy.SignatureResult, len(sigRoots))}
	if len(sigRoots)+len(attRoots) == 0 {
		return f, nil
	}
	s.startListing()
	defer s.close()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	fail := func(kind string, err error) {
		once.Do(func() { first = fmt.Errorf("%s: %w", kind, err); cancel() })
	}
	// Both kinds at once, each in a goroutine of its own; one kind alone runs here.
	run := func(fn func()) {
		if len(sigRoots) > 0 && len(attRoots) > 0 {
			wg.Go(fn)
			return
		}
		fn()
	}
	if len(sigRoots) > 0 {
		run(func() {
			sigs, err := v.signatures(s, sigRoots)
			if err != nil {
				fail("signatures", err)
				return
			}
			f.Signatures = sigs
		})
	}
	if len(attRoots) > 0 {
		run(func() {
			atts, err := v.attestations(s, attRoots)
			if err != nil {
				fail("attestations", err)
				return
			}
			f.Attestations = atts
		})
	}
	wg.Wait()
	if first != nil {
		return Findings{}, first
	}
	return f, nil
}

// lookup returns the parsed roots for names, in order, without duplicates.
func (v *Verifier) lookup(names []string) ([]*trustRoot, error) {
	out := make([]*trustRoot, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		r, ok := v.roots[n]
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrUnknownRoot, n)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// validate checks the parts of t that the verifier relies on.
func (t Target) validate() error {
	switch {
	case t.Registry == "":
		return errors.New("verifier: target has no registry")
	case t.Repository == "":
		return errors.New("verifier: target has no repository")
	}
	if err := t.Digest.Validate(); err != nil {
		return fmt.Errorf("verifier: target digest: %w", err)
	}
	if t.Digest.Algorithm() != digest.SHA256 {
		// cosign's tag schemas and claims are defined for sha256 only.
		return fmt.Errorf("verifier: target digest %s: only sha256 is supported", t.Digest)
	}
	return nil
}
