package admission

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
	"github.com/portcullis/portcullis/verifier/report"
)

// SignatureVerifier checks cosign signatures and attestations: one Verify per decision reads the image's evidence
// once for both. *verifier.Verifier implements it.
type SignatureVerifier interface {
	Verify(ctx context.Context, t verifier.Target, q verifier.Query) (verifier.Findings, error)
}

// Endpoint is the upstream client the verifier reads an upstream's evidence through: its token cache and connection
// pool, its scheme (nothing is probed), its credentials (sent to that upstream only). *upstream.Client implements it.
type Endpoint interface {
	Endpoint() *url.URL
	verifier.Source
}

// VerifierEvidence gathers facts with a SignatureVerifier, reaching each upstream through its own client (the
// artifacts it reads by digest kept in the ArtifactStore, if any), and, for rules with a scan gate, vulnerability
// reports from attestations, CI and scanners.
type VerifierEvidence struct {
	verifier  SignatureVerifier
	upstreams map[string]upstreamEvidence
	scan      *Scanning
	notary    NotaryTrust // nil: no notary roots
	now       func() time.Time
}

// upstreamEvidence is one upstream as the verifier reaches it.
type upstreamEvidence struct {
	endpoint *url.URL
	source   verifier.Source
}

// EvidenceOption configures a VerifierEvidence built by NewEvidence.
type EvidenceOption func(*evidenceOptions) error

type evidenceOptions struct {
	notary     NotaryTrust
	store      ArtifactStore
	missingTTL time.Duration
	now        func() time.Time
}

// WithArtifactStore keeps the signature and attestation artifacts the verifier reads by digest (referrer manifests,
// signature and attestation layers, bundles) in s, verified, so that a re-decision, the refresher or a second policy
// reads them locally; only the cosign tags and the referrers list, which move, are asked of the upstream again.
// Default: none (every decision reads everything upstream).
func WithArtifactStore(s ArtifactStore) EvidenceOption {
	return func(o *evidenceOptions) error {
		if s == nil {
			return errors.New("admission: nil artifact store")
		}
		o.store = s
		return nil
	}
}

// WithMissingEvidenceTTL sets how long the upstream's answer that an image has no evidence of a kind (a 404 for its
// .sig or .att tag or its referrers fallback tag, an empty referrers list) is remembered, per upstream, repository and
// digest, so that a burst of pulls of an unsigned image asks the upstream once. An image signed meanwhile is seen
// once the answer lapses (its denial is cached for the deny TTL anyway). 0 turns it off. Default:
// DefaultMissingEvidenceTTL (10s).
func WithMissingEvidenceTTL(d time.Duration) EvidenceOption {
	return func(o *evidenceOptions) error {
		if d < 0 {
			return fmt.Errorf("admission: negative missing-evidence TTL %v", d)
		}
		o.missingTTL = d
		return nil
	}
}

// withEvidenceClock sets the clock the missing-evidence answers lapse by, for tests. Default: time.Now.
func withEvidenceClock(now func() time.Time) EvidenceOption {
	return func(o *evidenceOptions) error { o.now = now; return nil }
}

// Scanner scans one image on demand: the Harbor Pluggable Scanner API. *harbor.Client implements it.
type Scanner interface {
	Scan(ctx context.Context, registryURL, registryAuth, repo string, dgst digest.Digest, mediaType string) (*policy.ScanReport, error)
}

// ScannerEndpoint is a configured scanner and the registry URL it pulls through (Portcullis's own).
type ScannerEndpoint struct {
	Scanner Scanner
	// PullURL is the Portcullis registry URL as the scanner reaches it, e.g. http://portcullis:5000.
	PullURL string
}

// Scanning is what the scan gate needs besides the verifier.
type Scanning struct {
	// Reports holds CI and scanner reports and posted VEX.
	Reports *Reports
	// Credentials mints the scanner's pull credential.
	Credentials *ScanCredentials
	// Scanners by policy name.
	Scanners map[string]ScannerEndpoint
	// DefaultUpstream is the upstream reached without a path prefix; others are named by prefix to the scanner.
	DefaultUpstream string
}

