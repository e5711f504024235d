package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// Media types a registry client may ask for, used when a client sends no Accept header.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

var defaultAccept = []string{ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest, mediaTypeDockerManifestList, mediaTypeDockerManifest}

// manifest is a verified manifest ready to serve.
type manifest struct {
	dgst      digest.Digest
	mediaType string
	body      []byte
}

// serveManifest answers GET and HEAD /v2/<name>/manifests/<ref>: resolve the tag, fetch by digest, decide, serve.
func (p *Proxy) serveManifest(w http.ResponseWriter, req *http.Request, r route) error {
	ctx := req.Context()
	accept := parseAccept(req.Header)
	dgst := r.dgst
	if r.tag() {
		res, err := p.resolveTag(ctx, r)
		if err != nil {
			return err
		}
		dgst = res.desc.Digest
		if res.source == "stale" {
			w.Header().Add("Warning", warning(fmt.Sprintf("upstream %s unavailable; %s:%s served as last resolved %s ago", r.upstream.Name, r.repo, r.ref, res.age.Round(1e9))))
		}
	}
	m, dec, err := p.admitManifest(ctx, r, dgst, accept)
	if err != nil {
		return err
	}
	if !dec.Allowed && dec.KeepLastGood && r.tag() {
		if good, ok := p.lastGood(ctx, r, m.dgst, accept); ok {
			p.log.Warn("audit: tag moved to a denied digest; serving its last admitted digest", "audit", true,
				"upstream", r.upstream.Name, "repository", r.repo, "tag", r.ref, "denied", m.dgst, "served", good.m.dgst, "reason", dec.Reason)
			w.Header().Add("Warning", warning(fmt.Sprintf("portcullis: tag %s moved to %s, which is denied (%s); serving the last admitted digest %s", r.ref, m.dgst, dec.Reason, good.m.dgst)))
			m, dec = good.m, good.dec
		}
	}
	if !dec.Allowed {
		if req.Method == http.MethodHead {
			// A HEAD serves no content, and containerd (so kubelet) only shows a registry's message for a GET: answer
			// the HEAD so that the GET that follows carries the denial and its reason to the person reading it.
			w.Header().Add("Warning", warning(dec.Reason))
		} else {
			return &apiError{status: http.StatusForbidden, code: codeDenied, message: dec.Reason}
		}
	}
	for _, wmsg := range dec.Warnings {
		w.Header().Add("Warning", warning(wmsg))
	}
	h := w.Header()
	h.Set("Content-Type", m.mediaType)
	h.Set("Docker-Content-Digest", m.dgst.String())
	h.Set("Content-Length", strconv.Itoa(len(m.body)))
	h.Set("Etag", `"`+m.dgst.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead && dec.Allowed {
		_, _ = w.Write(m.body)
		p.metrics.bytes.WithLabelValues("manifest").Add(float64(len(m.body)))
	}
	return nil
}

// admitted is a manifest with its decision.
type admitted struct {
	m   manifest
	dec Decision
}

// admitManifest fetches a manifest by digest and decides on it. An error from the admitter is a denial (fail
// closed), with the reason that it could not decide.
func (p *Proxy) admitManifest(ctx context.Context, r route, dgst digest.Digest, accept []string) (manifest, Decision, error) {
	m, err := p.manifestByDigest(ctx, r, dgst, accept)
	if err != nil {
		return manifest{}, Decision{}, err
	}
	if tok := bearer(ctx); tok != "" && p.scanCreds != nil {
		switch ok, err := p.scanCreds.AllowManifest(ctx, tok, r.upstream.Name, r.repo, m.dgst, m.body); {
		case ok:
			p.log.Info("served to a scanner with its credential", "upstream", r.upstream.Name, "repository", r.repo, "digest", m.dgst)
			return m, Decision{Allowed: true, Reason: "scanner credential"}, nil
		case err != nil:
			p.log.Warn("scanner credential refused", "upstream", r.upstream.Name, "repository", r.repo, "digest", m.dgst, "error", err)
			return m, Decision{Reason: fmt.Sprintf("portcullis: %s/%s@%s denied: %v", r.upstream.Name, r.repo, m.dgst, err)}, nil
		}
	}
	dec, err := p.admitter.Admit(ctx, Subject{
		Upstream: r.upstream.Name, Repository: r.repo, Tag: tagOf(r), Digest: m.dgst, MediaType: m.mediaType, Manifest: m.body,
	})
	if err != nil {
		p.log.Error("admission could not decide; denying", "upstream", r.upstream.Name, "repository", r.repo, "digest", m.dgst, "error", err)
		dec = Decision{Reason: fmt.Sprintf("portcullis: %s/%s@%s denied: could not decide (%v)", r.upstream.Name, r.repo, m.dgst, err)}
	}
	return m, dec, nil
}

// lastGood returns the tag's last admitted manifest, if the admitter remembers one other than denied and it is
// still admitted.
func (p *Proxy) lastGood(ctx context.Context, r route, denied digest.Digest, accept []string) (admitted, bool) {
	lg, ok := p.admitter.(LastGood)
	if !ok {
		return admitted{}, false
	}
	d, ok := lg.LastGood(ctx, r.upstream.Name, r.repo, r.ref)
	if !ok || d == denied {
		return admitted{}, false
	}
	m, dec, err := p.admitManifest(ctx, r, d, accept)
	if err != nil || !dec.Allowed {
		return admitted{}, false
	}
	return admitted{m: m, dec: dec}, true
}

func tagOf(r route) string {
	if r.tag() {
		return r.ref
	}
	return ""
}

// manifestByDigest returns a manifest's verified bytes: from the content store, else from the upstream (one fetch
// however many ask), verified and stored.
func (p *Proxy) manifestByDigest(ctx context.Context, r route, dgst digest.Digest, accept []string) (manifest, error) {
	if m, ok := p.storedManifest(ctx, dgst); ok {
		p.metrics.cache.WithLabelValues("manifest", "hit").Inc()
		return m, nil
	}
	p.metrics.cache.WithLabelValues("manifest", "miss").Inc()
	v, err, _ := p.manifests.Do(r.upstream.Name+"/"+r.repo+"@"+dgst.String(), func() (any, error) {
		ctx := context.WithoutCancel(ctx)
		// A flight that ended between our store miss and this one has stored it: look again before fetching.
		if m, ok := p.storedManifest(ctx, dgst); ok {
			return m, nil
		}
		body, mediaType, got, err := r.upstream.Registry.Manifest(ctx, r.repo, dgst.String(), accept)
		if err != nil {
			return nil, err
		}
		if got != dgst {
			p.metrics.mismatch.WithLabelValues(r.upstream.Name).Inc()
			return nil, fmt.Errorf("manifest %s: upstream sent %s: %w", dgst, got, upstream.ErrDigestMismatch)
		}
		if _, err := p.store.Put(ctx, dgst, bytes.NewReader(body)); err != nil {
			p.log.Warn("could not store manifest", "digest", dgst, "error", err)
		}
		if mediaType == "" || strings.HasPrefix(mediaType, "text/plain") || mediaType == "application/json" {
			mediaType = detectMediaType(body)
		}
		return manifest{dgst: dgst, mediaType: mediaType, body: body}, nil
	})
	if err != nil {
		return manifest{}, err
	}
	return v.(manifest), nil
}

// storedManifest returns the manifest from the content store if it is there and still matches its digest.
func (p *Proxy) storedManifest(ctx context.Context, dgst digest.Digest) (manifest, bool) {
	body, err := p.store.Get(ctx, dgst, p.maxManifest)
	switch {
	case err == nil && dgst.Algorithm().FromBytes(body) == dgst:
		return manifest{dgst: dgst, mediaType: detectMediaType(body), body: body}, true
	case err == nil:
		p.log.Error("stored manifest does not match its digest; refetching", "digest", dgst)
	case !isNotFound(err):
		p.log.Warn("content store read failed; fetching upstream", "digest", dgst, "error", err)
	}
	return manifest{}, false
}

// detectMediaType reads a manifest's own mediaType field, or infers OCI index/manifest from its shape.
func detectMediaType(body []byte) string {
	var m struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     json.RawMessage   `json:"manifests"`
		Config        json.RawMessage   `json:"config"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "application/octet-stream"
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.SchemaVersion == 1 || m.FSLayers != nil:
		return "application/vnd.docker.distribution.manifest.v1+prettyjws"
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	}
	return ocispec.MediaTypeImageManifest
}

// parseAccept returns the media types a client accepts, in the order sent.
func parseAccept(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if mt = strings.TrimSpace(mt); mt != "" && mt != "*/*" {
				out = append(out, mt)
			}
		}
	}
	if len(out) == 0 {
		return defaultAccept
	}
	return out
}

// warning formats an RFC 7234 Warning header value with code 299 (miscellaneous persistent warning).
func warning(msg string) string {
	return `299 - ` + strconv.Quote(msg)
}

func isNotFound(err error) bool { return errors.Is(err, cache.ErrNotFound) }
