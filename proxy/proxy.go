package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"
)

// Registry is the upstream client the proxy needs: the read half of the distribution API.
// *upstream.Client implements it.
type Registry interface {
	Resolve(ctx context.Context, repo, ref string, accept []string) (ocispec.Descriptor, error)
	Manifest(ctx context.Context, repo, ref string, accept []string) ([]byte, string, digest.Digest, error)
	Blob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, int64, error)
	// StatBlob is a HEAD of a blob: its size (-1 if the upstream does not say), without its content.
	StatBlob(ctx context.Context, repo string, dgst digest.Digest) (int64, error)
	Tags(ctx context.Context, repo string, n int, last string) ([]string, string, error)
	Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType string) ([]byte, bool, error)
}

// Upstream is one configured upstream registry.
type Upstream struct {
	// Name is the registry host as clients name it (what containerd sends in ns=), e.g. docker.io.
	Name string
	// Registry talks to it.
	Registry Registry
}

// Store is the content store: blobs and manifests by digest. *cache.Content implements it.
type Store interface {
	Stat(ctx context.Context, dgst digest.Digest) (int64, error)
	Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error)
	Get(ctx context.Context, dgst digest.Digest, max int64) ([]byte, error)
	Put(ctx context.Context, dgst digest.Digest, r io.Reader) (int64, error)
}

// KV is the shared small-state store (tag resolutions). *cache.Memory and *cache.Redis implement it.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

// DefaultSpoolMaxSize is the spool budget WithSpoolMaxSize defaults to: 8 GiB.
const DefaultSpoolMaxSize = 8 << 30

// Proxy is the pull-through registry handler.
type Proxy struct {
	upstreams       map[string]*Upstream
	defaultUpstream *Upstream
	store           Store
	kv              KV
	admitter        Admitter
	log             *slog.Logger
	metrics         *Metrics
	now             func() time.Time

	tagTTL       time.Duration
	staleIfError bool
	maxStale     time.Duration
	maxManifest  int64
	spoolDir     string
	spoolMaxSize int64

	scanCreds ScannerAccess

	tags      singleflight.Group
	manifests singleflight.Group
	blobs     *downloads
	// storeHealth is the outcome of the last write to the content store (Healthy).
	storeHealth storeHealth
	recent      *manifestCache
	held        heldSet // the manifests each repository was seen to hold (held.go)

	manifestCacheSize int64
	// leaseWait and blobLeaseWait bound waits for another replica's work (fleet.go); fields so tests can shorten them.
	leaseWait, blobLeaseWait time.Duration
}

// Option configures a Proxy.
type Option func(*Proxy) error

// WithAdmitter sets the admission gate. Default: AllowAll, which serves every image.
func WithAdmitter(a Admitter) Option {
	return func(p *Proxy) error { p.admitter = a; return nil }
}

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(p *Proxy) error { p.log = l; return nil }
}

// WithMetrics sets where metrics are counted. Default: a private, unexported set.
func WithMetrics(m *Metrics) Option {
	return func(p *Proxy) error { p.metrics = m; return nil }
}

// WithTagTTL sets how long a tag's resolution to a digest is trusted before the upstream is asked again. Default 30s.
func WithTagTTL(d time.Duration) Option {
	return func(p *Proxy) error {
		if d <= 0 {
			return errors.New("proxy: tag TTL must be positive")
		}
		p.tagTTL = d
		return nil
	}
}

// WithStaleIfError says whether a tag resolves to its last known digest, for at most maxStale, when the upstream
// cannot be reached. Default: on, 24h.
func WithStaleIfError(on bool, maxStale time.Duration) Option {
	return func(p *Proxy) error {
		if on && maxStale <= 0 {
			return errors.New("proxy: maxStale must be positive when stale-if-error is on")
		}
		p.staleIfError, p.maxStale = on, maxStale
		return nil
	}
}

// WithMaxManifestSize caps manifest bodies. Default 4 MiB.
func WithMaxManifestSize(n int64) Option {
	return func(p *Proxy) error {
		if n <= 0 {
			return errors.New("proxy: max manifest size must be positive")
		}
		p.maxManifest = n
		return nil
	}
}

