package admin

import (
	"context"
	"fmt"
	"net/http"

	"github.com/distribution/reference"

	"github.com/portcullis/portcullis/admission"
)

// TagTrust says what trust data makes of a tag before the registry is asked, as a pull resolves it: under a
// Docker Content Trust rule the tag is the digest the signed targets name, or is denied before anything is
// fetched. *admission.Gate implements it; an Explainer or Forgetter that does too (WithExplain, WithDecisions)
// has explain and decisions resolve tags through it first, so that they name the digest a pull gets.
type TagTrust interface {
	TrustedTag(ctx context.Context, upstream, repository, tag string) (admission.TrustedTag, error)
}

var _ TagTrust = (*admission.Gate)(nil)

// tagVerdict is what trust data makes of a reference's tag when a rule has it decide the tag (see TagTrust).
type tagVerdict struct {
	// ref is the reference to resolve instead: the name at the signed digest; "" leaves ref as it is.
	ref string
	// upstream, repository and tag name the tag asked about.
	upstream, repository, tag string
	// denied is set when the pull is denied before anything is fetched: the trust data does not sign the tag as
	// the rule requires, or could not be read (err).
	denied *admission.TrustedTag
	err    error
}

// trustedTag asks a.tags about ref when ref names a tag (latest when it names neither a tag nor a digest, as the
// Resolver reads it). A reference that does not parse is left to the Resolver, which says why.
func (a *API) trustedTag(ctx context.Context, ref string) tagVerdict {
	if a.tags == nil {
		return tagVerdict{}
	}
	parsed, err := reference.Parse(ref)
	if err != nil {
		return tagVerdict{}
	}
	named, ok := parsed.(reference.Named)
	if _, digested := parsed.(reference.Digested); !ok || digested {
		return tagVerdict{}
	}
	tag := "latest"
	if t, ok := parsed.(reference.Tagged); ok {
		tag = t.Tag()
	}
	up, repo, err := a.resolver.Repository(named.Name())
	if err != nil {
		return tagVerdict{}
	}
	v := tagVerdict{upstream: up, repository: repo, tag: tag}
	tt, err := a.tags.TrustedTag(ctx, up, repo, tag)
	switch {
	case err != nil:
		// As a pull: trust data that cannot be read denies (fail closed).
		tt.Denied = fmt.Sprintf("portcullis: %s/%s:%s denied: could not decide (%v)", up, repo, tag, err)
		v.denied, v.err = &tt, err
	case !tt.Applies:
		return tagVerdict{}
	case tt.Denied != "":
		v.denied = &tt
	default:
		v.ref = named.Name() + "@" + tt.Digest.String()
	}
	return v
}

// explainDenied answers explain for a tag the trust data denies: what the pull gets, decided by the trust data
// ("trust-data"), with no digest and no evaluation since nothing is fetched.
func (a *API) explainDenied(w http.ResponseWriter, v tagVerdict) {
	d := v.denied
	dec := decisionAnswer{Rule: d.Rule, Mode: string(d.Mode), Message: d.Denied, Failures: []string{d.Denied}, Notes: []string{},
		Requirements: []checkAnswer{}}
	ans := explainAnswer{Image: v.upstream + "/" + v.repository + ":" + v.tag, Upstream: v.upstream, Repository: v.repository,
		Tag: v.tag, Policy: d.Policy, Rule: d.Rule, Mode: string(d.Mode), Message: d.Denied, DecidedBy: "trust-data",
		Evaluation: evaluationAnswer{decisionAnswer: dec, Attestations: []attestationAnswer{}}}
	if v.err != nil {
		ans.Evaluation.Error = v.err.Error()
	}
	writeAdminJSON(w, http.StatusOK, ans)
}
