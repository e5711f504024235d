package cache

import (
	"container/list"
	"context"
	"crypto/rand"
	_ "crypto/sha256" // digest.Algorithm.Hash needs the hash registered; go-digest does not import it
	_ "crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

var (
	// ErrDigestMismatch is returned (wrapped) when content does not hash to the digest it was stored under.
	ErrDigestMismatch = errors.New("cache: digest mismatch")
	// ErrTooLarge is returned (wrapped) by Content.Get when an object exceeds the caller's limit.
	ErrTooLarge = errors.New("cache: object too large")
	// ErrInvalidOffset is returned (wrapped) by Content.Open for an offset outside [0, size].
	ErrInvalidOffset = errors.New("cache: invalid offset")
)

const (
	blobsRoot   = "/blobs"
	uploadsRoot = "/uploads"
	// staleUpload is the age after which Load removes a temporary upload: no Put runs that long without
	// writing, so its owner is gone (a crash or a restart).
	staleUpload = time.Hour
)

// ContentOption configures a Content.
type ContentOption func(*Content)

// WithMaxSize sets the budget in bytes: after each Put, the least recently used objects (by Open and Put)
// are evicted until the total fits. Objects open for reading are never evicted. Default: 0, unlimited.
func WithMaxSize(bytes int64) ContentOption {
	return func(c *Content) { c.maxSize = bytes }
}

// WithContentClock sets the clock used for last-access times and upload staleness, for tests.
// Default: time.Now.
func WithContentClock(now func() time.Time) ContentOption {
	return func(c *Content) { c.now = now }
}

// Content is a content-addressed blob store on a CNCF Distribution storage driver. Objects live at
// /blobs/<alg>/<first two hex>/<hex>/data; uploads stream to /uploads/<random> and are moved into place
// only once their digest is verified. On the filesystem driver, objects up to 64 KiB live at
// /small/<alg>/<first two hex>/<hex> instead (see smallObject). It is safe for concurrent use. Its size accounting is this
// process's view: call Load at start-up to learn what the driver already holds.
type Content struct {
	driver  storagedriver.StorageDriver
	root    string // the filesystem driver's directory; empty on other drivers (see smallObject)
	maxSize int64
	now     func() time.Time

	mu      sync.Mutex
	entries map[digest.Digest]*entry
	lru     *list.List // ready entries, least recently used at the front
	size    int64      // sum of ready entries' sizes
}

// entry tracks one object. It is ready when pending is nil and then sits in the lru list; while a commit
// or a delete is in flight, pending is open and everyone else waits for it to close.
type entry struct {
	dgst       digest.Digest
	size       int64
	lastAccess time.Time
	refs       int // open readers; a referenced entry is never evicted
	elem       *list.Element
	pending    chan struct{}
	small      bool // at smallPath, a local store's small object; else at blobPath
}

// NewContent returns a Content on d. It tracks nothing until Load or use.
func NewContent(d storagedriver.StorageDriver, opts ...ContentOption) (*Content, error) {
	if d == nil {
		return nil, errors.New("cache: nil storage driver")
	}
	c := &Content{
		driver:  d,
		now:     time.Now,
		entries: make(map[digest.Digest]*entry),
		lru:     list.New(),
	}
	if l, ok := d.(localDriver); ok {
		c.root = l.root
	}
	for _, o := range opts {
		o(c)
	}
	if c.maxSize < 0 {
		return nil, fmt.Errorf("cache: negative max size %d", c.maxSize)
	}
	if c.now == nil {
		return nil, errors.New("cache: nil clock")
	}
	return c, nil
}

// Stat returns the size of the object dgst, or an error wrapping ErrNotFound.
func (c *Content) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	e, err := c.lookup(ctx, dgst)
	if err != nil {
		return 0, err
	}
	size := e.size
	c.mu.Unlock()
	return size, nil
}

