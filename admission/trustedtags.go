package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/dct"
)

// NotaryTrust reads Docker Content Trust (Notary v1) trust data for the policy's notary roots. *dct.Client
// implements it.
type NotaryTrust interface {
	// Has reports whether root is a notary root.
	Has(root string) bool
	// Tag returns the digest root's trust data signs for tag.
	Tag(ctx context.Context, root, upstream, repository, tag string) (dct.Tag, error)
	// Signed reports whether dgst is a signed target in root's trust data.
	Signed(ctx context.Context, root, upstream, repository string, dgst digest.Digest) (policy.SignatureResult, error)
}

var _ NotaryTrust = (*dct.Client)(nil)

// WithNotary lets the evidence answer for notary (Docker Content Trust) roots with n. Without it a rule naming a
// notary root cannot be decided (the verifier does not know the root) and denies.
func WithNotary(n NotaryTrust) EvidenceOption {
	return func(o *evidenceOptions) error {
		if n == nil {
			return errors.New("admission: nil notary trust")
		}
		o.notary = n
		return nil
	}
}

// TagSigner is Evidence that can say which digest trust data signs for a tag. *VerifierEvidence implements it.
type TagSigner interface {
	SignedTag(ctx context.Context, upstream, repository, tag string, signers policy.Signers) (TrustedTag, error)
}

var _ TagSigner = (*VerifierEvidence)(nil)

// TrustedTag is what a tag is under a rule whose signers include notary roots: the digest their trust data
// signs, as Docker resolves a tag with DOCKER_CONTENT_TRUST=1, not whatever the registry's tag points at.
type TrustedTag struct {
	// Applies is true when the tag is decided by trust data: Digest or Denied is set. False when the rule names
	// no notary root, or when its anyOf also accepts other roots and no notary root signs the tag (the registry's
	// tag then stands, and its digest must pass the rule), or when the rule does not enforce.
	Applies bool
	// Digest is the signed digest.
	Digest digest.Digest
	// Denied is the denial message when the tag is not signed as the rule requires.
	Denied string
	// Rule and Mode are the rule that matched, and Policy the hash of the policy it is in, when Applies or with
	// an error (set by Gate.TrustedTag): what explain shows for a tag the trust data denies.
	Rule   string
	Mode   policy.Mode
	Policy string
}

// TrustedTag says what trust data makes of upstream/repository:tag under the rule that matches it; see
// TrustedTag. Its error means the trust data could not be read (the notary server is unreachable and nothing
// still valid is cached): the caller denies.
func (g *Gate) TrustedTag(ctx context.Context, upstream, repository, tag string) (TrustedTag, error) {
	tt, _, err := g.view().trustedTag(ctx, upstream, repository, tag)
	return tt, err
}

// trustedTag is TrustedTag under v; reason is the denial without its prefix, as a decision's failure reads.
func (v *view) trustedTag(ctx context.Context, upstream, repository, tag string) (tt TrustedTag, reason string, err error) {
	ts, ok := v.evidence.(TagSigner)
	if !ok {
		return TrustedTag{}, "", nil
	}
	rule := v.policy.Match(upstream, repository)
	tt, err = ts.SignedTag(ctx, upstream, repository, tag, rule.Requirements().SignedBy)
	if err != nil {
		return TrustedTag{Rule: rule.Name(), Mode: rule.Mode(), Policy: v.policy.Hash()}, "", err
	}
	if !tt.Applies {
		return tt, "", nil
	}
	if tt.Denied != "" {
		if rule.Mode() != policy.ModeEnforce {
			// warn and audit admit: the registry's tag stands, and the digest's own check says what fails.
			return TrustedTag{}, "", nil
		}
		reason = tt.Denied
		tt.Denied = fmt.Sprintf("portcullis: %s/%s:%s denied by rule %q: %s", upstream, repository, tag, rule.Name(), tt.Denied)
	}
	tt.Rule, tt.Mode, tt.Policy = rule.Name(), rule.Mode(), v.policy.Hash()
	return tt, reason, nil
}