var _ Evidence = (*VerifierEvidence)(nil)

// NewEvidence returns the Evidence that checks signatures and attestations on the given upstreams (by the name
// clients use for them), and scan reports when scan is not nil.
func NewEvidence(v SignatureVerifier, upstreams map[string]Endpoint, scan *Scanning, opts ...EvidenceOption) (*VerifierEvidence, error) {
	if v == nil {
		return nil, errors.New("admission: a signature verifier is required")
	}
	o := evidenceOptions{missingTTL: DefaultMissingEvidenceTTL, now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	e := &VerifierEvidence{verifier: v, upstreams: map[string]upstreamEvidence{}, scan: scan, notary: o.notary, now: time.Now}
	for name, ep := range upstreams {
		if ep == nil {
			return nil, fmt.Errorf("admission: upstream %s has no endpoint", name)
		}
		e.upstreams[name] = upstreamEvidence{
			endpoint: ep.Endpoint(),
			source:   &artifactSource{next: ep, store: o.store, missing: newMissing(o.missingTTL, o.now)},
		}
	}
	return e, nil
}

// Gather collects what req asks for: image signatures by the named roots and verified attestations.
func (e *VerifierEvidence) Gather(ctx context.Context, s Subject, req policy.Requirements, opts GatherOptions) (policy.Facts, error) {
	var f policy.Facts
	up, ok := e.upstreams[s.Upstream]
	if !ok {
		return f, fmt.Errorf("upstream %s is not known to the verifier", s.Upstream)
	}
	q := verifier.Query{}
	var notaryRoots []string
	if roots := req.SignedBy.Roots(); len(roots) > 0 {
		q.Signatures, notaryRoots = e.splitRoots(roots)
		f.Signatures = map[string]policy.SignatureResult{}
	}
	var attRoots []string
	for _, a := range req.Attestations {
		attRoots = append(attRoots, a.SignedBy.Roots()...)
	}
	if req.Scan != nil && slices.Contains(req.Scan.Sources, policy.SourceAttestation) {
		attRoots = append(attRoots, req.Scan.SignedBy.Roots()...)
	}
	slices.Sort(attRoots)
	q.Attestations = slices.Compact(attRoots)
	if len(q.Signatures) > 0 || len(q.Attestations) > 0 {
		// One look for both: the signature, attestation and referrers lookups at once, the referrers read once.
		t := verifier.Target{Registry: up.endpoint.Host, Insecure: up.endpoint.Scheme == "http", Repository: s.Repository, Digest: s.Digest,
			Source: up.source}
		found, err := e.verifier.Verify(ctx, t, q)
		if err != nil {
			return f, err // "signatures: ..." or "attestations: ..."
		}
		if len(q.Signatures) > 0 && found.Signatures != nil {
			f.Signatures = found.Signatures
		}
		if len(q.Attestations) > 0 {
			f.Attestations, f.InvalidAttestations = found.Attestations.Verified, found.Attestations.Invalid
		}
	}
	if err := e.gatherNotary(ctx, s, notaryRoots, f.Signatures); err != nil {
		return f, err
	}
	if req.Scan != nil {
		if err := e.gatherScan(ctx, s, req.Scan, opts, &f); err != nil {
			return f, err
		}
	}
	return f, nil
}

// Predicate types the scan gate reads from verified attestations.
const (
	predicateVuln     = "https://cosign.sigstore.dev/attestation/vuln/v1"
	predicateOpenVEX  = "https://openvex.dev/ns"
	predicateOpenVEX2 = "https://openvex.dev/ns/v0.2.0"
)

// gatherScan finds the freshest report among the sources the rule accepts; with none (or only one past its
// maxAge) and a scanner to ask, it asks and waits. VEX statements about this digest join the report's own: those
// in OpenVEX attestations by the scan signers when the rule accepts attestations, and those CI posted when it
// accepts ci. Policy resolves them per finding, the latest statement winning.
func (e *VerifierEvidence) gatherScan(ctx context.Context, s Subject, req *policy.ScanRequirement, opts GatherOptions, f *policy.Facts) error {
	var attested, posted []policy.VEXStatement
	var best *policy.ScanReport
	consider := func(r *policy.ScanReport) {
		if r != nil && (best == nil || r.ScanTime.After(best.ScanTime)) {
			best = r
		}
	}
	signers := req.SignedBy.Roots()
	for _, src := range req.Sources {
		switch src {
		case policy.SourceAttestation:
			for _, a := range f.Attestations {
				if !slices.ContainsFunc(a.SignedBy, func(r string) bool { return slices.Contains(signers, r) }) {
					continue // signed, but not by a key the rule trusts for scans
				}
				switch a.PredicateType {
				case predicateVuln:
					if r, err := report.ParseCosignVuln(a.Predicate); err == nil {
						r.Source = policy.SourceAttestation
						consider(r)
					} else {
						f.ScanError = "unreadable vulnerability attestation: " + err.Error()
					}
				case predicateOpenVEX, predicateOpenVEX2:
					if st, err := report.OpenVEXFor(a.Predicate, s.Digest); err == nil {
						attested = append(attested, st...)
					}
				}
			}
		case policy.SourceCI, policy.SourceScanner:
			if e.scan != nil {
				if r, ok := e.scan.Reports.Get(ctx, src, s.Digest); ok {
					consider(r)
				}
				if src == policy.SourceCI {
					posted = e.scan.Reports.VEX(ctx, s.Digest)
				}
			}
		}
	}
	// The refresher asks for a fresh report a margin before the old one ages out, so a pull never waits for one.
	stale := best != nil && req.MaxAge > 0 && e.now().Sub(best.ScanTime) > req.MaxAge-opts.RenewWithin
	if (best == nil || stale) && req.Scanner != "" && slices.Contains(req.Sources, policy.SourceScanner) &&
		(req.OnMissing == policy.OnMissingScanAndWait || stale) {
		if opts.NoScan {
			if best == nil {
				f.ScanError = fmt.Sprintf("not scanned now: a pull would ask scanner %s and wait for its report", req.Scanner)
			}
		} else {
			r, err := e.scanNow(ctx, s, req)
			if err != nil {
				f.ScanError = err.Error()
			}
			consider(r)
		}
	}
	if best != nil {
		// Among statements of equal time the later in the list wins: the report's own, then attested, then posted.
		best.VEX = slices.Concat(best.VEX, attested, posted)
		f.Scan = best
	}
	return nil
}

// scanNow asks the rule's scanner to scan the image, handing it a credential that lets it pull this one image
// through Portcullis although it is not admitted yet, and waits at most the rule's waitTimeout.
func (e *VerifierEvidence) scanNow(ctx context.Context, s Subject, req *policy.ScanRequirement) (*policy.ScanReport, error) {
	if e.scan == nil {
		return nil, fmt.Errorf("scanner %s: scanning is not configured", req.Scanner)
	}
	ep, ok := e.scan.Scanners[req.Scanner]
	if !ok {
		return nil, fmt.Errorf("scanner %s is not configured", req.Scanner)
	}
	wait := req.WaitTimeout
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tok, err := e.scan.Credentials.Mint(ctx, s.Upstream, s.Repository, s.Digest, wait+time.Minute)
	if err != nil {
		return nil, fmt.Errorf("scanner %s: credential: %w", req.Scanner, err)
	}
	repo := s.Repository
	if s.Upstream != e.scan.DefaultUpstream {
		repo = s.Upstream + "/" + repo
	}
	r, err := ep.Scanner.Scan(ctx, ep.PullURL, "Bearer "+tok, repo, s.Digest, s.MediaType)
	if err != nil {
		return nil, fmt.Errorf("scanner %s: %w", req.Scanner, err)
	}
	if err := e.scan.Reports.Put(context.WithoutCancel(ctx), policy.SourceScanner, s.Digest, r); err != nil {
		return r, nil // the report is good for this decision even if it could not be shared
	}
	return r, nil
}
