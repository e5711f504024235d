package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
)

// Forgetter forgets cached decisions. *admission.Gate implements it.
type Forgetter interface {
	// Forget makes every decision cached about the digest stale, and everything admitted through it.
	Forget(ctx context.Context, dgst digest.Digest) error
	// ForgetRepository forgets every digest of the repository decided recently, and returns them.
	ForgetRepository(ctx context.Context, upstream, repo string) ([]digest.Digest, error)
}

var _ Forgetter = (*admission.Gate)(nil)

// WithDecisions serves DELETE /admin/v1/decisions?image=REF|repository=UPSTREAM/REPO (write role) with f, naming
// images with r. Default: not served.
func WithDecisions(f Forgetter, r Resolver) Option {
	return func(a *API) error {
		if f == nil || r == nil {
			return errors.New("admin: decisions need a forgetter and a resolver")
		}
		a.forgetter, a.resolver = f, r
		if tt, ok := f.(TagTrust); ok {
			a.tags = tt
		}
		return nil
	}
}

// maxAuditedDigests caps the digests an audit record of forgetting lists; the count is always there.
const maxAuditedDigests = 100

// forgetDecisions answers DELETE /admin/v1/decisions: ?image=REF forgets one digest (REF by digest, or a tag resolved
// now), ?repository=UPSTREAM/REPO every digest of the repository in the pull log.
func (a *API) forgetDecisions(w http.ResponseWriter, r *http.Request, who Principal) {
	q := r.URL.Query()
	ref, repo := q.Get("image"), q.Get("repository")
	if (ref == "") == (repo == "") {
		adminError(w, http.StatusBadRequest, "PARAM_INVALID", "give one of image (?image=ghcr.io/acme/app@sha256:... or a tag) and repository (?repository=ghcr.io/acme/app)")
		return
	}
	var (
		what    string
		digests []digest.Digest
		err     error
	)
	if ref != "" {
		v := a.trustedTag(r.Context(), ref)
		switch {
		case v.err != nil:
			adminError(w, http.StatusBadGateway, "UPSTREAM_UNAVAILABLE", v.denied.Denied)
			return
		case v.denied != nil:
			// A pull of the tag is denied before any digest is decided on: none to forget.
			adminError(w, http.StatusNotFound, "IMAGE_UNKNOWN", v.denied.Denied)
			return
		}
		s, ok := a.resolveTrusted(w, r, ref, v, false)
		if !ok {
			return
		}
		what = s.Image()
		if err = a.forgetter.Forget(r.Context(), s.Digest); err == nil {
			digests = []digest.Digest{s.Digest}
		}
	} else {
		up, name, rerr := a.resolver.Repository(repo)
		if rerr != nil {
			adminError(w, http.StatusBadRequest, "PARAM_INVALID", "repository: "+rerr.Error())
			return
		}
		what = up + "/" + name
		digests, err = a.forgetter.ForgetRepository(r.Context(), up, name)
	}
	if digests == nil {
		digests = []digest.Digest{}
	}
	if len(digests) > 0 || err == nil {
		detail := map[string]any{"count": len(digests), "digests": digests[:min(len(digests), maxAuditedDigests)]}
		a.record(r, who, admission.AuditRecord{Action: "decisions.forget", Image: what, Detail: detail})
	}
	switch {
	case errors.Is(err, admission.ErrNoPullLog) || errors.Is(err, admission.ErrNoFacts):
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
		return
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", fmt.Sprintf("forgot %d digests, then: %v (shared state unavailable?)", len(digests), err))
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"forgotten": what, "digests": digests, "count": len(digests)})
}
