package verifier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/upstream"
)

// Source reads one upstream registry for the verifier: the proxy's own
// registry client (*upstream.Client), or a decorator of it that keeps what it
// read (admission's). Failures are reported with upstream's sentinel errors:
// ErrNotFound for a tag, manifest or blob that is not there, ErrTooLarge for a
// manifest or list past its cap, ErrDigestMismatch for bytes that do not hash
// to their digest; anything else means the registry could not be read.
type Source interface {
	// Manifest returns the manifest ref (a tag or a digest) in repo, read
	// through a cap and checked against ref when it is a digest. The media
	// type may be empty: the verifier reads the manifest's own.
	Manifest(ctx context.Context, repo, ref string, accept []string) (body []byte, mediaType string, dgst digest.Digest, err error)
	// Blob returns a stream of the blob dgst in repo and its size (-1 when
	// unknown). The verifier bounds what it reads and checks the digest.
	Blob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, int64, error)
	// Referrers returns the OCI referrers index of dgst in repo; supported is
	// false when the registry has no referrers API (the verifier then reads
	// the sha256-<hex> fallback tag).
	Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType string) (index []byte, supported bool, err error)
}

var _ Source = (*upstream.Client)(nil)

// source returns what t is read through: t.Source, or else a registry client
// for this call alone on t.Transport, without retries (they are the
// transport's business; a failure is reported at once so that the caller can
// fail closed), with manifests capped at maxManifestSize.
func (v *Verifier) source(t Target) (Source, error) {
	if t.Source != nil {
		return t.Source, nil
	}
	scheme := "https"
	if t.Insecure {
		scheme = "http"
	}
	tr := t.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	opts := []upstream.Option{
		upstream.WithTransport(tr),
		upstream.WithRetries(0, time.Second),
		upstream.WithMaxManifestSize(maxManifestSize),
	}
	if v.userAgent != "" {
		opts = append(opts, upstream.WithUserAgent(v.userAgent))
	}
	c, err := upstream.New(t.Registry, &url.URL{Scheme: scheme, Host: t.Registry}, opts...)
	if err != nil {
		return nil, fmt.Errorf("verifier: target registry: %w", err)
	}
	return c, nil
}

// readFailure sorts an error met while reading the evidence what: content
// that is too large, does not hash to its digest or is not there (a layer an
// artifact names, say) is the content's fault, which whoever pushed it
// controls, and is returned as invalid evidence, so that what a pusher puts
// in the upstream can never turn into "could not decide"; anything else (the
// registry unreachable, 5xx, auth refused, a connection dropped mid-read, a
// cancelled or expired context) is ErrUnavailable.
func readFailure(what string, err error) error {
	var me *mismatchError
	switch {
	case asBound(err) != nil:
		return asBound(err)
	case errors.As(err, &me):
		return fmt.Errorf("%s does not match its descriptor of %d bytes: %s", what, me.size, me.why)
	case errors.Is(err, upstream.ErrTooLarge):
		return exceeded("%s is more than %s", what, bytesString(maxManifestSize))
	case errors.Is(err, upstream.ErrDigestMismatch):
		return fmt.Errorf("%s: %w", what, err)
	case isNotFound(err):
		return fmt.Errorf("%s is not in the registry", what)
	}
	return unavailable("read "+what, err)
}

// isNotFound reports whether err is the registry's answer that what was asked
// for is not there.
func isNotFound(err error) bool { return errors.Is(err, upstream.ErrNotFound) }

// mismatchError says that a blob is not what its descriptor says: another
// size or other bytes.
type mismatchError struct {
	size int64 // the descriptor's
	why  string
}

func (e *mismatchError) Error() string {
	return fmt.Sprintf("does not match its descriptor of %d bytes: %s", e.size, e.why)
}

// fetchBlob reads the blob desc names, which checkLayer passed: at most
// desc.Size bytes, refused unread when the registry announces another size,
// and checked against desc.Digest. A blob other than its descriptor says is a
// *mismatchError; a failure of the registry or the connection is returned as
// the Source reported it.
func fetchBlob(ctx context.Context, src Source, repo string, d blobKey) ([]byte, error) {
	rc, n, err := src.Blob(ctx, repo, d.digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if n >= 0 && n != d.size {
		return nil, &mismatchError{size: d.size, why: fmt.Sprintf("the registry sends %d bytes", n)}
	}
	b, err := io.ReadAll(io.LimitReader(rc, d.size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != d.size {
		return nil, &mismatchError{size: d.size, why: fmt.Sprintf("%d bytes read", len(b))}
	}
	if !d.digest.Algorithm().Available() {
		return nil, &mismatchError{size: d.size, why: fmt.Sprintf("unsupported digest algorithm %q", d.digest.Algorithm())}
	}
	if got := d.digest.Algorithm().FromBytes(b); got != d.digest {
		return nil, &mismatchError{size: d.size, why: "the content is " + got.String()}
	}
	return b, nil
}

// blobKey names a blob as a descriptor does: two descriptors of one digest
// that claim different sizes are read, and refused, apart.
type blobKey struct {
	digest digest.Digest
	size   int64
}
