package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Referrers GETs the OCI referrers index of dgst in repo, filtered to artifactType when it is not
// empty (by the upstream, or here when the upstream does not say it applied the filter). supported is
// false, with a nil error, when the upstream has no referrers API (404, 400 or 405, or a 200 that is
// not an OCI index); the caller then falls back to the sha256-<hex> tag schema.
func (c *Client) Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType string) (index []byte, supported bool, err error) {
	op := "referrers " + repo + "@" + dgst.String()
	if err := c.checkRepo(repo); err != nil {
		return nil, false, err
	}
	if err := dgst.Validate(); err != nil {
		return nil, false, fmt.Errorf("upstream: invalid subject digest %q: %w", dgst, err)
	}
	ctx2, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	u := c.endpoint.JoinPath("v2", repo, "referrers", dgst.String())
	if artifactType != "" {
		u.RawQuery = url.Values{"artifactType": {artifactType}}.Encode()
	}
	resp, err := c.do(ctx2, http.MethodGet, kindReferrers, u, []string{ocispec.MediaTypeImageIndex})
	if err != nil {
		return nil, false, c.wrapErr(ctx, op, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed:
		drainClose(resp)
		c.learnReferrersAPI(false)
		return nil, false, nil
	default:
		return nil, false, c.newError(op, resp)
	}
	body, err := c.readList(ctx, op, resp)
	if err != nil {
		return nil, false, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		c.learnReferrersAPI(false)
		return nil, false, nil // a 200 that is not JSON: some front end, not a referrers API
	}
	if mediaType(resp.Header) != ocispec.MediaTypeImageIndex && idx.MediaType != ocispec.MediaTypeImageIndex {
		c.learnReferrersAPI(false)
		return nil, false, nil
	}
	c.learnReferrersAPI(true)
	if artifactType != "" && !filterApplied(resp.Header, "artifactType") {
		kept := []ocispec.Descriptor{}
		for _, m := range idx.Manifests {
			if m.ArtifactType == artifactType {
				kept = append(kept, m)
			}
		}
		idx.Manifests = kept
		if idx.MediaType == "" {
			idx.MediaType = ocispec.MediaTypeImageIndex
		}
		if body, err = json.Marshal(idx); err != nil {
			return nil, false, fmt.Errorf("upstream %s %s: re-encoding filtered index: %w", c.name, op, err)
		}
	}
	return body, true, nil
}

// referrersAPITTL is how long a client trusts what the registry last said about its referrers API: a registry
// upgraded to have one is asked again within it.
const referrersAPITTL = 10 * time.Minute

// apiAnswer is what a registry said about one of its APIs, and until when to believe it.
type apiAnswer struct {
	supported bool
	until     time.Time
}

// learnReferrersAPI remembers the registry's answer. A registry that has answered the API keeps it until that lapses:
// a compliant one never answers 404 then, and one that did once (a subject just deleted, a front end's hiccup)
// must not have the signatures only its API lists skipped (the verifier reads the fallback tag for that answer).
func (c *Client) learnReferrersAPI(supported bool) {
	now := time.Now()
	if a := c.referrersAPI.Load(); !supported && a != nil && a.supported && now.Before(a.until) {
		return
	}
	c.referrersAPI.Store(&apiAnswer{supported: supported, until: now.Add(referrersAPITTL)})
}

// ReferrersAPI reports whether the registry has the referrers API, as its last answer to Referrers (within the
// last 10 minutes) said; known is false when there was none. A verifier that knows asks only the referrers API, or
// only the sha256-<hex> fallback tag, instead of both at once.
func (c *Client) ReferrersAPI() (supported, known bool) {
	a := c.referrersAPI.Load()
	if a == nil || time.Now().After(a.until) {
		return false, false
	}
	return a.supported, true
}

// filterApplied reports whether the OCI-Filters-Applied header lists filter.
func filterApplied(h http.Header, filter string) bool {
	for _, v := range h.Values("OCI-Filters-Applied") {
		for _, f := range strings.Split(v, ",") {
			if strings.TrimSpace(f) == filter {
				return true
			}
		}
	}
	return false
}