// Open returns a reader of the object dgst from offset (0 <= offset <= size) and marks it used. The object
// is not evicted until the reader is closed; callers must close it.
func (c *Content) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidOffset, offset)
	}
	e, err := c.lookup(ctx, dgst)
	if err != nil {
		return nil, err
	}
	if offset > e.size {
		size := e.size
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %d beyond size %d of %s", ErrInvalidOffset, offset, size, dgst)
	}
	e.refs++
	c.touchLocked(e)
	c.mu.Unlock()
	if e.small {
		return c.openSmall(ctx, e, offset)
	}

	rc, err := c.driver.Reader(ctx, blobPath(dgst), offset)
	if err != nil {
		c.release(e)
		if isPathNotFound(err) {
			c.forget(e) // removed behind our back (another replica, an operator)
			return nil, fmt.Errorf("%w: %s", ErrNotFound, dgst)
		}
		var off storagedriver.InvalidOffsetError
		if errors.As(err, &off) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOffset, err)
		}
		return nil, fmt.Errorf("cache: open %s: %w", dgst, err)
	}
	return &contentReader{ReadCloser: rc, c: c, e: e}, nil
}

// Get reads a small object (a manifest) whole and re-verifies its digest. An object over max bytes is an
// error wrapping ErrTooLarge; a corrupt one is deleted and reported as ErrDigestMismatch.
func (c *Content) Get(ctx context.Context, dgst digest.Digest, max int64) ([]byte, error) {
	size, err := c.Stat(ctx, dgst)
	if err != nil {
		return nil, err
	}
	if size > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, dgst, size, max)
	}
	rc, err := c.Open(ctx, dgst, 0)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", dgst, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %s exceeds limit %d", ErrTooLarge, dgst, max)
	}
	if got := dgst.Algorithm().FromBytes(data); got != dgst {
		derr := c.Delete(context.WithoutCancel(ctx), dgst)
		return nil, errors.Join(fmt.Errorf("%w: stored %s hashes to %s", ErrDigestMismatch, dgst, got), derr)
	}
	return data, nil
}

// Put streams r into the store as dgst. It writes to a temporary upload while hashing and moves it into
// place only if the bytes hash to dgst; otherwise it returns an error wrapping ErrDigestMismatch and
// leaves nothing behind. n is the number of bytes read from r: when the object is already stored, Put
// returns 0, nil and stops reading r (callers that tee a stream into Put must not block on it; a local store
// may have read up to 64 KiB of a stream of unknown size to learn it is not small). After a
// commit it evicts down to the budget; eviction failures do not fail the Put (the objects stay tracked
// and are retried next time).
func (c *Content) Put(ctx context.Context, dgst digest.Digest, r io.Reader) (n int64, err error) {
	if err := dgst.Validate(); err != nil {
		return 0, fmt.Errorf("cache: put: %w", err)
	}
	if c.root != "" {
		// A small object is written without asking the disk first: an untracked copy there (another replica's, or
		// from before a restart) is replaced by the same bytes.
		if c.tracked(dgst) {
			return 0, nil
		}
		head, rest, small, err := smallHead(ctx, r)
		if err != nil {
			return int64(len(head)), fmt.Errorf("cache: put %s: %w", dgst, err)
		}
		if small {
			return c.putSmall(ctx, dgst, head)
		}
		r = rest
	}
	if ok, err := c.exists(ctx, dgst); err != nil || ok {
		return 0, err
	}

	cleanupCtx := context.WithoutCancel(ctx)
	tmp, err := uploadPath()
	if err != nil {
		return 0, err
	}
	w, err := c.driver.Writer(ctx, tmp, false)
	if err != nil {
		return 0, fmt.Errorf("cache: put %s: %w", dgst, err)
	}
	h := dgst.Algorithm().Hash()
	n, err = io.Copy(io.MultiWriter(w, h), ctxReader{ctx: ctx, r: r})
	if err == nil {
		if got := digest.NewDigest(dgst.Algorithm(), h); got != dgst {
			err = fmt.Errorf("%w: expected %s, got %s (%d bytes)", ErrDigestMismatch, dgst, got, n)
		}
	}
	if err != nil {
		return n, errors.Join(fmt.Errorf("cache: put %s: %w", dgst, err), c.discard(cleanupCtx, w, tmp))
	}
	if err := w.Commit(ctx); err != nil {
		return n, errors.Join(fmt.Errorf("cache: put %s: commit: %w", dgst, err), c.discard(cleanupCtx, w, tmp))
	}
	if err := w.Close(); err != nil {
		return n, errors.Join(fmt.Errorf("cache: put %s: close: %w", dgst, err), c.removeUpload(cleanupCtx, tmp))
	}

	if err := c.commit(cleanupCtx, dgst, tmp, n, false); err != nil {
		return n, errors.Join(err, c.removeUpload(cleanupCtx, tmp))
	}
	_ = c.evict(cleanupCtx)
	return n, nil
}