// WithSpoolDir sets where in-flight blob downloads are spooled (unlinked files). Default: os.TempDir().
func WithSpoolDir(dir string) Option {
	return func(p *Proxy) error { p.spoolDir = dir; return nil }
}

// WithSpoolMaxSize bounds the bytes of in-flight blob downloads in the spool: a download that would go over it is
// not started (or, when the upstream does not announce its size, is aborted as it grows) and its clients get 503
// UNAVAILABLE with Retry-After; the bytes count until the spool file closes. A blob larger than n can then never
// be pulled cold. 0 means no budget. Default 8 GiB.
func WithSpoolMaxSize(n int64) Option {
	return func(p *Proxy) error {
		if n < 0 {
			return errors.New("proxy: spool max size must not be negative")
		}
		p.spoolMaxSize = n
		return nil
	}
}

// WithManifestCacheSize sets the memory, in manifest bytes, kept for the most recently served manifests, so that a
// warm manifest request does not read the content store; 0 turns it off. Default 16 MiB (DefaultManifestCacheSize).
func WithManifestCacheSize(n int64) Option {
	return func(p *Proxy) error {
		if n < 0 {
			return errors.New("proxy: manifest cache size must not be negative")
		}
		p.manifestCacheSize = n
		return nil
	}
}

// WithScanCredentials lets a scanner holding a credential minted by c pull the one image it was handed, although
// that image is not admitted yet (scan-and-wait). Default: none.
func WithScanCredentials(c ScannerAccess) Option {
	return func(p *Proxy) error { p.scanCreds = c; return nil }
}

// WithClock sets the clock. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(p *Proxy) error { p.now = now; return nil }
}

// New builds a Proxy over upstreams (the first is the default unless defaultName names another), a content store and
// a shared KV.
func New(upstreams []*Upstream, defaultName string, store Store, kv KV, opts ...Option) (*Proxy, error) {
	if len(upstreams) == 0 {
		return nil, errors.New("proxy: at least one upstream is required")
	}
	if store == nil || kv == nil {
		return nil, errors.New("proxy: a content store and a KV are required")
	}
	p := &Proxy{
		upstreams:    map[string]*Upstream{},
		store:        store,
		kv:           kv,
		admitter:     allowAll{},
		log:          slog.Default(),
		now:          time.Now,
		tagTTL:       30 * time.Second,
		staleIfError: true,
		maxStale:     24 * time.Hour,
		maxManifest:  4 << 20,
		spoolDir:     os.TempDir(),
		spoolMaxSize: DefaultSpoolMaxSize,

		manifestCacheSize: DefaultManifestCacheSize,
		leaseWait:         leaseWait,
		blobLeaseWait:     blobLeaseWait,
	}
	for _, u := range upstreams {
		key := strings.ToLower(u.Name)
		if _, dup := p.upstreams[key]; dup {
			return nil, fmt.Errorf("proxy: upstream %q configured twice", u.Name)
		}
		if u.Registry == nil {
			return nil, fmt.Errorf("proxy: upstream %q has no registry client", u.Name)
		}
		p.upstreams[key] = u
	}
	p.defaultUpstream = upstreams[0]
	if defaultName != "" {
		if p.defaultUpstream = p.upstream(defaultName); p.defaultUpstream == nil {
			return nil, fmt.Errorf("proxy: default upstream %q is not configured", defaultName)
		}
	}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	if p.metrics == nil {
		p.metrics = NewMetrics(nil)
	}
	p.recent = newManifestCache(p.manifestCacheSize)
	p.blobs = newDownloads(p.store, p.spoolDir, p.spoolMaxSize, p.log, p.metrics)
	p.blobs.health = &p.storeHealth
	p.blobs.once, p.blobs.leaseWait = p.fleetOnce, p.blobLeaseWait
	return p, nil
}

// Wait blocks until the blob downloads in flight are over, their commits to the content store included (a commit
// goes on after the clients have their last byte), or until ctx ends. Call it after the servers stopped, before the
// content store goes away, so that no half-done upload is cut off and nothing writes to the store afterwards.
func (p *Proxy) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		p.blobs.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("blob downloads still running: %w", context.Cause(ctx))
	}
}
