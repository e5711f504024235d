package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/manifest"
)

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest>: from the content store, else from one shared upstream
// download streamed as it arrives. Range requests get 206, or 416 when they cannot be satisfied.
func (p *Proxy) serveBlob(w http.ResponseWriter, req *http.Request, r route) error {
	ctx := req.Context()
	scanner := p.scanCreds != nil && p.scanCreds.AllowBlob(ctx, r.bearer, r.upstream.Name, r.repo, r.dgst)
	if gate, ok := p.admitter.(BlobGate); ok && !scanner {
		allowed, err := gate.AllowBlob(ctx, r.upstream.Name, r.repo, r.dgst)
		if err != nil {
			p.log.Error("blob gate could not decide; refusing", "digest", r.dgst, "error", err)
		}
		if !allowed && err == nil {
			if allowed, err = p.regrant(ctx, gate, r); err != nil {
				return err
			}
		}
		if !allowed {
			return &apiError{status: http.StatusForbidden, code: codeDenied, message: fmt.Sprintf(
				"portcullis: blob %s is not part of any image admitted for %s/%s: pull an admitted image's manifest first", r.dgst, r.upstream.Name, r.repo)}
		}
	}
	if size, err := p.store.Stat(ctx, r.dgst); err == nil {
		p.metrics.cache.WithLabelValues("blob", "hit").Inc()
		return p.serveStoredBlob(w, req, r, size)
	} else if !isNotFound(err) {
		p.log.Warn("content store stat failed; fetching upstream", "digest", r.dgst, "error", err)
	}
	p.metrics.cache.WithLabelValues("blob", "miss").Inc()
	return p.serveColdBlob(w, req, r)
}

// serveColdBlob serves an admitted blob the content store cannot give: from a download in flight, or a new one from
// the upstream, verified as it streams.
func (p *Proxy) serveColdBlob(w http.ResponseWriter, req *http.Request, r route) error {
	ctx := req.Context()
	if req.Method == http.MethodHead {
		if size, ok := p.blobs.size(r.dgst); ok {
			// In flight, or verified and being committed: the download knows the size, no need to ask upstream.
			return p.headBlob(w, req, r, size)
		}
		return p.statColdBlob(w, req, r)
	}
	d, err := p.blobs.attach(ctx, r)
	if err != nil {
		return err
	}
	defer d.release()
	size, err := d.wait(ctx)
	if err != nil {
		return err
	}
	if partialRange(req.Header.Get("Range"), size) {
		// A part of a blob cannot be checked against the blob's digest: a range waits for the whole download
		// to verify, and is then served from the verified spool.
		if size, err = d.verified(ctx); err != nil {
			return err
		}
	}
	start, length, ok := int64(0), size, true
	if size >= 0 {
		start, length, ok = parseRange(req.Header.Get("Range"), size)
		if !ok {
			return rangeNotSatisfiable(w, size)
		}
	}
	setBlobHeaders(w, r, start, length, size)
	n, sent, err := d.sendTo(ctx, w, start, length)
	if !sent {
		rd := &downloadReader{ctx: ctx, d: d, off: start, limit: length}
		buf := serveBuffers.Get().(*[]byte)
		n, err = io.CopyBuffer(fairWriter{w}, rd, *buf)
		serveBuffers.Put(buf)
	}
	p.metrics.bytes.WithLabelValues("blob_upstream").Add(float64(n))
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("blob stream aborted", "digest", r.dgst, "sent", n, "error", err)
		}
		// Headers are gone: breaking the connection is the only way to tell the client the body is bad.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// statColdBlob answers a HEAD of a blob the store does not have with a HEAD upstream: a HEAD never starts a
// download that would outlive it, so HEADs cannot fill the spool or the store.
func (p *Proxy) statColdBlob(w http.ResponseWriter, req *http.Request, r route) error {
	size, err := r.upstream.Registry.StatBlob(req.Context(), r.repo, r.dgst)
	if err != nil {
		return err
	}
	return p.headBlob(w, req, r, size)
}

// headBlob answers a HEAD of a blob of size bytes (-1: unknown).
func (p *Proxy) headBlob(w http.ResponseWriter, req *http.Request, r route, size int64) error {
	start, length, ok := int64(0), size, true
	if size >= 0 {
		if start, length, ok = parseRange(req.Header.Get("Range"), size); !ok {
			return rangeNotSatisfiable(w, size)
		}
	}
	setBlobHeaders(w, r, start, length, size)
	return nil
}

