package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/manifest"
	"github.com/portcullis/portcullis/upstream"
)

// verifiedManifest is a manifest whose bytes matched their digest, ready to decide on and serve.
type verifiedManifest struct {
	dgst      digest.Digest
	mediaType string
	body      []byte
}

// serveManifest answers GET and HEAD /v2/<name>/manifests/<ref>: resolve the tag, fetch by digest, decide, serve.
func (p *Proxy) serveManifest(w http.ResponseWriter, req *http.Request, r route) error {
	ctx := req.Context()
	accept := parseAccept(req.Header)
	dgst := r.dgst
	trusted, err := p.trustedTag(ctx, w.Header(), r)
	if err != nil {
		return err
	}
	if trusted != "" {
		dgst = trusted
	} else if r.tag() {
		res, err := p.resolveTag(ctx, r)
		if err != nil {
			return err
		}
		dgst = res.desc.Digest
		if res.source == "stale" {
			w.Header().Add("Warning", warning(fmt.Sprintf("upstream %s unavailable; %s:%s served as last resolved %s ago", r.upstream.Name, r.repo, r.ref, res.age.Round(1e9))))
		}
	}
	// A digest the route's tag resolved to (in the registry or in its trust data) is the repository's by that.
	m, dec, err := p.admitManifest(ctx, r, dgst, accept, trusted != "" || r.tag())
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
		// HEAD is refused like GET: containerd resolves with HEAD and skips the GET when it holds the content, so
		// a 200 here would let a node that cached a revoked image start it again. A HEAD has no body, so the reason
		// travels in a Warning header and, over HTTP/1.1, in the status line, which is all containerd shows.
		w.Header().Add("Warning", warning(dec.Reason))
		return &apiError{status: http.StatusForbidden, code: codeDenied, message: dec.Reason, reasonPhrase: true}
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
	if req.Method != http.MethodHead {
		_, _ = w.Write(m.body)
		p.metrics.bytes.WithLabelValues("manifest").Add(float64(len(m.body)))
	}
	return nil
}

// trustedTag returns the digest trust data signs for the route's tag, when a Docker Content Trust rule decides
// the tag ("" otherwise: a digest reference, or a rule that leaves tags to the registry). A tag the trust data
// does not sign as the rule requires is denied here, before anything is fetched; trust data that cannot be read
// is a denial too (fail closed).
func (p *Proxy) trustedTag(ctx context.Context, h http.Header, r route) (digest.Digest, error) {
	tt, ok := p.admitter.(TagTrust)
	if !ok || !r.tag() {
		return "", nil
	}
	t, err := tt.TrustedTag(ctx, r.upstream.Name, r.repo, r.ref)
	switch {
	case err != nil:
		p.log.Error("trust data could not be read; denying", "upstream", r.upstream.Name, "repository", r.repo, "tag", r.ref, "error", err)
		msg := fmt.Sprintf("portcullis: %s/%s:%s denied: could not decide (%v)", r.upstream.Name, r.repo, r.ref, err)
		h.Add("Warning", warning(msg))
		return "", &apiError{status: http.StatusForbidden, code: codeDenied, message: msg, reasonPhrase: true}
	case !t.Applies:
		return "", nil
	case t.Denied != "":
		p.log.Info("tag denied by its trust data", "upstream", r.upstream.Name, "repository", r.repo, "tag", r.ref, "reason", t.Denied)
		h.Add("Warning", warning(t.Denied)) // a HEAD has no body: see serveManifest
		return "", &apiError{status: http.StatusForbidden, code: codeDenied, message: t.Denied, reasonPhrase: true}
	}
	return t.Digest, nil
}

// admitted is a manifest with its decision.
type admitted struct {
	m   verifiedManifest
	dec admission.Verdict
}

