package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/proxy/upstream"
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
	t.Cleanup(srv.Close)
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
type denyBlobs struct{ AllowAll }

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
