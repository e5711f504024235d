package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/upstream"
)

// blobEnv is a Proxy in front of a real upstream registry, with a filesystem content store.
type blobEnv struct {
	up    *registrytest.Registry
	p     *Proxy
	srv   *httptest.Server
	store *cache.Content
}

func newBlobEnv(t *testing.T, upOpts []registrytest.Option, opts ...Option) *blobEnv {
	t.Helper()
	up := registrytest.New(t, upOpts...)
	client, err := upstream.New(up.Host(), up.URL(), upstream.WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	driver, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	store, err := cache.NewContent(driver)
	if err != nil {
		t.Fatal(err)
	}
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	p, err := New([]*Upstream{{Name: up.Host(), Registry: client}}, "", store, kv,
		append([]Option{WithSpoolDir(t.TempDir()), WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		// Commits outlive the requests: let them end before the store's directory goes.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	return &blobEnv{up: up, p: p, srv: srv, store: store}
}

// layer pushes a one-layer image of size random bytes to repo:v1 and returns its layer's digest and size.
func (e *blobEnv) layer(t *testing.T, repo string, size int64) (digest.Digest, int64) {
	t.Helper()
	img := e.up.PushRandomImage(t, repo+":v1", 1, size)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	n, _ := layers[0].Size()
	return digest.Digest(d.String()), n
}

func (e *blobEnv) do(t *testing.T, method, path string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// inflight is how many downloads are running.
func (e *blobEnv) inflight() int {
	e.p.blobs.mu.Lock()
	defer e.p.blobs.mu.Unlock()
	return len(e.p.blobs.inflight)
}

// denyBlobs is an admitter whose blob gate admits nothing.
type denyBlobs struct{ allowAll }

func (denyBlobs) AllowBlob(context.Context, string, string, digest.Digest) (bool, error) {
	return false, nil
}

// TestHeadColdBlob: a HEAD of a blob the store lacks is answered by a HEAD upstream; it starts no download, so
// nothing outlives it in the spool or the store. The blob gate still comes first.
func TestHeadColdBlob(t *testing.T) {
	t.Run("cold blob", func(t *testing.T) {
		e := newBlobEnv(t, nil)
		dgst, size := e.layer(t, "acme/app", 64<<10)
		e.up.Hits().Reset()
		resp, _, err := e.do(t, http.MethodHead, "/v2/acme/app/blobs/"+dgst.String())
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Length") != strconv.FormatInt(size, 10) ||
			resp.Header.Get("Docker-Content-Digest") != dgst.String() {
			t.Errorf("HEAD: %d, Content-Length %q, digest %q; want 200, %d, %s", resp.StatusCode,
				resp.Header.Get("Content-Length"), resp.Header.Get("Docker-Content-Digest"), size, dgst)
		}
		time.Sleep(100 * time.Millisecond) // a download started in the background would have asked by now
		hits := e.up.Hits()
		if h, g := hits.Count(http.MethodHead, registrytest.KindBlob), hits.Count(http.MethodGet, registrytest.KindBlob); h != 1 || g != 0 {
			t.Errorf("upstream saw %d blob HEADs and %d blob GETs, want 1 and 0", h, g)
		}
		if n := e.inflight(); n != 0 {
			t.Errorf("%d downloads in flight after a HEAD", n)
		}
		if _, err := e.store.Stat(context.Background(), dgst); err == nil {
			t.Error("a HEAD put the blob in the store")
		}
	})
	t.Run("missing blob", func(t *testing.T) {
		e := newBlobEnv(t, nil)
		resp, _, err := e.do(t, http.MethodHead, "/v2/acme/app/blobs/"+digest.FromString("missing").String())
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD of a missing blob: %d, want 404", resp.StatusCode)
		}
		if g := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); g != 0 {
			t.Errorf("upstream saw %d blob GETs", g)
		}
	})
	t.Run("blob gate first", func(t *testing.T) {
		e := newBlobEnv(t, nil, WithAdmitter(denyBlobs{}))
		dgst, _ := e.layer(t, "acme/app", 1024)
		e.up.Hits().Reset()
		resp, _, err := e.do(t, http.MethodHead, "/v2/acme/app/blobs/"+dgst.String())
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("HEAD of a blob the gate refuses: %d, want 403", resp.StatusCode)
		}
		if n := e.up.Hits().Total(); n != 0 {
			t.Errorf("upstream saw %d requests for a refused blob", n)
		}
	})
	t.Run("stored blob", func(t *testing.T) {
		e := newBlobEnv(t, nil)
		dgst, size := e.layer(t, "acme/app", 1024)
		if resp, _, err := e.do(t, http.MethodGet, "/v2/acme/app/blobs/"+dgst.String()); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET: %v %v", resp, err)
		}
		e.up.Hits().Reset()
		resp, _, err := e.do(t, http.MethodHead, "/v2/acme/app/blobs/"+dgst.String())
		if err != nil || resp.StatusCode != 200 || resp.ContentLength != size {
			t.Fatalf("HEAD: %v %v", resp, err)
		}
		if n := e.up.Hits().Total(); n != 0 {
			t.Errorf("upstream saw %d requests for a stored blob", n)
		}
	})
}

// spooled is the spool bytes reserved now.
func (e *blobEnv) spooled() int64 {
	e.p.blobs.mu.Lock()
	defer e.p.blobs.mu.Unlock()
	return e.p.blobs.spooled
}

// waitSpoolEmpty waits for every spool file to close and fails if the budget is not all given back.
func (e *blobEnv) waitSpoolEmpty(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if e.spooled() == 0 && e.inflight() == 0 {
			return
		}
	}
	t.Fatalf("spool still holds %d bytes, %d downloads in flight", e.spooled(), e.inflight())
}

