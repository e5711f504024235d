package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// linkPaging adds the Link header ggcr's registry leaves out: when a page is full, point at the next.
func linkPaging(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := r.URL.Query().Get("n")
		if !strings.HasSuffix(r.URL.Path, "/tags/list") || n == "" {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var list struct {
			Tags []string `json:"tags"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &list)
		if fmt.Sprint(len(list.Tags)) == n {
			q := url.Values{"n": {n}, "last": {list.Tags[len(list.Tags)-1]}}
			w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

func TestAnonymousPull(t *testing.T) {
	reg := newTestRegistry(t, true, linkPaging)
	img := reg.pushImage(t, "library/alpine", "3.20", 2048)
	dgst := digest.Digest(mustDigest(t, img).String())
	raw := rawManifest(t, img)
	mt, _ := img.MediaType()
	c := newClient(t, reg.url(t))
	ctx := context.Background()

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if c.Name() != "test" {
		t.Errorf("Name() = %q", c.Name())
	}

	want := ocispec.Descriptor{MediaType: string(mt), Digest: dgst, Size: int64(len(raw))}
	for _, ref := range []string{"3.20", dgst.String()} {
		t.Run("resolve "+ref, func(t *testing.T) {
			got, err := c.Resolve(ctx, "library/alpine", ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("descriptor (-want +got):\n%s", diff)
			}
		})
		t.Run("manifest "+ref, func(t *testing.T) {
			body, gotMT, gotD, err := c.Manifest(ctx, "library/alpine", ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, raw) || gotMT != string(mt) || gotD != dgst {
				t.Errorf("got %d bytes, %q, %s; want %d bytes, %q, %s", len(body), gotMT, gotD, len(raw), mt, dgst)
			}
		})
	}

	t.Run("blob", func(t *testing.T) {
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		ld, _ := layers[0].Digest()
		rc, size, err := c.Blob(ctx, "library/alpine", digest.Digest(ld.String()))
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(b); got.String() != ld.String() || size != int64(len(b)) {
			t.Errorf("blob digest %s size %d (read %d), want %s", got, size, len(b), ld)
		}
	})

	t.Run("tags paginated", func(t *testing.T) {
		// An odd count: ggcr's registry mishandles a last past the end, so the final page must be short.
		for _, tag := range []string{"a", "b", "c", "d"} {
			reg.write(t, "library/alpine:"+tag, img)
		}
		var pages [][]string
		last := ""
		for i := 0; i < 10; i++ {
			tags, next, err := c.Tags(ctx, "library/alpine", 2, last)
			if err != nil {
				t.Fatal(err)
			}
			pages = append(pages, tags)
			if next == "" {
				break
			}
			last = next
		}
		want := [][]string{{"3.20", "a"}, {"b", "c"}, {"d"}}
		if diff := cmp.Diff(want, pages); diff != "" {
			t.Errorf("pages (-want +got):\n%s", diff)
		}
		all, next, err := c.Tags(ctx, "library/alpine", 0, "")
		if err != nil || next != "" || len(all) != 5 {
			t.Errorf("unpaged: %v, next %q, err %v", all, next, err)
		}
	})

	t.Run("referrers", func(t *testing.T) {
		subject := v1.Descriptor{MediaType: mt, Digest: mustDigest(t, img), Size: int64(len(raw))}
		for _, at := range []string{"application/vnd.example.sig", "application/vnd.example.sbom"} {
			a, err := random.Image(64, 1)
			if err != nil {
				t.Fatal(err)
			}
			a = mutate.ConfigMediaType(mutate.MediaType(a, types.OCIManifestSchema1), types.MediaType(at))
			a = mutate.Subject(a, subject).(v1.Image)
			reg.write(t, "library/alpine:"+strings.TrimPrefix(at, "application/vnd.example."), a)
		}
		for _, tc := range []struct {
			name, artifactType string
			want               []string
		}{
			{"all", "", []string{"application/vnd.example.sbom", "application/vnd.example.sig"}},
			{"filtered", "application/vnd.example.sig", []string{"application/vnd.example.sig"}},
			{"none match", "application/vnd.example.other", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b, ok, err := c.Referrers(ctx, "library/alpine", dgst, tc.artifactType)
				if err != nil || !ok {
					t.Fatalf("supported %v, err %v", ok, err)
				}
				if supported, known := c.ReferrersAPI(); !supported || !known {
					t.Errorf("the client says supported %v, known %v; want known supported", supported, known)
				}
				var idx ocispec.Index
				if err := json.Unmarshal(b, &idx); err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, m := range idx.Manifests {
					got = append(got, m.ArtifactType)
				}
				if idx.MediaType != ocispec.MediaTypeImageIndex || idx.Manifests == nil {
					t.Errorf("index mediaType %q, manifests %v", idx.MediaType, idx.Manifests)
				}
				if diff := cmp.Diff(tc.want, got, sortStrings); diff != "" {
					t.Errorf("artifact types (-want +got):\n%s", diff)
				}
			})
		}
	})
}

var sortStrings = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestReferrersUnsupported(t *testing.T) {
	// Without referrers support ggcr's registry answers 404; a registry in front may say 400/405 or
	// serve a 200 that is not an index.
	for _, tc := range []struct {
		name string
		mw   middleware
	}{
		{"404", nil},
		{"405", statusFor("/referrers/", http.StatusMethodNotAllowed, "")},
		{"400", statusFor("/referrers/", http.StatusBadRequest, `{"errors":[{"code":"UNSUPPORTED"}]}`)},
		{"200 html", statusFor("/referrers/", http.StatusOK, "<html>hello</html>")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mws []middleware
			if tc.mw != nil {
				mws = append(mws, tc.mw)
			}
			reg := newTestRegistry(t, false, mws...)
			img := reg.pushImage(t, "acme/app", "v1", 256)
			c := newClient(t, reg.url(t))
			if _, known := c.ReferrersAPI(); known {
				t.Error("the client knows about the referrers API before asking")
			}
			b, ok, err := c.Referrers(context.Background(), "acme/app", digest.Digest(mustDigest(t, img).String()), "")
			if err != nil || ok || b != nil {
				t.Errorf("got %q, supported %v, err %v; want unsupported", b, ok, err)
			}
			if supported, known := c.ReferrersAPI(); supported || !known {
				t.Errorf("after the answer the client says supported %v, known %v; want known unsupported", supported, known)
			}
		})
	}
}

// statusFor answers requests whose path contains sub with a fixed status and body.
func statusFor(sub string, status int, body string) middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, sub) {
				next.ServeHTTP(w, r)
				return
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		})
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	corrupt := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			b := bytes.Replace(rec.Body.Bytes(), []byte(`"schemaVersion":2`), []byte(`"schemaVersion":3`), 1)
			for k, v := range rec.Header() {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
		})
	}
	reg := newTestRegistry(t, true)
	img := reg.pushImage(t, "acme/app", "v1", 256)
	dgst := mustDigest(t, img).String()
	bad := newTestRegistry(t, true, corrupt, statusFor("/blobs/", http.StatusServiceUnavailable, `{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}`))
	bad.write(t, "acme/app:v1", img)

	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL, _ := url.Parse(refused.URL)
	refused.Close()

	for _, tc := range []struct {
		name     string
		client   *Client
		call     func(c *Client) error
		want     error
		wantCode string
	}{
		{"manifest unknown", newClient(t, reg.url(t)), func(c *Client) error {
			_, _, _, err := c.Manifest(ctx, "acme/app", "nope", nil)
			return err
		}, ErrNotFound, "MANIFEST_UNKNOWN"},
		{"name unknown", newClient(t, reg.url(t)), func(c *Client) error {
			_, _, _, err := c.Manifest(ctx, "acme/other", "v1", nil)
			return err
		}, ErrNotFound, "NAME_UNKNOWN"},
		{"resolve unknown (HEAD, no body)", newClient(t, reg.url(t)), func(c *Client) error {
			_, err := c.Resolve(ctx, "acme/app", "nope", nil)
			return err
		}, ErrNotFound, ""},
		{"blob unknown", newClient(t, reg.url(t)), func(c *Client) error {
			_, _, err := c.Blob(ctx, "acme/app", digest.FromString("nothing"))
			return err
		}, ErrNotFound, "BLOB_UNKNOWN"},
		{"manifest too large", newClient(t, reg.url(t), WithMaxManifestSize(100)), func(c *Client) error {
			_, _, _, err := c.Manifest(ctx, "acme/app", "v1", nil)
			return err
		}, ErrTooLarge, ""},
		{"digest mismatch by digest", newClient(t, bad.url(t)), func(c *Client) error {
			_, _, _, err := c.Manifest(ctx, "acme/app", dgst, nil)
			return err
		}, ErrDigestMismatch, ""},
		{"digest mismatch by tag (Docker-Content-Digest)", newClient(t, bad.url(t)), func(c *Client) error {
			_, _, _, err := c.Manifest(ctx, "acme/app", "v1", nil)
			return err
		}, ErrDigestMismatch, ""},
		{"retries exhausted", newClient(t, bad.url(t)), func(c *Client) error {
			_, _, err := c.Blob(ctx, "acme/app", digest.FromString("x"))
			return err
		}, ErrUnavailable, "UNAVAILABLE"},
		{"connection refused", newClient(t, refusedURL), func(c *Client) error {
			_, _, _, err := c.Manifest(ctx, "acme/app", "v1", nil)
			return err
		}, ErrUnavailable, ""},
		{"connection refused (blob)", newClient(t, refusedURL), func(c *Client) error {
			_, _, err := c.Blob(ctx, "acme/app", digest.FromString("x"))
			return err
		}, ErrUnavailable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.client)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ue *Error
			if tc.wantCode != "" && (!errors.As(err, &ue) || ue.Code != tc.wantCode) {
				t.Errorf("err = %#v, want code %s", err, tc.wantCode)
			}
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	c := newClient(t, &url.URL{Scheme: "http", Host: "127.0.0.1:1"})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"traversal repo", func() error { _, _, _, err := c.Manifest(ctx, "../etc", "v1", nil); return err }},
		{"upper-case repo", func() error { _, err := c.Resolve(ctx, "Library/alpine", "v1", nil); return err }},
		{"bad tag", func() error { _, _, _, err := c.Manifest(ctx, "a/b", "v1/../x", nil); return err }},
		{"bad digest", func() error { _, _, _, err := c.Manifest(ctx, "a/b", "sha256:zz", nil); return err }},
		{"bad blob digest", func() error { _, _, err := c.Blob(ctx, "a/b", "sha256:zz"); return err }},
		{"bad referrers digest", func() error { _, _, err := c.Referrers(ctx, "a/b", "md5:x", ""); return err }},
		{"bad tags repo", func() error { _, _, err := c.Tags(ctx, "a//b", 0, ""); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || classified(err) {
				t.Errorf("err = %v, want a plain argument error", err)
			}
		})
	}
}

// TestKnownRepos: remembering the repository names that passed never lets a bad one through, and stays bounded.
func TestKnownRepos(t *testing.T) {
	c := newClient(t, &url.URL{Scheme: "http", Host: "127.0.0.1:1"})
	for i := range 3 * maxKnownRepos {
		if err := c.checkRepo(fmt.Sprintf("team/app%d", i)); err != nil {
			t.Fatal(err)
		}
		if i%maxKnownRepos == 7 {
			for _, bad := range []string{"../etc", "Team/app", "a//b", ""} {
				if c.checkRepo(bad) == nil {
					t.Fatalf("%q passed", bad)
				}
			}
		}
	}
	if n := len(c.repos); n > maxKnownRepos {
		t.Errorf("%d names remembered, want at most %d", n, maxKnownRepos)
	}
}

func TestNewOptions(t *testing.T) {
	u := &url.URL{Scheme: "https", Host: "registry.example"}
	for _, tc := range []struct {
		name    string
		name_   string
		u       *url.URL
		opts    []Option
		wantErr bool
	}{
		{"defaults", "x", u, nil, false},
		{"empty name", "", u, nil, true},
		{"nil endpoint", "x", nil, nil, true},
		{"ftp", "x", &url.URL{Scheme: "ftp", Host: "h"}, nil, true},
		{"userinfo", "x", &url.URL{Scheme: "https", Host: "h", User: url.UserPassword("a", "b")}, nil, true},
		{"conflict", "x", u, []Option{WithTransport(http.DefaultTransport), WithTLSConfig(nil)}, true},
		{"conflict ok tls", "x", u, []Option{WithTransport(http.DefaultTransport), WithTLSConfig(tlsConfig())}, true},
		{"negative retries", "x", u, []Option{WithRetries(-1, time.Second)}, true},
		{"zero timeout", "x", u, []Option{WithTimeout(0)}, true},
		{"zero cap", "x", u, []Option{WithMaxManifestSize(0)}, true},
		{"zero tokens", "x", u, []Option{WithMaxTokens(0)}, true},
		{"zero idle connections", "x", u, []Option{WithMaxIdleConns(0)}, true},
		{"all good", "x", u, []Option{WithBasicAuth("u", "p"), WithTLSConfig(tlsConfig()), WithRetries(0, time.Second),
			WithTimeout(time.Second), WithUserAgent("ua"), WithAllowPrivateAddresses(true), WithMaxManifestSize(1), WithMaxTokens(1),
			WithMaxIdleConns(1), WithObserver(nil)}, false},
		{"old name of allow private", "x", u, []Option{WithAllowPrivateRealm(true)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.name_, tc.u, tc.opts...)
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

// TestConnectionReuse: concurrent requests (a burst of admission lookups, say) keep their connections for the next
// burst, rather than closing all but two and dialling again.
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	const burst = 16
	var dialled atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // so that the burst overlaps
		http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	c := newClient(t, u)
	for range 3 {
		var wg sync.WaitGroup
		for range burst {
			wg.Go(func() {
				if _, _, _, err := c.Manifest(t.Context(), "a/b", "v1", nil); !errors.Is(err, ErrNotFound) {
					t.Errorf("Manifest: %v, want ErrNotFound", err)
				}
			})
		}
		wg.Wait()
	}
	if n := dialled.Load(); n > burst {
		t.Errorf("%d connections for 3 bursts of %d requests, want at most %d", n, burst, burst)
	}
}

// hideHeader removes a response header from HEAD responses, as some registries and caches do.
func hideHeader(header string, gets *atomic.Int64) middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
				gets.Add(1)
			}
			if r.Method != http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(&headerDropper{ResponseWriter: w, header: header}, r)
		})
	}
}

type headerDropper struct {
	http.ResponseWriter
	header string
}

func (h *headerDropper) WriteHeader(code int) {
	h.Header().Del(h.header)
	h.ResponseWriter.WriteHeader(code)
}

func TestResolveFallsBackToGet(t *testing.T) {
	var gets atomic.Int64
	reg := newTestRegistry(t, true, hideHeader("Docker-Content-Digest", &gets))
	img := reg.pushImage(t, "acme/app", "v1", 256)
	raw := rawManifest(t, img)
	mt, _ := img.MediaType()
	c := newClient(t, reg.url(t))
	got, err := c.Resolve(context.Background(), "acme/app", "v1", []string{string(mt)})
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.Descriptor{MediaType: string(mt), Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("descriptor (-want +got):\n%s", diff)
	}
	if gets.Load() != 1 {
		t.Errorf("GETs = %d, want 1 (the fallback)", gets.Load())
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.StartTLS()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	if err := newClient(t, u, WithTLSConfig(&tls.Config{RootCAs: pool})).Ping(context.Background()); err != nil {
		t.Errorf("with the test CA: %v", err)
	}
	var hits atomic.Int64
	obs := WithObserver(func(string, string, int, time.Duration) { hits.Add(1) })
	if err := newClient(t, u, obs).Ping(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("with system roots: err = %v, want ErrUnavailable", err)
	}
	if hits.Load() != 1 {
		t.Errorf("certificate errors were retried: %d attempts", hits.Load())
	}
}

func TestStatBlob(t *testing.T) {
	var heads, gets atomic.Int64
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") {
				map[string]*atomic.Int64{http.MethodHead: &heads, http.MethodGet: &gets}[r.Method].Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	lie := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v2/acme/liar/blobs/") {
				w = &headerSetter{ResponseWriter: w, header: "Docker-Content-Digest", value: digest.FromString("other").String()}
			}
			next.ServeHTTP(w, r)
		})
	}
	reg := newTestRegistry(t, true, count, lie)
	img := reg.pushImage(t, "acme/app", "v1", 4096)
	reg.write(t, "acme/liar:v1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	dgst := digest.Digest(ld.String())
	c := newClient(t, reg.url(t))
	for _, tc := range []struct {
		name     string
		repo     string
		dgst     digest.Digest
		wantSize int64
		wantErr  error
	}{
		{"present", "acme/app", dgst, size, nil},
		{"missing", "acme/app", digest.FromString("missing"), 0, ErrNotFound},
		{"header names another digest", "acme/liar", dgst, 0, ErrDigestMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heads.Store(0)
			gets.Store(0)
			got, err := c.StatBlob(context.Background(), tc.repo, tc.dgst)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.wantSize {
				t.Errorf("size = %d, want %d", got, tc.wantSize)
			}
			if heads.Load() != 1 || gets.Load() != 0 {
				t.Errorf("upstream saw %d HEAD and %d GET, want one HEAD", heads.Load(), gets.Load())
			}
		})
	}
	if _, err := c.StatBlob(context.Background(), "acme/app", "sha256:nothex"); err == nil {
		t.Error("invalid digest accepted")
	}
}

// headerSetter overrides a response header as the headers are sent.
type headerSetter struct {
	http.ResponseWriter
	header, value string
}

func (h *headerSetter) WriteHeader(code int) {
	h.Header().Set(h.header, h.value)
	h.ResponseWriter.WriteHeader(code)
}
