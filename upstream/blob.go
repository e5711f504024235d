package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// Blob GETs the blob dgst in repo and returns its body as a stream, and its size (Content-Length, or -1
// if the upstream did not say). Redirects (to object storage, say) are followed without credentials.
// The timeout covers only the wait for the response headers; the body then streams for as long as ctx
// lives. The caller must close the body and is responsible for verifying the digest as it reads.
func (c *Client) Blob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, int64, error) {
	op := "blob " + repo + "@" + dgst.String()
	if err := c.checkRepo(repo); err != nil {
		return nil, 0, err
	}
	if err := dgst.Validate(); err != nil {
		return nil, 0, fmt.Errorf("upstream: invalid blob digest %q: %w", dgst, err)
	}
	bctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(c.opts.timeout, cancel)
	u := c.endpoint.JoinPath("v2", repo, "blobs", dgst.String())
	resp, err := c.do(bctx, http.MethodGet, kindBlob, u, nil)
	if !timer.Stop() {
		// The time to first byte ran out (maybe just as the headers came in: the body is dead anyway).
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		if ctx.Err() == nil {
			err = fmt.Errorf("no response headers within %v: %w", c.opts.timeout, context.DeadlineExceeded)
		}
		return nil, 0, c.wrapErr(ctx, op, err)
	}
	if err != nil {
		cancel()
		return nil, 0, c.wrapErr(ctx, op, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		return nil, 0, c.newError(op, resp)
	}
	body := &blobBody{ReadCloser: resp.Body, ctx: ctx, cancel: cancel, idleTimeout: c.opts.bodyIdleTimeout}
	body.idle = time.AfterFunc(body.idleTimeout, func() { body.stalled.Store(true); cancel() })
	return body, resp.ContentLength, nil
}

// blobBody releases the request context when the body is closed, cuts the body off when no byte came for
// idleTimeout, and reports a broken or stalled stream as ErrUnavailable (unless the caller cancelled).
type blobBody struct {
	io.ReadCloser
	ctx         context.Context
	cancel      context.CancelFunc
	idleTimeout time.Duration
	idle        *time.Timer
	stalled     atomic.Bool
}

func (b *blobBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 && err == nil {
		b.idle.Reset(b.idleTimeout)
	}
	if err != nil && err != io.EOF && b.ctx.Err() == nil && !errors.Is(err, ErrUnavailable) {
		if b.stalled.Load() {
			err = fmt.Errorf("upstream blob body: %w: no data for %v: %w", ErrUnavailable, b.idleTimeout, context.DeadlineExceeded)
		} else {
			err = fmt.Errorf("upstream blob body: %w: %w", ErrUnavailable, err)
		}
	}
	return n, err
}

func (b *blobBody) Close() error {
	b.idle.Stop()
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// StatBlob HEADs the blob dgst in repo and returns its size (Content-Length, or -1 if the upstream did
// not say). It reads no content, so nothing is verified beyond the Docker-Content-Digest header, when
// the upstream sends one: a different digest there is ErrDigestMismatch. Redirects are followed without
// credentials, as for Blob. The timeout bounds the whole call.
func (c *Client) StatBlob(ctx context.Context, repo string, dgst digest.Digest) (int64, error) {
	op := "stat blob " + repo + "@" + dgst.String()
	if err := c.checkRepo(repo); err != nil {
		return 0, err
	}
	if err := dgst.Validate(); err != nil {
		return 0, fmt.Errorf("upstream: invalid blob digest %q: %w", dgst, err)
	}
	ctx2, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	u := c.endpoint.JoinPath("v2", repo, "blobs", dgst.String())
	resp, err := c.do(ctx2, http.MethodHead, kindBlob, u, nil)
	if err != nil {
		return 0, c.wrapErr(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, c.newError(op, resp)
	}
	if hd, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && hd != dgst {
		return 0, fmt.Errorf("upstream %s %s: %w: upstream says %s", c.name, op, ErrDigestMismatch, hd)
	}
	return resp.ContentLength, nil
}