// blobMiddleware applies change to the upstream's GET responses for blobs whose path ends in one of the digests
// in *targets.
func blobMiddleware(targets *sync.Map, change func(w http.ResponseWriter, r *http.Request) http.ResponseWriter) registrytest.Option {
	return registrytest.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := targets.Load(path.Base(r.URL.Path)); ok && r.Method == http.MethodGet {
				w = change(w, r)
			}
			h.ServeHTTP(w, r)
		})
	})
}

// stallWriter sends the first 4 KiB of a body, then waits until release is closed (or the request ends).
type stallWriter struct {
	http.ResponseWriter
	ctx     context.Context
	release <-chan struct{}
	n       int
}

func (s *stallWriter) Write(b []byte) (int, error) {
	if s.n < 4096 && s.n+len(b) >= 4096 {
		k := 4096 - s.n
		if _, err := s.ResponseWriter.Write(b[:k]); err != nil {
			return 0, err
		}
		http.NewResponseController(s.ResponseWriter).Flush()
		select {
		case <-s.release:
		case <-s.ctx.Done():
			return k, s.ctx.Err()
		}
		n, err := s.ResponseWriter.Write(b[k:])
		s.n += k + n
		return k + n, err
	}
	n, err := s.ResponseWriter.Write(b)
	s.n += n
	return n, err
}

// lengthHider drops Content-Length, so the body goes chunked and the proxy cannot know the size up front.
type lengthHider struct{ http.ResponseWriter }

func (l lengthHider) WriteHeader(code int) {
	l.Header().Del("Content-Length")
	l.ResponseWriter.WriteHeader(code)
}

