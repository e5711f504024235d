package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

// SignatureVerifier checks cosign signatures and attestations. *verifier.Verifier implements it.
type SignatureVerifier interface {
	Signatures(ctx context.Context, t verifier.Target, roots []string) (map[string]policy.SignatureResult, error)
	Attestations(ctx context.Context, t verifier.Target, roots []string) ([]policy.Attestation, error)
}

// endpointer is the part of an upstream client that other registry clients (cosign's) need to reach the same
// upstream with the same credentials. *upstream.Client implements it.
type endpointer interface {
	Endpoint() *url.URL
	Transport() http.RoundTripper
}

// VerifierEvidence gathers facts with a SignatureVerifier, reaching each upstream through its own client's
// transport.
type VerifierEvidence struct {
	verifier  SignatureVerifier
	upstreams map[string]endpointer
}

var _ Evidence = (*VerifierEvidence)(nil)

// NewEvidence returns the Evidence that checks signatures and attestations on the given upstreams.
func NewEvidence(v SignatureVerifier, ups []*Upstream) (*VerifierEvidence, error) {
	e := &VerifierEvidence{verifier: v, upstreams: map[string]endpointer{}}
	for _, u := range ups {
		ep, ok := u.Registry.(endpointer)
		if !ok {
			return nil, fmt.Errorf("evidence: upstream %s's client cannot be reached by the verifier", u.Name)
		}
		e.upstreams[u.Name] = ep
	}
	return e, nil
}

// Gather collects what req asks for: image signatures by the named roots and verified attestations.
func (e *VerifierEvidence) Gather(ctx context.Context, s Subject, req policy.Requirements) (policy.Facts, error) {
	var f policy.Facts
	ep, ok := e.upstreams[s.Upstream]
	if !ok {
		return f, fmt.Errorf("upstream %s is not known to the verifier", s.Upstream)
	}
	u := ep.Endpoint()
	t := verifier.Target{Registry: u.Host, Insecure: u.Scheme == "http", Repository: s.Repository, Digest: s.Digest, Transport: ep.Transport()}
	if roots := req.SignedBy.Roots(); len(roots) > 0 {
		sigs, err := e.verifier.Signatures(ctx, t, roots)
		if err != nil {
			return f, fmt.Errorf("signatures: %w", err)
		}
		f.Signatures = sigs
	}
	var attRoots []string
	for _, a := range req.Attestations {
		attRoots = append(attRoots, a.SignedBy.Roots()...)
	}
	if len(attRoots) > 0 {
		atts, err := e.verifier.Attestations(ctx, t, attRoots)
		if err != nil {
			return f, fmt.Errorf("attestations: %w", err)
		}
		f.Attestations = atts
	}
	return f, nil
}
