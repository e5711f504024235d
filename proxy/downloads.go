package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// downloads is the set of in-flight upstream blob fetches of one Proxy. Concurrent misses for one digest share one
// download: it spools to an unlinked file on local disk while every waiting client reads from that file as it grows,
// so memory does not grow with blob size and a follower never waits for the whole blob.
//
// The spool has a budget (WithSpoolMaxSize): a download reserves its Content-Length before it spools a byte, or
// its bytes as they arrive when the upstream does not say; one that would go over is refused (errSpoolFull) and
// its readers get 503 with Retry-After. The reservation is given back when the spool file closes, after the
// download and its last reader are done.
type downloads struct {
	store    Store  // where a verified blob is committed
	dir      string // the spool directory
	maxSize  int64  // the spool budget; 0: none
	log      *slog.Logger
	metrics  *Metrics
	mu       sync.Mutex
	inflight map[digest.Digest]*download
	spooled  int64 // bytes reserved by open spool files, under mu
	// once, when set, takes the fleet-wide lease on a blob before it is fetched upstream (Proxy.fleetOnce).
	once      func(ctx context.Context, name string, maxWait time.Duration, found func() bool) *cache.Lease
	leaseWait time.Duration  // how long once may wait for another replica's download
	running   sync.WaitGroup // downloads whose fetch or commit goes on in the background
	health    *storeHealth   // the outcome of the last commit, for /readyz
	// commitWait bounds how long a verified download's commit waits for its readers (commitWait; tests shorten it).
	commitWait time.Duration
}

func newDownloads(store Store, dir string, maxSize int64, log *slog.Logger, m *Metrics) *downloads {
	return &downloads{store: store, dir: dir, maxSize: maxSize, log: log, metrics: m, inflight: map[digest.Digest]*download{},
		commitWait: commitWait}
}

// blobTimeout bounds one upstream blob download, which goes on after the client that started it hangs up (its
// other readers and the content store still want it), so that an upstream that trickles cannot hold a spool file
// and its budget for ever. An hour moves a few GiB over a slow link; the upstream client's own timeout covers only
// the response headers.
const blobTimeout = time.Hour

// fetchBuffer is the read size of an upstream download (one buffer per download); serveBuffer the write size of
// a client's stream (pooled: a herd of clients holds one each while it streams).
const (
	fetchBuffer = 1 << 20
	serveBuffer = 128 << 10
)

var serveBuffers = sync.Pool{New: func() any { b := make([]byte, serveBuffer); return &b }}

// errSpoolFull: the spool budget cannot take another download now.
var errSpoolFull = errors.New("the download spool is full")

// reserve counts n more spool bytes against the budget for d, or fails with errSpoolFull.
func (ds *downloads) reserve(d *download, n int64) error {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if limit := ds.maxSize; limit > 0 && ds.spooled+n > limit {
		ds.metrics.spoolFull.Inc()
		return fmt.Errorf("%w: %d bytes in use, %d more wanted, budget %d (spoolMaxSize)", errSpoolFull, ds.spooled, n, limit)
	}
	ds.spooled += n
	d.reserved += n
	ds.metrics.spool.Set(float64(ds.spooled))
	return nil
}

// unreserve gives back what d reserved.
func (ds *downloads) unreserve(d *download) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.spooled -= d.reserved
	d.reserved = 0
	ds.metrics.spool.Set(float64(ds.spooled))
}

// download is one upstream fetch of a blob.
type download struct {
	ds   *downloads
	dgst digest.Digest
	file *os.File
	// reserved is what the spool file counts against the budget, under ds.mu.
	reserved int64
	// lease, when set, tells other replicas this one is fetching the blob; stopLease stops renewing it.
	lease     *cache.Lease
	stopLease func()

	// The state readers wait on is read without a lock: a herd's 200 readers woken at every write would queue on a
	// mutex behind one another (a lock convoy) and hold the last follower's first byte back by a second.
	size    atomic.Int64                  // Content-Length, -1 unknown; set before started
	started atomic.Bool                   // upstream answered (size known, or the download ended)
	written atomic.Int64                  // bytes in the spool file
	outcome atomic.Pointer[outcome]       // set when the download ended
	wake    atomic.Pointer[chan struct{}] // closed (and replaced) when any of the above changes

	mu   sync.Mutex
	refs int // readers attached, plus one for the download itself, under mu
	// readersDone is closed when d's readers are first all done (refs back to 1): its commit waits for that.
	readersDone chan struct{}
}