// TestSpoolBudget: in-flight downloads count against the spool budget; one that would go over it is refused with
// 503 and Retry-After (before a byte is spooled when the upstream announces the size, as it grows when not), and
// the budget comes back when the spool file closes.
func TestSpoolBudget(t *testing.T) {
	get := func(t *testing.T, e *blobEnv, repo string, d digest.Digest) (*http.Response, []byte, error) {
		t.Helper()
		return e.do(t, http.MethodGet, "/v2/"+repo+"/blobs/"+d.String())
	}
	wantBusy := func(t *testing.T, resp *http.Response, body []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(body), `"UNAVAILABLE"`) || !strings.Contains(string(body), "spool") {
			t.Fatalf("status %d, Retry-After %q, body %.200q; want 503 UNAVAILABLE naming the spool, with Retry-After",
				resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}

	t.Run("blob larger than the budget", func(t *testing.T) {
		e := newBlobEnv(t, nil, WithSpoolMaxSize(64<<10))
		big, _ := e.layer(t, "acme/big", 256<<10)
		small, _ := e.layer(t, "acme/small", 8<<10)
		resp, body, err := get(t, e, "acme/big", big)
		wantBusy(t, resp, body, err)
		if _, err := e.store.Stat(context.Background(), big); err == nil {
			t.Error("a refused blob was stored")
		}
		e.waitSpoolEmpty(t)
		if resp, body, err := get(t, e, "acme/small", small); err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != small {
			t.Fatalf("a blob within the budget: %v %v", resp, err)
		}
		e.waitSpoolEmpty(t)
	})

	t.Run("in-flight downloads share the budget", func(t *testing.T) {
		var targets sync.Map
		release := make(chan struct{})
		var once sync.Once
		releaseA := func() { once.Do(func() { close(release) }) }
		defer releaseA()
		e := newBlobEnv(t, []registrytest.Option{blobMiddleware(&targets, func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
			return &stallWriter{ResponseWriter: w, ctx: r.Context(), release: release}
		})})
		a, sizeA := e.layer(t, "acme/a", 32<<10)
		b, _ := e.layer(t, "acme/b", 32<<10)
		targets.Store(a.String(), true)
		e.p.blobs.maxSize = sizeA // a alone fills the budget
		var wg sync.WaitGroup
		var respA *http.Response
		var bodyA []byte
		var errA error
		wg.Go(func() { respA, bodyA, errA = get(t, e, "acme/a", a) })
		for deadline := time.Now().Add(5 * time.Second); e.spooled() != sizeA; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("a never reserved its %d bytes (%d reserved)", sizeA, e.spooled())
			}
		}
		e.up.Hits().Reset()
		resp, body, err := get(t, e, "acme/b", b)
		wantBusy(t, resp, body, err)
		if n := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); n != 0 {
			t.Errorf("a full spool still asked the upstream for %d blobs", n)
		}
		releaseA()
		wg.Wait()
		if errA != nil || respA.StatusCode != 200 || digest.FromBytes(bodyA) != a {
			t.Fatalf("a: %v %v", respA, errA)
		}
		e.waitSpoolEmpty(t)
		if resp, body, err := get(t, e, "acme/b", b); err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != b {
			t.Fatalf("b once a is done: %v %v", resp, err)
		}
	})

	t.Run("unknown size aborted as it grows", func(t *testing.T) {
		var targets sync.Map
		e := newBlobEnv(t, []registrytest.Option{blobMiddleware(&targets, func(w http.ResponseWriter, _ *http.Request) http.ResponseWriter {
			return lengthHider{w}
		})}, WithSpoolMaxSize(64<<10))
		big, _ := e.layer(t, "acme/big", 256<<10)
		targets.Store(big.String(), true)
		resp, body, err := get(t, e, "acme/big", big)
		if err == nil && resp.StatusCode == 200 && digest.FromBytes(body) == big {
			t.Fatal("a blob over the budget was served in full")
		}
		if _, err := e.store.Stat(context.Background(), big); err == nil {
			t.Error("an aborted blob was stored")
		}
		e.waitSpoolEmpty(t)
		if n := testutil.ToFloat64(e.p.metrics.spoolFull); n < 1 {
			t.Errorf("portcullis_spool_full_total = %v", n)
		}
	})
}