// Delete removes the object dgst. An absent object is not an error.
func (c *Content) Delete(ctx context.Context, dgst digest.Digest) error {
	e, err := c.lookup(ctx, dgst)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	c.unlinkLocked(e)
	e.pending = make(chan struct{})
	c.mu.Unlock()
	return c.remove(ctx, e)
}

// Size returns the bytes currently tracked.
func (c *Content) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// tracked reports whether this process knows dgst is stored, touching it if so; it asks no driver.
func (c *Content) tracked(dgst digest.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[dgst]
	if e == nil || e.pending != nil {
		return false
	}
	c.touchLocked(e)
	return true
}

// exists reports whether dgst is stored, touching it if so; it learns objects the driver holds that this
// process has not seen (written by another replica or before a restart).
func (c *Content) exists(ctx context.Context, dgst digest.Digest) (bool, error) {
	e, err := c.lookup(ctx, dgst)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.touchLocked(e)
	c.mu.Unlock()
	return true, nil
}

// commit moves the verified upload tmp to dgst's path (smallPath when small), unless another Put got there first.
func (c *Content) commit(ctx context.Context, dgst digest.Digest, tmp string, size int64, small bool) error {
	e, err := c.settled(ctx, dgst)
	if err != nil {
		return err
	}
	if e != nil { // a concurrent Put of the same digest won
		c.touchLocked(e)
		c.mu.Unlock()
		return c.removeUpload(ctx, tmp)
	}
	e = &entry{dgst: dgst, size: size, pending: make(chan struct{}), small: small}
	c.entries[dgst] = e
	c.mu.Unlock()

	if small { // beside it, in a local store
		err = os.Rename(c.localPath(tmp), c.localPath(smallPath(dgst)))
	} else {
		err = c.driver.Move(ctx, tmp, blobPath(dgst))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	close(e.pending)
	e.pending = nil
	if err != nil {
		delete(c.entries, dgst)
		return fmt.Errorf("cache: put %s: move: %w", dgst, err)
	}
	c.size += size
	c.touchLocked(e)
	return nil
}

// discard cancels an upload writer and makes sure its temporary file is gone.
func (c *Content) discard(ctx context.Context, w storagedriver.FileWriter, tmp string) error {
	cerr := w.Cancel(ctx)
	if err := c.removeUpload(ctx, tmp); err != nil {
		return errors.Join(cerr, err)
	}
	return nil // Cancel errors don't matter once the file is gone
}

func (c *Content) removeUpload(ctx context.Context, tmp string) error {
	if err := c.driver.Delete(ctx, tmp); err != nil && !isPathNotFound(err) {
		return fmt.Errorf("cache: remove upload %s: %w", tmp, err)
	}
	return nil
}

// settled locks c.mu and returns dgst's entry (nil when untracked) once no commit or delete of it is in
// flight. On success c.mu is held.
func (c *Content) settled(ctx context.Context, dgst digest.Digest) (*entry, error) {
	c.mu.Lock()
	for {
		e := c.entries[dgst]
		if e == nil || e.pending == nil {
			return e, nil
		}
		ch := e.pending
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
}

// lookup returns dgst's ready entry with c.mu held, asking the driver about untracked objects (and
// tracking them, with their modification time as last access). Otherwise it returns an error with c.mu
// released: ErrNotFound, or the driver's.
func (c *Content) lookup(ctx context.Context, dgst digest.Digest) (*entry, error) {
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotFound, dgst, err)
	}
	for {
		e, err := c.settled(ctx, dgst)
		if err != nil {
			return nil, err
		}
		if e != nil {
			return e, nil
		}
		c.mu.Unlock()

		size, mod, small, err := c.statObject(ctx, dgst)
		if err != nil {
			return nil, err
		}

		c.mu.Lock()
		switch e := c.entries[dgst]; {
		case e == nil:
			e = &entry{dgst: dgst, size: size, lastAccess: mod, small: small}
			c.entries[dgst] = e
			c.size += e.size
			c.insertByTimeLocked(e)
			return e, nil
		case e.pending == nil:
			return e, nil
		}
		c.mu.Unlock() // raced with a commit or delete: settle again
	}
}