func (p *Proxy) serveStoredBlob(w http.ResponseWriter, req *http.Request, r route, size int64) error {
	start, length, ok := parseRange(req.Header.Get("Range"), size)
	if !ok {
		return rangeNotSatisfiable(w, size)
	}
	if req.Method == http.MethodHead {
		setBlobHeaders(w, r, start, length, size)
		return nil
	}
	rc, err := p.store.Open(req.Context(), r.dgst, start)
	if err != nil {
		if !isNotFound(err) { // evicted between Stat and Open is a plain miss
			// The store knows the blob but cannot read it (an S3 outage): the upstream still has it.
			p.log.Warn("content store read failed; fetching upstream", "digest", r.dgst, "error", err)
		}
		return p.serveColdBlob(w, req, r)
	}
	defer rc.Close()
	setBlobHeaders(w, r, start, length, size)
	n, err := io.CopyN(w, rc, length)
	p.metrics.bytes.WithLabelValues("blob_cache").Add(float64(n))
	if err != nil && req.Context().Err() == nil {
		p.log.Warn("stored blob read failed mid-stream", "digest", r.dgst, "sent", n, "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// setBlobHeaders writes the status and headers of a blob answer; length -1 means unknown (no Content-Length).
func setBlobHeaders(w http.ResponseWriter, r route, start, length, size int64) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", r.dgst.String())
	h.Set("Etag", `"`+r.dgst.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	if size >= 0 {
		h.Set("Accept-Ranges", "bytes")
	}
	if length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if size >= 0 && (start != 0 || length != size) {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		w.WriteHeader(http.StatusPartialContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func rangeNotSatisfiable(w http.ResponseWriter, size int64) error {
	w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
	return &apiError{status: http.StatusRequestedRangeNotSatisfiable, code: codeBlobUnknown,
		message: fmt.Sprintf("requested range not satisfiable for a blob of %d bytes", size)}
}

// partialRange reports whether a Range header asks for less than the whole of a blob of size bytes (-1:
// unknown, so any Range header may).
func partialRange(h string, size int64) bool {
	if h == "" {
		return false
	}
	if size < 0 {
		return true
	}
	start, length, ok := parseRange(h, size)
	return ok && (start != 0 || length != size)
}

// parseRange reads a single-range "bytes=" header against a blob of size bytes and returns the start and length to
// serve. An absent, malformed or multi-range header means the whole blob (RFC 9110 lets a server ignore Range);
// ok is false only for a well-formed range that lies outside the blob (416).
func parseRange(h string, size int64) (start, length int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if h == "" || !found || strings.Contains(spec, ",") {
		return 0, size, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, size, true
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, size, true
		}
		if n == 0 {
			return 0, 0, false
		}
		if n > size {
			n = size
		}
		return size - n, n, true
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 {
		return 0, size, true
	}
	e := size - 1
	if last != "" {
		if e, err = strconv.ParseInt(last, 10, 64); err != nil || e < s {
			return 0, size, true
		}
		if e > size-1 {
			e = size - 1
		}
	}
	if s >= size {
		return 0, 0, false
	}
	return s, e - s + 1, true
}

// maxRegrantDecisions bounds the manifests one blob request decides again after a policy reload.
const maxRegrantDecisions = 8

// regrant decides again, under the policy in force, the manifests that granted the blob under an earlier policy
// (PriorGrants), and reports whether the blob is granted now. A manifest the policy in force denies grants nothing,
// and a chain stops at its first denial; anything that cannot be decided leaves the blob refused (fail closed),
// except an overloaded gate: its error is the 429 to send, as for a manifest.
func (p *Proxy) regrant(ctx context.Context, gate BlobGate, r route) (bool, error) {
	pg, ok := p.admitter.(PriorGrants)
	if !ok {
		return false, nil
	}
	chains, err := pg.PriorGrants(ctx, r.upstream.Name, r.repo, r.dgst)
	if err != nil {
		p.log.Warn("earlier policies' grants partly unreadable", "digest", r.dgst, "error", err)
	}
	if len(chains) == 0 {
		return false, nil
	}
	decided := map[admission.PriorManifest]bool{}
	for _, chain := range chains {
		for _, pm := range chain {
			if len(decided) == maxRegrantDecisions {
				break
			}
			allowed, seen := decided[pm]
			if !seen {
				// As a pull of the manifest by digest (or, for a signature admitted by its cosign tag, by that tag
				// resolving to that digest) would be decided; as the policy does, not as a scanner credential would.
				mr := r
				mr.bearer, mr.ref, mr.dgst = "", pm.Tag, ""
				if pm.Tag == "" {
					mr.ref, mr.dgst = pm.Digest.String(), pm.Digest
				}
				d := pm.Digest
				_, dec, err := p.admitManifest(ctx, mr, d, manifest.AcceptTypes(), false)
				var ae *apiError
				if errors.As(err, &ae) && ae.status == http.StatusTooManyRequests {
					return false, err
				}
				if err != nil {
					p.log.Warn("could not decide a manifest again after a policy reload", "digest", d, "blob", r.dgst, "error", err)
				}
				allowed = err == nil && dec.Allowed
				decided[pm] = allowed
			}
			if !allowed {
				break
			}
		}
		switch ok, err := gate.AllowBlob(ctx, r.upstream.Name, r.repo, r.dgst); {
		case err != nil:
			p.log.Error("blob gate could not decide; refusing", "digest", r.dgst, "error", err)
			return false, nil
		case ok:
			p.log.Info("blob granted again under the policy in force after a reload", "upstream", r.upstream.Name,
				"repository", r.repo, "digest", r.dgst, "via", chain[len(chain)-1].Digest)
			return true, nil
		}
	}
	return false, nil
}

// fairWriter yields the processor after every write of a cold blob's stream copied with readAt (where sendTo
// cannot send; sendTo yields the same way). A herd's streams rarely block (a fast client drains the socket as fast
// as the proxy fills it), so without it each runs out its 10 ms time slice, and a follower that has just arrived
// waits for a turn behind every stream already running. With it the streams take turns a write (128 KiB) at a
// time, and the goroutine the netpoller woke for a new request gets a processor within one round.
type fairWriter struct{ w io.Writer }

func (f fairWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	runtime.Gosched()
	return n, err
}
