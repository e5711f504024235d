package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

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
		return nil, false, nil // a 200 that is not JSON: some front end, not a referrers API
	}
	if mediaType(resp.Header) != ocispec.MediaTypeImageIndex && idx.MediaType != ocispec.MediaTypeImageIndex {
		return nil, false, nil
	}
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