// remove deletes a pending entry's object (already unlinked from the LRU and the size) from the driver.
// On failure the entry is tracked again, so the budget stays honest and a later eviction retries.
func (c *Content) remove(ctx context.Context, e *entry) error {
	p := blobDir(e.dgst)
	if e.small {
		p = smallPath(e.dgst)
	}
	err := c.driver.Delete(ctx, p)
	if isPathNotFound(err) {
		err = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	close(e.pending)
	e.pending = nil
	if err != nil {
		c.size += e.size
		c.insertByTimeLocked(e)
		return fmt.Errorf("cache: delete %s: %w", e.dgst, err)
	}
	delete(c.entries, e.dgst)
	return nil
}

// forget stops tracking a ready entry whose object turned out to be gone.
func (c *Content) forget(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.dgst] == e && e.pending == nil {
		c.unlinkLocked(e)
		delete(c.entries, e.dgst)
	}
}

func (c *Content) release(e *entry) {
	c.mu.Lock()
	e.refs--
	c.mu.Unlock()
}

// touchLocked marks e as just used.
func (c *Content) touchLocked(e *entry) {
	e.lastAccess = c.now()
	if e.elem == nil {
		e.elem = c.lru.PushBack(e)
		return
	}
	c.lru.MoveToBack(e.elem)
}

// insertByTimeLocked links e into the LRU list at the place its lastAccess puts it.
func (c *Content) insertByTimeLocked(e *entry) {
	for el := c.lru.Back(); el != nil; el = el.Prev() {
		if !el.Value.(*entry).lastAccess.After(e.lastAccess) {
			e.elem = c.lru.InsertAfter(e, el)
			return
		}
	}
	e.elem = c.lru.PushFront(e)
}

// unlinkLocked takes a ready entry out of the LRU list and the size; the caller then deletes or re-links it.
func (c *Content) unlinkLocked(e *entry) {
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
		c.size -= e.size
	}
}

// contentReader releases its entry's reference on Close, once.
type contentReader struct {
	io.ReadCloser
	c    *Content
	e    *entry
	once sync.Once
}

func (r *contentReader) Close() error {
	r.once.Do(func() { r.c.release(r.e) })
	return r.ReadCloser.Close()
}

// ctxReader stops a long copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func blobDir(dgst digest.Digest) string {
	enc := dgst.Encoded()
	return path.Join(blobsRoot, string(dgst.Algorithm()), enc[:2], enc)
}

func blobPath(dgst digest.Digest) string {
	return path.Join(blobDir(dgst), "data")
}

// parseBlobPath is the inverse of blobPath; ok is false for anything else.
func parseBlobPath(p string) (digest.Digest, bool) { return parseObjectPath(p, blobsRoot, blobPath) }

// parseSmallPath is the inverse of smallPath; ok is false for anything else.
func parseSmallPath(p string) (digest.Digest, bool) { return parseObjectPath(p, smallRoot, smallPath) }

// parseObjectPath returns the digest whose path under root, as build makes it (root/<alg>/<2 hex>/<hex>...), is p.
func parseObjectPath(p, root string, build func(digest.Digest) string) (digest.Digest, bool) {
	parts := strings.Split(strings.TrimPrefix(p, root+"/"), "/")
	if len(parts) < 3 {
		return "", false
	}
	dgst := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
	if dgst.Validate() != nil || build(dgst) != p {
		return "", false
	}
	return dgst, true
}

func uploadPath() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cache: upload name: %w", err)
	}
	return path.Join(uploadsRoot, hex.EncodeToString(b[:])), nil
}

func isPathNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}
