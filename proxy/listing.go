package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/upstream"
)

// serveTags answers GET /v2/<name>/tags/list with n/last pagination passed to the upstream.
func (p *Proxy) serveTags(w http.ResponseWriter, req *http.Request, r route) error {
	q := req.URL.Query()
	n := 0
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return &apiError{status: http.StatusBadRequest, code: codePaginationInval, message: "invalid n " + quote(s)}
		}
		n = v
	}
	tags, next, err := r.upstream.Registry.Tags(req.Context(), r.repo, n, q.Get("last"))
	if err != nil {
		return err
	}
	if tags == nil {
		tags = []string{}
	}
	if next != "" {
		lq := url.Values{}
		if n > 0 {
			lq.Set("n", strconv.Itoa(n))
		}
		lq.Set("last", next)
		if r.ns != "" {
			lq.Set("ns", r.ns)
		}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, r.name, lq.Encode()))
	}
	return writeJSON(w, req, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{r.name, tags})
}

// serveReferrers answers GET /v2/<name>/referrers/<digest>: the upstream's answer when it has the API, otherwise
// the index stored under the fallback tag sha256-<hex>, filtered by artifactType, as the distribution spec says.
func (p *Proxy) serveReferrers(w http.ResponseWriter, req *http.Request, r route) error {
	ctx := req.Context()
	artifactType := req.URL.Query().Get("artifactType")
	body, supported, err := r.upstream.Registry.Referrers(ctx, r.repo, r.dgst, artifactType)
	if err != nil {
		return err
	}
	if supported {
		var idx ocispec.Index
		if err := json.Unmarshal(body, &idx); err != nil {
			return &apiError{status: http.StatusBadGateway, code: codeUnknown, message: "upstream sent a malformed referrers index"}
		}
		return p.writeReferrers(w, req, r, idx, artifactType)
	}
	idx := ocispec.Index{}
	fallback := r
	fallback.ref, fallback.dgst = r.dgst.Algorithm().String()+"-"+r.dgst.Encoded(), ""
	res, err := p.resolveTag(ctx, fallback)
	switch {
	case errors.Is(err, upstream.ErrNotFound):
		// No referrers: an empty index.
	case err != nil:
		return err
	default:
		m, err := p.manifestByDigest(ctx, fallback, res.desc.Digest, []string{ocispec.MediaTypeImageIndex}, true)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(m.body, &idx); err != nil || m.mediaType != ocispec.MediaTypeImageIndex {
			// Something else sits on the tag: not a referrers index, so there are none.
			idx = ocispec.Index{}
		}
	}
	return p.writeReferrers(w, req, r, idx, artifactType)
}

func (p *Proxy) writeReferrers(w http.ResponseWriter, req *http.Request, r route, idx ocispec.Index, artifactType string) error {
	// The list is shown for an admitted image only, and admits nothing: each referrer is decided on its own
	// manifest when it is fetched (an artifact-shaped manifest whose subject is this image).
	if gate, ok := p.admitter.(Admitted); ok {
		allowed, err := gate.Admitted(req.Context(), r.upstream.Name, r.repo, r.dgst)
		if err != nil || !allowed {
			return &apiError{status: http.StatusForbidden, code: codeDenied, message: fmt.Sprintf(
				"portcullis: referrers of %s/%s@%s are served only for an admitted image: pull its manifest first", r.upstream.Name, r.repo, r.dgst)}
		}
	}
	out := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	out.SchemaVersion = 2
	for _, d := range idx.Manifests {
		if artifactType == "" || d.ArtifactType == artifactType {
			out.Manifests = append(out.Manifests, d)
		}
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, req, ocispec.MediaTypeImageIndex, out)
}

func writeJSON(w http.ResponseWriter, req *http.Request, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
	return nil
}
