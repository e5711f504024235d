package proxy

import (
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/imageref"
)

// kind is what a /v2/ request asks for.
type kind int

const (
	kindBase kind = iota
	kindManifest
	kindBlob
	kindTags
	kindReferrers
)

func (k kind) String() string {
	switch k {
	case kindBase:
		return "base"
	case kindManifest:
		return "manifest"
	case kindBlob:
		return "blob"
	case kindTags:
		return "tags"
	case kindReferrers:
		return "referrers"
	}
	return "unknown"
}

// route is a parsed /v2/ request: the upstream it is for and the upstream-relative repository.
type route struct {
	kind kind
	// name is the repository as the client named it (prefix included); it goes back into Link headers and bodies.
	name string
	// upstream is the configured upstream the request is for.
	upstream *Upstream
	// repo is the repository as the upstream knows it (prefix stripped, docker.io's library/ added).
	repo string
	// ref is the tag or digest of a manifest request.
	ref string
	// dgst is the digest of a blob or referrers request, or of a manifest request by digest.
	dgst digest.Digest
	// prefixed is true when the upstream came from a path prefix rather than ns= or the default.
	prefixed bool
	// ns is the ns= query parameter, kept for Link headers.
	ns string
	// bearer is the request's bearer token, if any: a scanner's credential (ScannerAccess).
	bearer string
}

// tag reports whether the manifest reference is a tag rather than a digest.
func (r route) tag() bool { return r.dgst == "" }

// key names the repository in caches: the upstream and its repository.
func (r route) key() string { return r.upstream.Name + "/" + r.repo }

// parseRoute splits a /v2/ path into its kind, name and reference, and picks the upstream. It never touches the
// network: an unknown ns or prefix is an error here, before any outbound request.
func (p *Proxy) parseRoute(req *http.Request) (route, error) {
	path := req.URL.Path
	if path == "/v2/" || path == "/v2" {
		return route{kind: kindBase}, nil
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}, errRouteUnknown
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var r route
	switch {
	case n >= 3 && segs[n-2] == "manifests":
		r.kind, r.ref = kindManifest, segs[n-1]
		segs = segs[:n-2]
	case n >= 3 && segs[n-2] == "blobs":
		r.kind, r.ref = kindBlob, segs[n-1]
		segs = segs[:n-2]
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		r.kind = kindTags
		segs = segs[:n-2]
	case n >= 3 && segs[n-2] == "referrers":
		r.kind, r.ref = kindReferrers, segs[n-1]
		segs = segs[:n-2]
	default:
		return route{}, errRouteUnknown
	}
	r.name = strings.Join(segs, "/")
	r.ns = req.URL.Query().Get("ns")
	if err := p.pickUpstream(&r); err != nil {
		return route{}, err
	}
	switch r.kind {
	case kindManifest:
		if strings.Contains(r.ref, ":") {
			d, err := digest.Parse(r.ref)
			if err != nil {
				return route{}, &apiError{status: http.StatusBadRequest, code: codeDigestInvalid, message: "invalid digest " + quote(r.ref)}
			}
			r.dgst = d
		} else if !imageref.IsTag(r.ref) {
			return route{}, &apiError{status: http.StatusBadRequest, code: codeManifestInvalid, message: "invalid tag " + quote(r.ref)}
		}
	case kindBlob, kindReferrers:
		d, err := digest.Parse(r.ref)
		if err != nil {
			return route{}, &apiError{status: http.StatusBadRequest, code: codeDigestInvalid, message: "invalid digest " + quote(r.ref)}
		}
		r.dgst = d
	}
	return r, nil
}

// pickUpstream chooses the upstream: ns= first (containerd sends it on every request), then a path prefix that names
// a configured upstream (imageref.SplitName), then the default. A host-like prefix or ns that is not configured is refused.
func (p *Proxy) pickUpstream(r *route) error {
	path := r.name
	if r.ns != "" {
		u := p.upstream(r.ns)
		if u == nil {
			return &apiError{status: http.StatusNotFound, code: codeNameUnknown,
				message: "upstream " + quote(r.ns) + " is not configured on this proxy"}
		}
		r.upstream = u
	} else if prefix, rest := imageref.SplitName(r.name); prefix != "" {
		u := p.upstream(prefix)
		if u == nil {
			return &apiError{status: http.StatusNotFound, code: codeNameUnknown,
				message: "upstream " + quote(prefix) + " is not configured on this proxy"}
		}
		r.upstream, r.prefixed, path = u, true, rest
	} else {
		r.upstream = p.defaultUpstream
	}
	repo, err := imageref.UpstreamRepository(r.upstream.Name, path)
	if err != nil {
		return &apiError{status: http.StatusBadRequest, code: codeNameInvalid, message: "invalid repository name " + quote(r.name)}
	}
	r.repo = repo
	return nil
}

func (p *Proxy) upstream(name string) *Upstream {
	return p.upstreams[strings.ToLower(name)]
}
