package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
)

func TestTokenAuthUpstream(t *testing.T) {
	e := newEnv(t,
		withUpstream(registrytest.WithBearerAuth("puller", "s3cret")),
		withClient(upstream.WithBasicAuth("puller", "s3cret")))
	img := e.up.PushRandomImage(t, "private/app:v1", 2, 4096)
	got, err := crane.Pull(e.ref("private/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatalf("pull through proxy from a token-auth upstream: %v", err)
	}
	sameImage(t, img, got)
	if n := e.up.TokensIssued(); n < 1 {
		t.Errorf("token server issued %d tokens", n)
	}
	// The client never needed credentials for the proxy, and the proxy never leaked its own to the client.
	if _, err := crane.Pull(e.up.Ref("private/app:v1"), crane.Insecure, crane.WithAuth(authn.Anonymous)); err == nil {
		t.Error("the upstream itself should refuse anonymous pulls (test setup)")
	}
}

func TestTagResolvedOncePerTTL(t *testing.T) {
	e := newEnv(t, withProxy(proxy.WithTagTTL(time.Hour)))
	e.up.PushRandomImage(t, "ttl/app:v1", 1, 100)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/ttl/app/manifests/v1", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	hits := e.up.Hits()
	if head, get := hits.Count(http.MethodHead, registrytest.KindManifest), hits.Count(http.MethodGet, registrytest.KindManifest); head != 1 || get != 1 {
		t.Errorf("50 requests for one tag: %d upstream HEADs and %d GETs, want 1 and 1 (resolve by HEAD, fetch by digest)", head, get)
	}
}

func TestConcurrentColdPullsShareOneUpstreamFetch(t *testing.T) {
	// The upstream is slowed down so that all 100 requests arrive while the one download is in flight.
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
				time.Sleep(200 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	})))
	img := e.up.PushRandomImage(t, "hot/app:v1", 1, 4<<20)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	want, _ := io.ReadAll(rc)
	e.up.Hits().Reset()

	const clients = 100
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(e.srv.URL + "/v2/hot/app/blobs/" + ld.String())
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, want) {
				t.Errorf("status %d, %d bytes, err %v", resp.StatusCode, len(got), err)
			}
		}()
	}
	wg.Wait()
	if n := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); n != 1 {
		t.Errorf("%d concurrent cold pulls made %d upstream blob GETs, want exactly 1", clients, n)
	}
	if _, err := e.content.Stat(context.Background(), digest.Digest(ld.String())); err != nil {
		t.Errorf("blob not in the store after the pull: %v", err)
	}
}

func TestUpstreamDownServesStale(t *testing.T) {
	e := newEnv(t, withProxy(proxy.WithTagTTL(50*time.Millisecond), proxy.WithStaleIfError(true, time.Hour)),
		withClient(upstream.WithRetries(0, time.Millisecond)))
	img := e.up.PushRandomImage(t, "down/app:v1", 2, 1000)
	if _, err := crane.Pull(e.ref("down/app:v1"), pullOpts()...); err != nil {
		t.Fatal(err)
	}
	got, err := crane.Pull(e.ref("down/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, img, got) // warms every blob
	e.up.Close()
	time.Sleep(100 * time.Millisecond) // past the TTL: the tag must be asked upstream again, which is down

	got, err = crane.Pull(e.ref("down/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatalf("pull with the upstream down: %v", err)
	}
	sameImage(t, img, got)
	resp, _ := e.get(t, http.MethodGet, "/v2/down/app/manifests/v1")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Warning"), "unavailable") {
		t.Errorf("stale answer: %d, Warning %q", resp.StatusCode, resp.Header.Get("Warning"))
	}
	// What was never seen cannot be served: a clear 503, not a hang.
	resp, body := e.get(t, http.MethodGet, "/v2/down/app/manifests/never-seen")
	if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("UNAVAILABLE")) {
		t.Errorf("unknown tag with upstream down: %d %s", resp.StatusCode, body)
	}
}

func TestStaleIfErrorOff(t *testing.T) {
	e := newEnv(t, withProxy(proxy.WithTagTTL(20*time.Millisecond), proxy.WithStaleIfError(false, 0)),
		withClient(upstream.WithRetries(0, time.Millisecond)))
	e.up.PushRandomImage(t, "strict/app:v1", 1, 100)
	if resp, body := e.get(t, http.MethodGet, "/v2/strict/app/manifests/v1"); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	e.up.Close()
	time.Sleep(50 * time.Millisecond)
	if resp, _ := e.get(t, http.MethodGet, "/v2/strict/app/manifests/v1"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("with stale-if-error off a tag past its TTL must not resolve: %d", resp.StatusCode)
	}
}

func TestCorruptedBlobIsNeverServedNorStored(t *testing.T) {
	var target string
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if target != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, target) {
				rec := &flipWriter{ResponseWriter: w}
				h.ServeHTTP(rec, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})))
	img := e.up.PushRandomImage(t, "bad/app:v1", 1, 256<<10)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	target = ld.String()

	for i := range 2 { // twice: the first failure must not have left anything behind
		resp, err := http.Get(e.srv.URL + "/v2/bad/app/blobs/" + ld.String())
		if err != nil {
			continue // connection broken before headers: the client got an error, fine
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil && resp.StatusCode == 200 && int64(len(body)) == 256<<10 {
			t.Fatalf("attempt %d: corrupted blob served in full", i)
		}
	}
	if _, err := e.content.Stat(context.Background(), digest.Digest(ld.String())); err == nil {
		t.Error("corrupted blob was stored")
	}
	if n := testutil.ToFloat64(e.metrics.Mismatches()); n < 1 {
		t.Errorf("mismatch counter %v", n)
	}
	// A real client sees an error.
	if _, err := crane.Pull(e.ref("bad/app:v1"), pullOpts()...); err == nil {
		// crane.Pull is lazy: reading the layer is where it fails.
		got, _ := crane.Pull(e.ref("bad/app:v1"), pullOpts()...)
		ls, _ := got.Layers()
		if r, err := ls[0].Compressed(); err == nil {
			if _, err := io.ReadAll(r); err == nil {
				t.Error("client read a corrupted layer without error")
			}
		}
	}
}