// admitManifest fetches a manifest by digest and decides on it. An error from the admitter is a denial (fail
// closed), with the reason that it could not decide.
func (p *Proxy) admitManifest(ctx context.Context, r route, dgst digest.Digest, accept []string, inRepo bool) (verifiedManifest, admission.Verdict, error) {
	m, err := p.manifestByDigest(ctx, r, dgst, accept, inRepo)
	if err != nil {
		return verifiedManifest{}, admission.Verdict{}, err
	}
	if tok := r.bearer; tok != "" && p.scanCreds != nil {
		switch ok, err := p.scanCreds.AllowManifest(ctx, tok, r.upstream.Name, r.repo, m.dgst, m.body); {
		case ok:
			p.log.Info("served to a scanner with its credential", "upstream", r.upstream.Name, "repository", r.repo, "digest", m.dgst)
			return m, admission.Verdict{Allowed: true, Reason: "scanner credential"}, nil
		case err != nil:
			p.log.Warn("scanner credential refused", "upstream", r.upstream.Name, "repository", r.repo, "digest", m.dgst, "error", err)
			return m, admission.Verdict{Reason: fmt.Sprintf("portcullis: %s/%s@%s denied: %v", r.upstream.Name, r.repo, m.dgst, err)}, nil
		}
	}
	dec, err := p.admitter.Admit(ctx, admission.Subject{
		Upstream: r.upstream.Name, Repository: r.repo, Tag: tagOf(r), Digest: m.dgst, MediaType: m.mediaType, Manifest: m.body,
	})
	if errors.Is(err, admission.ErrOverloaded) {
		return m, admission.Verdict{}, &apiError{status: http.StatusTooManyRequests, code: codeTooManyRequests, retryAfter: 2,
			message: fmt.Sprintf("portcullis: too many new images are being verified at once; %s/%s@%s will be decided when you retry", r.upstream.Name, r.repo, m.dgst)}
	}
	if err != nil {
		p.log.Error("admission could not decide; denying", "upstream", r.upstream.Name, "repository", r.repo, "digest", m.dgst, "error", err)
		dec = admission.Verdict{Reason: fmt.Sprintf("portcullis: %s/%s@%s denied: could not decide (%v)", r.upstream.Name, r.repo, m.dgst, err)}
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
	m, dec, err := p.admitManifest(ctx, r, d, accept, false)
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

// manifestByDigest returns a manifest's verified bytes: from memory or the content store when the route's upstream
// repository holds it (inRepo: d is what the route's tag resolved to there; otherwise as checkHeld finds), else from
// that repository upstream (one fetch however many ask), verified and stored.
func (p *Proxy) manifestByDigest(ctx context.Context, r route, dgst digest.Digest, accept []string, inRepo bool) (verifiedManifest, error) {
	if inRepo {
		p.markHeld(ctx, r, dgst)
	}
	m, ok := p.recent.get(dgst)
	if !ok {
		if m, ok = p.storedManifest(ctx, dgst); ok {
			p.recent.add(m)
		}
	}
	if ok {
		if err := p.holds(ctx, r, dgst, inRepo); err != nil {
			return verifiedManifest{}, err
		}
		p.metrics.cache.WithLabelValues("manifest", "hit").Inc()
		return m, nil
	}
	p.metrics.cache.WithLabelValues("manifest", "miss").Inc()
	type fetched struct {
		m        verifiedManifest
		upstream bool // fetched from the route's repository now, not found stored by another flight or replica
	}
	v, err, _ := p.manifests.Do(r.upstream.Name+"/"+r.repo+"@"+dgst.String(), func() (any, error) {
		ctx := context.WithoutCancel(ctx)
		// A flight that ended between our store miss and this one has stored it: look again before fetching.
		if m, ok := p.storedManifest(ctx, dgst); ok {
			return fetched{m: m}, nil
		}
		// Another replica may be fetching it right now: wait for it to land in the shared content store.
		var stored verifiedManifest
		lease := p.fleetOnce(ctx, "manifest/"+dgst.String(), p.leaseWait, func() (ok bool) {
			stored, ok = p.storedManifest(ctx, dgst)
			return ok
		})
		if lease == nil {
			return fetched{m: stored}, nil
		}
		defer lease.Release(ctx)
		body, mediaType, got, err := r.upstream.Registry.Manifest(ctx, r.repo, dgst.String(), accept)
		if err != nil {
			return nil, err
		}
		if got != dgst {
			p.metrics.mismatch.WithLabelValues(r.upstream.Name).Inc()
			return nil, fmt.Errorf("manifest %s: upstream sent %s: %w", dgst, got, upstream.ErrDigestMismatch)
		}
		mediaType, err = manifestMediaType(mediaType, body)
		if err != nil {
			return nil, fmt.Errorf("manifest %s from %s: %w", dgst, r.upstream.Name, err)
		}
		// Marked before it is stored: a replica that finds it stored finds the mark too, and asks nothing.
		p.markHeld(ctx, r, dgst)
		_, perr := p.store.Put(ctx, dgst, bytes.NewReader(body))
		p.storeHealth.record(perr)
		if perr != nil {
			p.log.Warn("could not store manifest", "digest", dgst, "error", perr)
		}
		return fetched{m: verifiedManifest{dgst: dgst, mediaType: mediaType, body: body}, upstream: true}, nil
	})
	if err != nil {
		return verifiedManifest{}, err
	}
	f := v.(fetched)
	if !f.upstream {
		// Stored by a fetch for another repository, maybe.
		if err := p.holds(ctx, r, dgst, inRepo); err != nil {
			return verifiedManifest{}, err
		}
	}
	p.recent.add(f.m)
	return f.m, nil
}

// storedManifest returns the manifest from the content store if it is there and still matches its digest.
func (p *Proxy) storedManifest(ctx context.Context, dgst digest.Digest) (verifiedManifest, bool) {
	body, err := p.store.Get(ctx, dgst, p.maxManifest)
	switch {
	case err == nil && dgst.Algorithm().FromBytes(body) == dgst:
		return verifiedManifest{dgst: dgst, mediaType: detectMediaType(body), body: body}, true
	case err == nil:
		p.log.Error("stored manifest does not match its digest; refetching", "digest", dgst)
	case !isNotFound(err):
		p.log.Warn("content store read failed; fetching upstream", "digest", dgst, "error", err)
	}
	return verifiedManifest{}, false
}

// errContentType: the upstream labelled a manifest with a Content-Type its own bytes contradict.
var errContentType = errors.New("manifest Content-Type contradicts its mediaType")

// manifestMediaType is the media type to serve a fetched manifest with. A generic or missing Content-Type gives
// way to what the bytes say (detectMediaType). A specific one must agree with the bytes: the gate and every
// client read a manifest by its type, so a hostile upstream must not relabel an index as an image or a manifest
// as something a client would not parse (text/html from a portal, say); that is errContentType. The two Docker
// schema 1 types name one format.
func manifestMediaType(contentType string, body []byte) (string, error) {
	if contentType == "" || strings.HasPrefix(contentType, "text/plain") || contentType == "application/json" {
		return detectMediaType(body), nil
	}
	own, err := manifest.MediaTypeOf(body)
	if err != nil {
		return "", fmt.Errorf("%w: labelled %q, but not JSON", errContentType, contentType)
	}
	schema1 := func(mt string) bool {
		return mt == manifest.MediaTypeDockerSchema1 || mt == manifest.MediaTypeDockerSchema1JWS
	}
	if own != contentType && !(schema1(own) && schema1(contentType)) {
		return "", fmt.Errorf("%w: labelled %q, its mediaType is %q", errContentType, contentType, own)
	}
	return contentType, nil
}

// detectMediaType reads a manifest's own mediaType field, or infers it from its shape (manifest.MediaTypeOf).
func detectMediaType(body []byte) string {
	mt, err := manifest.MediaTypeOf(body)
	if err != nil {
		return "application/octet-stream"
	}
	return mt
}

// parseAccept returns the media types a client accepts, in the order sent; a client that names none (or only */*)
// accepts every manifest and index type (manifest.AcceptTypes).
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
		return manifest.AcceptTypes()
	}
	return out
}

// warning formats an RFC 7234 Warning header value with code 299 (miscellaneous persistent warning).
func warning(msg string) string {
	return `299 - ` + strconv.Quote(msg)
}

func isNotFound(err error) bool { return errors.Is(err, cache.ErrNotFound) }
