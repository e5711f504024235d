package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// smallObject is the size up to which an object in a local content store (the filesystem driver) is written
// without an fsync, next to where it goes, and checked against its digest on every read instead. Signature and
// attestation artifacts and small layers are this size, and a new image's decision writes one or two of them: the
// driver's way (a file under /uploads, flushed, fsynced, renamed across directories) cost more CPU than the rest of
// the decision. A crash can leave such an object torn (renamed into place before its bytes reached the disk): its
// next read finds that out, removes it and answers that it is not stored, so it is fetched again.
const smallObject = 64 << 10

// smallUploadPrefix starts the name of a small object's temporary file, in the object's own directory; Load
// removes old ones (a crash) as it does old uploads.
const smallUploadPrefix = ".upload-"

// smallHead reads r whole when it holds at most smallObject bytes (head, small) and otherwise returns a reader of
// all of r (rest, !small) after what was read. A reader that knows its size is not read to decide.
func smallHead(ctx context.Context, r io.Reader) (head []byte, rest io.Reader, small bool, err error) {
	if s, ok := r.(interface{ Size() int64 }); ok && s.Size() > smallObject {
		return nil, r, false, nil
	}
	head, err = io.ReadAll(io.LimitReader(ctxReader{ctx: ctx, r: r}, smallObject+1))
	if err != nil || len(head) <= smallObject {
		return head, nil, true, err
	}
	return nil, io.MultiReader(bytes.NewReader(head), r), false, nil
}

// putSmall stores b as dgst in a local store: verified in memory, written to a temporary file in the object's
// directory, moved into place.
func (c *Content) putSmall(ctx context.Context, dgst digest.Digest, b []byte) (int64, error) {
	n := int64(len(b))
	if got := dgst.Algorithm().FromBytes(b); got != dgst {
		return n, fmt.Errorf("cache: put %s: %w: expected %s, got %s (%d bytes)", dgst, ErrDigestMismatch, dgst, got, n)
	}
	tmp, err := c.writeLocal(blobDir(dgst), b)
	if err != nil {
		return n, fmt.Errorf("cache: put %s: %w", dgst, err)
	}
	cleanupCtx := context.WithoutCancel(ctx)
	if err := c.commit(cleanupCtx, dgst, tmp, n); err != nil {
		return n, errors.Join(err, c.removeUpload(cleanupCtx, tmp))
	}
	_ = c.evict(cleanupCtx)
	return n, nil
}

// writeLocal writes b to a new file in dir (a store path, created when missing) and returns the file's store path.
func (c *Content) writeLocal(dir string, b []byte) (string, error) {
	name, err := uploadPath()
	if err != nil {
		return "", err
	}
	tmp := path.Join(dir, smallUploadPrefix+path.Base(name))
	full := c.localPath(tmp)
	if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil {
		return "", err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return "", err
	}
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = os.Remove(full)
		return "", err
	}
	return tmp, nil
}

// openSmall reads a small object of a local store whole, e referenced, and checks it against its digest: a torn
// one is removed and reported as ErrDigestMismatch, as Get does.
func (c *Content) openSmall(ctx context.Context, e *entry, offset int64) (io.ReadCloser, error) {
	b, err := os.ReadFile(c.localPath(blobPath(e.dgst)))
	if err != nil {
		c.release(e)
		if errors.Is(err, os.ErrNotExist) {
			c.forget(e) // removed behind our back (another replica, an operator)
			return nil, fmt.Errorf("%w: %s", ErrNotFound, e.dgst)
		}
		return nil, fmt.Errorf("cache: open %s: %w", e.dgst, err)
	}
	if got := e.dgst.Algorithm().FromBytes(b); got != e.dgst {
		c.release(e)
		derr := c.Delete(context.WithoutCancel(ctx), e.dgst)
		return nil, errors.Join(fmt.Errorf("%w: stored %s hashes to %s (torn by a crash?); removed", ErrDigestMismatch, e.dgst, got), derr)
	}
	if offset > int64(len(b)) {
		c.release(e)
		return nil, fmt.Errorf("%w: %d beyond size %d of %s", ErrInvalidOffset, offset, len(b), e.dgst)
	}
	return &contentReader{ReadCloser: io.NopCloser(bytes.NewReader(b[offset:])), c: c, e: e}, nil
}

// localPath is where a store path lives on a local store's disk.
func (c *Content) localPath(p string) string {
	return filepath.Join(c.root, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// isSmallUpload reports whether a store path is a small object's temporary file.
func isSmallUpload(p string) bool {
	return strings.HasPrefix(path.Base(p), smallUploadPrefix)
}