// TestRangeOfCorruptedColdBlobLeaksNothing: a Range request for a blob not yet stored gets no byte that has not
// been verified against the digest, before, across or after the corrupted byte; a good blob's ranges still work
// while cold.
func TestRangeOfCorruptedColdBlobLeaksNothing(t *testing.T) {
	var target atomic.Pointer[string]
	target.Store(new(string))
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if t := *target.Load(); t != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, t) {
				// The upstream stalls after 4 KiB: a proxy that served ranges from the unverified spool would
				// send them now, long before the digest could be checked.
				h.ServeHTTP(&flipWriter{ResponseWriter: w, stallAt: 4096, stall: 300 * time.Millisecond}, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})))
	img := e.up.PushRandomImage(t, "bad/app:v1", 1, 256<<10)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	good := e.up.PushRandomImage(t, "good/app:v1", 1, 256<<10)
	glayers, _ := good.Layers()
	gd, _ := glayers[0].Digest()
	rc, _ := glayers[0].Compressed()
	gfull, _ := io.ReadAll(rc)
	bad := ld.String()
	target.Store(&bad)

	for _, rng := range []string{"bytes=0-99", "bytes=990-1010", "bytes=2000-2099", "bytes=-100", "bytes=100-"} {
		t.Run("corrupted "+rng, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/bad/app/blobs/"+ld.String(), nil)
			req.Header.Set("Range", rng)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return // connection broken before headers: no byte served
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusPartialContent || resp.StatusCode == http.StatusOK {
				t.Fatalf("status %d with %d bytes of an unverified blob", resp.StatusCode, len(body))
			}
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "does not match its digest") {
				t.Errorf("status %d %s, want 502 naming the digest mismatch", resp.StatusCode, body)
			}
		})
	}
	if _, err := e.content.Stat(context.Background(), digest.Digest(ld.String())); err == nil {
		t.Error("corrupted blob was stored")
	}
	t.Run("good blob, cold", func(t *testing.T) {
		resp, body := e.get(t, http.MethodGet, "/v2/good/app/blobs/"+gd.String(), "Range", "bytes=990-1010")
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, gfull[990:1011]) {
			t.Errorf("status %d, %d bytes; want 206 with bytes 990-1010", resp.StatusCode, len(body))
		}
	})
}

// flipWriter corrupts one byte in the middle of a body. With stall set, it sends the first stallAt bytes, then
// pauses for stall before the rest, as a slow upstream would.
type flipWriter struct {
	http.ResponseWriter
	n       int
	stallAt int
	stall   time.Duration
}