// SignedTag asks the notary roots among signers what they sign for the tag. With anyOf, the first notary root
// (in policy order) that signs it decides; with allOf, every notary root must sign it, and sign the same digest.
func (e *VerifierEvidence) SignedTag(ctx context.Context, upstream, repository, tag string, signers policy.Signers) (TrustedTag, error) {
	if e.notary == nil {
		return TrustedTag{}, nil
	}
	all := len(signers.AllOf) > 0
	roots := signers.AnyOf
	if all {
		roots = signers.AllOf
	}
	notaryRoots := slices.DeleteFunc(slices.Clone(roots), func(r string) bool { return !e.notary.Has(r) })
	if len(notaryRoots) == 0 {
		return TrustedTag{}, nil
	}
	var (
		found    digest.Digest
		foundBy  string
		failures []string
		errs     []error
	)
	for _, r := range notaryRoots {
		t, err := e.notary.Tag(ctx, r, upstream, repository, tag)
		switch {
		case errors.Is(err, dct.ErrUnreachable):
			errs = append(errs, err)
			continue
		case err != nil:
			failures = append(failures, fmt.Sprintf("not signed by %s (%v)", r, err))
			continue
		case t.Digest == "":
			failures = append(failures, fmt.Sprintf("not signed by %s (%s)", r, t.Reason))
			continue
		}
		switch {
		case found == "":
			found, foundBy = t.Digest, r
		case found != t.Digest:
			failures = append(failures, fmt.Sprintf("trust roots disagree on tag %s: %s signs %s, %s signs %s", tag, foundBy, found, r, t.Digest))
		}
		if !all {
			break
		}
	}
	switch {
	case !all && found != "":
		return TrustedTag{Applies: true, Digest: found}, nil
	case all && len(failures) == 0 && len(errs) == 0:
		return TrustedTag{Applies: true, Digest: found}, nil
	case len(errs) > 0:
		return TrustedTag{}, fmt.Errorf("docker content trust for tag %s: %w", tag, errors.Join(errs...))
	case !all && len(notaryRoots) < len(roots):
		// anyOf also names roots that sign images, not tags: the registry's tag stands, and its digest must
		// pass one of them.
		return TrustedTag{}, nil
	}
	return TrustedTag{Applies: true, Denied: strings.Join(failures, "; ")}, nil
}

// splitRoots tells the notary roots among roots from the others, keeping their order.
func (e *VerifierEvidence) splitRoots(roots []string) (others, notary []string) {
	for _, r := range roots {
		if e.notary != nil && e.notary.Has(r) {
			notary = append(notary, r)
		} else {
			others = append(others, r)
		}
	}
	return others, notary
}

// gatherNotary records, for each notary root, whether the subject's digest is a signed target of its trust data.
// Trust data that does not verify (a root key not pinned, expired or rolled-back metadata) is a failed root,
// with the reason; a notary server that cannot be reached, with nothing valid cached, is an error.
func (e *VerifierEvidence) gatherNotary(ctx context.Context, s Subject, roots []string, into map[string]policy.SignatureResult) error {
	for _, r := range roots {
		res, err := e.notary.Signed(ctx, r, s.Upstream, s.Repository, s.Digest)
		switch {
		case errors.Is(err, dct.ErrUnreachable):
			return fmt.Errorf("docker content trust: %w", err)
		case err != nil:
			res = policy.SignatureResult{Reason: err.Error()}
		}
		into[r] = res
	}
	return nil
}

// evaluatePulled is evaluateOnly for an image a pull got by tag (s.Tag set), with the tag resolved under g as a
// pull under g resolves it: a tag whose trust data denies it is denied before its digest is looked at. Trust data
// that cannot be read is an error, as evidence that cannot be gathered is.
func (g *view) evaluatePulled(ctx context.Context, s Subject) (policy.Decision, error) {
	if s.Tag != "" {
		tt, reason, err := g.trustedTag(ctx, s.Upstream, s.Repository, s.Tag)
		if err != nil {
			return policy.Decision{}, err
		}
		if tt.Denied != "" {
			return policy.Decision{Rule: tt.Rule, Mode: tt.Mode, Message: tt.Denied, Failures: []string{reason}}, nil
		}
	}
	return g.evaluateOnly(ctx, s)
}