// outcome is how a download ended: err is nil when the blob verified.
type outcome struct{ err error }

// changed wakes everyone waiting on d's state; call it after changing it.
func (d *download) changed() {
	next := make(chan struct{})
	close(*d.wake.Swap(&next))
}

// changes returns a channel closed at d's next change of state. Load it before reading the state it waits for,
// so that a change between the read and the wait is not missed.
func (d *download) changes() <-chan struct{} { return *d.wake.Load() }

// sleep waits for ch or the end of ctx.
func sleep(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attach returns the in-flight download of dgst, starting one if none runs. The caller must release it.
func (ds *downloads) attach(ctx context.Context, r route) (*download, error) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if d, ok := ds.inflight[r.dgst]; ok {
		d.mu.Lock()
		d.refs++
		d.mu.Unlock()
		return d, nil
	}
	if limit := ds.maxSize; limit > 0 && ds.spooled >= limit {
		ds.metrics.spoolFull.Inc()
		return nil, fmt.Errorf("%w: %d bytes in use, budget %d (spoolMaxSize)", errSpoolFull, ds.spooled, limit)
	}
	f, err := os.CreateTemp(ds.dir, "blob-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Unlinked at once: the open file lives as long as its readers and leaves nothing behind after a crash.
	_ = os.Remove(f.Name())
	d := &download{ds: ds, dgst: r.dgst, file: f, refs: 2, readersDone: make(chan struct{})}
	d.size.Store(-1)
	wake := make(chan struct{})
	d.wake.Store(&wake)
	ds.inflight[r.dgst] = d
	// The download outlives the request that started it: its other readers and the store still want it.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), blobTimeout)
	ds.running.Go(func() {
		defer cancel()
		ds.run(dctx, d, r)
	})
	return d, nil
}

// size returns the size of dgst's in-flight download when the upstream announced it and it has not failed.
func (ds *downloads) size(dgst digest.Digest) (int64, bool) {
	ds.mu.Lock()
	d, ok := ds.inflight[dgst]
	ds.mu.Unlock()
	if !ok {
		return 0, false
	}
	if o := d.outcome.Load(); !d.started.Load() || (o != nil && o.err != nil) || d.size.Load() < 0 {
		return 0, false
	}
	return d.size.Load(), true
}

// run fetches the blob, spools and hashes it, and on a verified digest commits it to the content store. Readers get
// the last byte as soon as the digest verifies; the commit (which may be a slow upload, to S3) goes on after it.
// The download stays in the in-flight set until the commit is over, so that a request arriving meanwhile reads
// the verified spool and one arriving after it leaves the set finds the blob in the store (or, when the commit
// failed, starts a new download).
func (ds *downloads) run(ctx context.Context, d *download, r route) {
	err := ds.fetch(ctx, d, r)
	d.outcome.Store(&outcome{err: err})
	d.started.Store(true)
	d.changed()
	if err == nil {
		d.waitReaders(ctx)
		start := time.Now()
		_, perr := ds.store.Put(ctx, d.dgst, io.NewSectionReader(d.file, 0, d.written.Load()))
		ds.health.record(perr)
		if perr != nil {
			ds.log.Warn("could not store blob; it was served but not cached", "digest", d.dgst, "error", perr)
		} else {
			ds.log.Debug("blob stored", "digest", d.dgst, "bytes", d.written.Load(), "took", time.Since(start))
		}
	}
	if d.lease != nil {
		d.stopLease()
		d.lease.Release(ctx)
	}
	ds.mu.Lock()
	delete(ds.inflight, d.dgst)
	ds.mu.Unlock()
	d.release()
}

func (ds *downloads) fetch(ctx context.Context, d *download, r route) error {
	start := time.Now()
	body, size, err := ds.open(ctx, d, r)
	if err != nil {
		return err
	}
	defer body.Close()
	if size >= 0 {
		// Refused before a byte is spooled, so every reader still gets a clean 503.
		if err := ds.reserve(d, size); err != nil {
			return fmt.Errorf("blob %s (%d bytes): %w", d.dgst, size, err)
		}
	}
	d.size.Store(size)
	d.started.Store(true)
	d.changed()
	verifier := d.dgst.Verifier()
	w := &spoolWriter{d: d}
	// A large buffer: a quarter of the syscalls and reader wake-ups of io.Copy's 32 KiB on a fast upstream.
	n, err := io.CopyBuffer(io.MultiWriter(w, verifier), body, make([]byte, fetchBuffer))
	if err != nil {
		return fmt.Errorf("blob %s from %s: %w", d.dgst, r.upstream.Name, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s from %s: got %d bytes, want %d: %w", d.dgst, r.upstream.Name, n, size, errShortBlob)
	}
	if !verifier.Verified() {
		ds.metrics.mismatch.WithLabelValues(r.upstream.Name).Inc()
		ds.log.Error("upstream blob does not match its digest; not served, not stored", "upstream", r.upstream.Name,
			"repository", r.repo, "digest", d.dgst, "bytes", n)
		return fmt.Errorf("blob %s from %s: %w", d.dgst, r.upstream.Name, errBlobMismatch)
	}
	ds.log.Debug("blob fetched", "upstream", r.upstream.Name, "digest", d.dgst, "bytes", n, "took", time.Since(start))
	return nil
}

// open returns the blob's bytes and size (-1: unknown): from the shared content store when another replica
// fetched it while this one waited for its lease (fleetOnce), else from the upstream under a lease that is renewed
// until the download is committed (d.lease, released by run). Either way they are spooled and verified alike.
func (ds *downloads) open(ctx context.Context, d *download, r route) (io.ReadCloser, int64, error) {
	if ds.once != nil {
		lease := ds.once(ctx, "blob/"+d.dgst.String(), ds.leaseWait, func() bool {
			_, err := ds.store.Stat(ctx, d.dgst)
			return err == nil
		})
		if lease == nil {
			size, err := ds.store.Stat(ctx, d.dgst)
			if err == nil {
				var rc io.ReadCloser
				if rc, err = ds.store.Open(ctx, d.dgst, 0); err == nil {
					return rc, size, nil
				}
			}
			// Stored by another replica, yet the store cannot give it now (an S3 outage): the upstream still has
			// it, and what it sends is verified like any download.
			ds.log.Warn("content store read failed; fetching upstream", "digest", d.dgst, "error", err)
		}
		d.lease, d.stopLease = lease, keepLease(ctx, lease)
	}
	return r.upstream.Registry.Blob(ctx, r.repo, d.dgst)
}

var (
	errShortBlob    = errors.New("upstream blob shorter than announced")
	errBlobMismatch = errors.New("upstream blob does not match its digest")
)

// spoolWriter appends to the spool file and wakes readers.
type spoolWriter struct{ d *download }

func (w *spoolWriter) Write(b []byte) (int, error) {
	d := w.d
	// Bytes beyond the reservation (all of them when the size is unknown) are reserved as they come.
	written := d.written.Load() // only this writer changes it
	if more := written + int64(len(b)) - d.reservedBytes(); more > 0 {
		if err := d.ds.reserve(d, more); err != nil {
			return 0, err
		}
	}
	n, err := d.file.WriteAt(b, written)
	d.written.Add(int64(n))
	d.changed()
	return n, err
}

// wait blocks until the upstream answered; it returns the size (-1 if unknown) or the download's error.
func (d *download) wait(ctx context.Context) (int64, error) {
	for {
		ch := d.changes()
		if d.started.Load() {
			if o := d.outcome.Load(); o != nil && o.err != nil && d.written.Load() == 0 {
				return 0, o.err
			}
			return d.size.Load(), nil
		}
		if err := sleep(ctx, ch); err != nil {
			return 0, err
		}
	}
}

// verified blocks until the download is done and returns its size, or the download's error: a blob that did not
// verify is an error here even when it was spooled in full.
func (d *download) verified(ctx context.Context) (int64, error) {
	for {
		ch := d.changes()
		if o := d.outcome.Load(); o != nil {
			if o.err != nil {
				return 0, o.err
			}
			return d.written.Load(), nil
		}
		if err := sleep(ctx, ch); err != nil {
			return 0, err
		}
	}
}

// available blocks until the spool holds bytes at off that may be served and returns how many: the last byte is
// held back until the whole blob has verified, so a client never receives in full a blob whose digest is wrong.
// At the end of a verified blob it returns io.EOF; when the download failed, its error.
func (d *download) available(ctx context.Context, off int64) (int64, error) {
	for {
		ch := d.changes()
		o := d.outcome.Load() // before written: once the outcome is seen, written is final
		avail := d.written.Load()
		switch {
		case o != nil && o.err != nil:
			return 0, o.err
		case o == nil:
			avail-- // hold back
		}
		if off < avail {
			return avail - off, nil
		}
		if o != nil {
			return 0, io.EOF
		}
		if err := sleep(ctx, ch); err != nil {
			return 0, err
		}
	}
}

// readAt copies bytes from offset into b as they become available (see available).
func (d *download) readAt(ctx context.Context, b []byte, off int64) (int, error) {
	n, err := d.available(ctx, off)
	if err != nil {
		return 0, err
	}
	if int64(len(b)) > n {
		b = b[:n]
	}
	return d.file.ReadAt(b, off)
}

// sendChunk is the most a spool stream sends before it lets the other streams have a turn. A stream that yields
// goes to the back of the run queue, as does a follower's new request: with 200 streams each turn is paid 200 times
// before a new follower's first byte. Side by side in a herd of 200 (five runs each), 256 KiB turns gave the last
// follower its first byte after 43 to 100 ms (median 57) against 93 to 170 ms (median 101) with 1 MiB turns, at
// the same aggregate throughput.
const sendChunk = 256 << 10

// sendTo streams the spool from off to w as it arrives, limit bytes (-1: to the verified end), and returns how many
// it sent. It reads through a descriptor of the spool file of its own (a position of its own), so that w's
// ReadFrom can hand the bytes from the page cache to the socket with sendfile, without copying them through the
// process. ok is false when no such descriptor can be had (no
// /proc): nothing was sent, and the caller copies with readAt.
func (d *download) sendTo(ctx context.Context, w io.Writer, off, limit int64) (sent int64, ok bool, err error) {
	f, err := d.reopen()
	if err != nil {
		return 0, false, nil
	}
	defer f.Close()
	for limit != 0 {
		n, err := d.available(ctx, off)
		if err == io.EOF && limit < 0 {
			return sent, true, nil
		}
		if err != nil {
			return sent, true, err
		}
		n = min(n, sendChunk)
		if limit > 0 {
			n = min(n, limit)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return sent, true, err
		}
		c, err := io.Copy(w, io.LimitReader(f, n))
		sent, off = sent+c, off+c
		if limit > 0 {
			limit -= c
		}
		if err == nil && c < n {
			err = io.ErrUnexpectedEOF // the spool had those bytes
		}
		if err != nil {
			return sent, true, err
		}
		runtime.Gosched() // a turn for the other streams (see fairWriter)
	}
	return sent, true, nil
}

// reopen opens the (unlinked) spool file again, for a position of its own.
func (d *download) reopen() (*os.File, error) {
	raw, err := d.file.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd uintptr
	if err := raw.Control(func(f uintptr) { fd = f }); err != nil {
		return nil, err
	}
	return os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// release drops one reference; the spool file closes with the last.
// commitWait bounds how long a verified download's commit waits for its readers to finish.
const commitWait = 10 * time.Second

// waitReaders waits, at most ds.commitWait, until the readers d had are done: the commit (an upload to S3, a copy
// into the store) then does not take the CPU and disk its clients' streams are using. Clients that arrive later
// read the spool meanwhile, as they do during the commit.
func (d *download) waitReaders(ctx context.Context) {
	d.mu.Lock()
	ch := d.readersDone
	d.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(d.ds.commitWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (d *download) release() {
	d.mu.Lock()
	d.refs--
	last := d.refs == 0
	if d.refs == 1 && d.readersDone != nil {
		close(d.readersDone)
		d.readersDone = nil
	}
	d.mu.Unlock()
	if last {
		_ = d.file.Close()
		d.ds.unreserve(d)
	}
}

// reservedBytes is what d has reserved so far.
func (d *download) reservedBytes() int64 {
	d.ds.mu.Lock()
	defer d.ds.mu.Unlock()
	return d.reserved
}

// reader reads a download from an offset, up to a limit (-1: to the end).
type downloadReader struct {
	ctx   context.Context
	d     *download
	off   int64
	limit int64
}

func (r *downloadReader) Read(b []byte) (int, error) {
	if r.limit == 0 {
		return 0, io.EOF
	}
	if r.limit > 0 && int64(len(b)) > r.limit {
		b = b[:r.limit]
	}
	n, err := r.d.readAt(r.ctx, b, r.off)
	r.off += int64(n)
	if r.limit > 0 {
		r.limit -= int64(n)
	}
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}