func (f *flipWriter) Write(b []byte) (int, error) {
	c := append([]byte(nil), b...)
	if f.n <= 1000 && f.n+len(c) > 1000 {
		c[1000-f.n] ^= 0xff
	}
	if f.stall > 0 && f.n <= f.stallAt && f.n+len(c) > f.stallAt {
		k := f.stallAt - f.n
		if _, err := f.ResponseWriter.Write(c[:k]); err != nil {
			return 0, err
		}
		http.NewResponseController(f.ResponseWriter).Flush()
		time.Sleep(f.stall)
		n, err := f.ResponseWriter.Write(c[k:])
		f.n += k + n
		return k + n, err
	}
	f.n += len(c)
	return f.ResponseWriter.Write(c)
}

// TestBlobRedirects: an upstream that redirects blob GETs to an object store on its own kind of address (here
// loopback, like the registry) is followed, and a whole image pulls; one that redirects to the cloud metadata
// address is refused before any connection, with a clear 502.
func TestBlobRedirects(t *testing.T) {
	var store atomic.Pointer[string] // where blob GETs are sent; "" = not redirected
	store.Store(new(string))
	var regURL atomic.Pointer[string]
	var storeHits atomic.Int64
	objects := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		storeHits.Add(1)
		resp, err := http.Get(*regURL.Load() + r.URL.Path + "?direct=1")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer objects.Close()
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if to := *store.Load(); to != "" && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && r.URL.Query().Get("direct") == "" {
				http.Redirect(w, r, to+r.URL.Path, http.StatusTemporaryRedirect)
				return
			}
			h.ServeHTTP(w, r)
		})
	})), withClient(upstream.WithAllowPrivateAddresses(false)))
	u := e.up.URL().String()
	regURL.Store(&u)
	img := e.up.PushRandomImage(t, "redir/app:v1", 2, 4096)
	meta := e.up.PushRandomImage(t, "redir/meta:v1", 1, 4096)

	t.Run("object store on loopback", func(t *testing.T) {
		to := objects.URL
		store.Store(&to)
		got, err := crane.Pull(e.ref("redir/app:v1"), pullOpts()...)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := got.Layers()
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
		}
		want, _ := img.Digest()
		if d, _ := got.Digest(); d != want || storeHits.Load() == 0 {
			t.Errorf("digest %s (want %s), object store hits %d", d, want, storeHits.Load())
		}
	})
	t.Run("metadata address", func(t *testing.T) {
		to := "http://169.254.169.254"
		store.Store(&to)
		ls, _ := meta.Layers()
		ld, _ := ls[0].Digest()
		resp, body := e.get(t, http.MethodGet, "/v2/redir/meta/blobs/"+ld.String())
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "169.254.169.254") ||
			!strings.Contains(string(body), "link-local") {
			t.Errorf("status %d %s; want 502 naming the refused link-local address", resp.StatusCode, body)
		}
		if _, err := e.content.Stat(context.Background(), digest.Digest(ld.String())); err == nil {
			t.Error("blob stored")
		}
	})
}

// TestBigBlobBoundedMemory: a cold 32 MiB blob streams through the proxy (to the client, the spool and the store)
// without the proxy's heap growing with it.
func TestBigBlobBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 32 MiB")
	}
	e := newEnv(t, withUpstream(registrytest.WithGGCR())) // Distribution's in-memory driver takes seconds to take 32 MiB
	const size = 32 << 20
	// A static (uncompressed) layer: cheap to make and push, so the test measures the proxy, not gzip.
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(data, types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	e.up.PushImage(t, "big/app:v1", img)
	data = nil
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	lsize, _ := layers[0].Size() // compressed: a little over size
	runtime.GC()
	var before, peak runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // sample the heap while the blob streams
		defer close(done)
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.HeapInuse {
				peak = m
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	resp, err := http.Get(e.srv.URL + "/v2/big/app/blobs/" + ld.String())
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	close(stop)
	<-done
	if err != nil || n != lsize || "sha256:"+hex.EncodeToString(h.Sum(nil)) != ld.String() {
		t.Fatalf("got %d bytes, err %v", n, err)
	}
	// The in-process upstream (Distribution's in-memory driver) and the test share this heap; what matters is
	// that the proxy did not hold the blob: growth stays far below its size.
	grew := int64(peak.HeapInuse) - int64(before.HeapInuse)
	t.Logf("heap growth while streaming %d MiB: %d KiB", size>>20, grew>>10)
	if grew > 12<<20 {
		t.Errorf("heap grew by %d MiB while streaming a %d MiB blob", grew>>20, size>>20)
	}
}
