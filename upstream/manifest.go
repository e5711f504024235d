package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/manifest"
)

// Resolve does a HEAD of the manifest ref (tag or digest) in repo and returns its descriptor from the
// Docker-Content-Digest, Content-Type and Content-Length headers. If the upstream leaves out the digest
// or the length, it falls back to Manifest and hashes the body. accept defaults to the OCI and Docker
// manifest and index types (manifest.AcceptTypes).
func (c *Client) Resolve(ctx context.Context, repo, ref string, accept []string) (ocispec.Descriptor, error) {
	op := refOp("resolve", repo, ref)
	if err := c.checkRepo(repo); err != nil {
		return ocispec.Descriptor{}, err
	}
	_, want, err := parseRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if len(accept) == 0 {
		accept = manifest.AcceptTypes()
	}
	ctx2, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	u := c.endpoint.JoinPath("v2", repo, "manifests", ref)
	resp, err := c.do(ctx2, http.MethodHead, kindManifest, u, accept)
	if err != nil {
		return ocispec.Descriptor{}, c.wrapErr(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ocispec.Descriptor{}, c.newError(op, resp)
	}
	if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && resp.ContentLength >= 0 {
		if want != "" && d != want {
			return ocispec.Descriptor{}, fmt.Errorf("upstream %s %s: %w: upstream says %s", c.name, op, ErrDigestMismatch, d)
		}
		return ocispec.Descriptor{MediaType: mediaType(resp.Header), Digest: d, Size: resp.ContentLength}, nil
	}
	body, mt, d, err := c.manifest(ctx, ctx2, repo, ref, want, accept)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(body))}, nil
}

// Manifest GETs the manifest ref (tag or digest) in repo. It reads at most the size cap (ErrTooLarge
// beyond it) and checks the bytes against the digest in ref and against the Docker-Content-Digest
// header (ErrDigestMismatch). It returns the bytes, their media type (Content-Type) and their digest:
// ref itself when ref is a digest, else the sha256 of the bytes. accept defaults as for Resolve.
func (c *Client) Manifest(ctx context.Context, repo, ref string, accept []string) (body []byte, mediaType string, dgst digest.Digest, err error) {
	if err := c.checkRepo(repo); err != nil {
		return nil, "", "", err
	}
	_, want, err := parseRef(ref)
	if err != nil {
		return nil, "", "", err
	}
	if len(accept) == 0 {
		accept = manifest.AcceptTypes()
	}
	ctx2, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	return c.manifest(ctx, ctx2, repo, ref, want, accept)
}

// manifest is Manifest with validated arguments; parent is the caller's context, ctx the bounded one.
func (c *Client) manifest(parent, ctx context.Context, repo, ref string, want digest.Digest, accept []string) ([]byte, string, digest.Digest, error) {
	op := refOp("manifest", repo, ref)
	u := c.endpoint.JoinPath("v2", repo, "manifests", ref)
	resp, err := c.do(ctx, http.MethodGet, kindManifest, u, accept)
	if err != nil {
		return nil, "", "", c.wrapErr(parent, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", "", c.newError(op, resp)
	}
	limit := c.opts.maxManifestSize
	if resp.ContentLength > limit {
		return nil, "", "", fmt.Errorf("upstream %s %s: %w: %d bytes, cap %d", c.name, op, ErrTooLarge, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", "", c.wrapErr(parent, op, err)
	}
	if int64(len(body)) > limit {
		return nil, "", "", fmt.Errorf("upstream %s %s: %w: more than %d bytes", c.name, op, ErrTooLarge, limit)
	}
	got := want
	if want != "" {
		if err := verify(body, want); err != nil {
			return nil, "", "", fmt.Errorf("upstream %s %s: %w", c.name, op, err)
		}
	} else {
		got = digest.FromBytes(body)
	}
	// A tag fetch is checked against the digest the upstream advertises, when it does.
	if hd, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && hd.Algorithm().Available() {
		if err := verify(body, hd); err != nil {
			return nil, "", "", fmt.Errorf("upstream %s %s: Docker-Content-Digest: %w", c.name, op, err)
		}
	}
	return body, mediaType(resp.Header), got, nil
}

// verify checks that body hashes to want.
func verify(body []byte, want digest.Digest) error {
	if !want.Algorithm().Available() {
		return fmt.Errorf("%w: unsupported digest algorithm %q", ErrDigestMismatch, want.Algorithm())
	}
	if got := want.Algorithm().FromBytes(body); got != want {
		return fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, got, want)
	}
	return nil
}
