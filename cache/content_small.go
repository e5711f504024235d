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
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// smallObject is the size up to which an object in a local content store (the filesystem driver) is written
// without an fsync, as one file in a directory of 256 (smallPath, no directory of its own), and checked against
// its digest on every read instead. Signature and attestation artifacts and small layers are this size, and a new
// image's decision writes one or two of them: the driver's way (a file under /uploads, flushed, fsynced, renamed
// across directories into a new directory of its own) cost more CPU than the rest of the decision. A crash can
// leave such an object torn (renamed into place before its bytes reached the disk): its next read finds that out,
// removes it and answers that it is not stored, so it is fetched again.
const smallObject = 64 << 10

const (
	smallRoot = "/small"
	// smallUploadPrefix starts the name of a small object's temporary file, in the directory the object goes to;
	// Load removes old ones (a crash) as it does old uploads.
	smallUploadPrefix = ".upload-"
)

func smallPath(dgst digest.Digest) string {
	enc := dgst.Encoded()
	return path.Join(smallRoot, string(dgst.Algorithm()), enc[:2], enc)
}

// statObject finds an object the process does not track: at blobPath, or in a local store at smallPath (a local
// store asks the disk itself, without the driver's wrapping).
func (c *Content) statObject(ctx context.Context, dgst digest.Digest) (size int64, mod time.Time, small bool, err error) {
	notFound := fmt.Errorf("%w: %s", ErrNotFound, dgst)
	if c.root == "" {
		fi, err := c.driver.Stat(ctx, blobPath(dgst))
		switch {
		case isPathNotFound(err) || (err == nil && fi.IsDir()):
			return 0, time.Time{}, false, notFound
		case err != nil:
			return 0, time.Time{}, false, fmt.Errorf("cache: stat %s: %w", dgst, err)
		}
		return fi.Size(), fi.ModTime(), false, nil
	}
	for _, p := range []string{smallPath(dgst), blobPath(dgst)} {
		fi, err := os.Stat(c.localPath(p))
		switch {
		case err == nil && fi.Mode().IsRegular():
			return fi.Size(), fi.ModTime(), p != blobPath(dgst), nil
		case err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return 0, time.Time{}, false, fmt.Errorf("cache: stat %s: %w", dgst, err)
		}
	}
	return 0, time.Time{}, false, notFound
}

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

// putSmall stores b as dgst in a local store: verified in memory, written to a temporary file in the directory
// it goes to, moved into place.
func (c *Content) putSmall(ctx context.Context, dgst digest.Digest, b []byte) (int64, error) {
	n := int64(len(b))
	if err := checkPut(dgst, b); err != nil {
		return n, err
	}
	tmp, err := c.writeLocal(path.Dir(smallPath(dgst)), b)
	if err != nil {
		return n, fmt.Errorf("cache: put %s: %w", dgst, err)
	}
	cleanupCtx := context.WithoutCancel(ctx)
	if err := c.commit(cleanupCtx, dgst, tmp, n, true); err != nil {
		return n, errors.Join(err, c.removeUpload(cleanupCtx, tmp))
	}
	_ = c.evict(cleanupCtx)
	return n, nil
}

// checkPut is the digest check of an object about to be stored from memory (Content.putSmall, Pack.Put): an error
// wrapping ErrDigestMismatch when b does not hash to dgst.
func checkPut(dgst digest.Digest, b []byte) error {
	if got := dgst.Algorithm().FromBytes(b); got != dgst {
		return fmt.Errorf("cache: put %s: %w: expected %s, got %s (%d bytes)", dgst, ErrDigestMismatch, dgst, got, len(b))
	}
	return nil
}

// writeLocal writes b to a new file in dir (a store path, created when missing) and returns the file's store path.
func (c *Content) writeLocal(dir string, b []byte) (string, error) {
	name, err := uploadPath()
	if err != nil {
		return "", err
	}
	tmp := path.Join(dir, smallUploadPrefix+path.Base(name))
	full := c.localPath(tmp)
	create := func() (*os.File, error) { return os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666) }
	f, err := create()
	if errors.Is(err, os.ErrNotExist) { // the first object of its directory
		if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil {
			return "", err
		}
		f, err = create()
	}
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
	b, err := os.ReadFile(c.localPath(smallPath(e.dgst)))
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
