package registrytest

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// backends are the two registries New can run.
var backends = []struct {
	name string
	opts []Option
}{
	{name: "distribution"},
	{name: "ggcr", opts: []Option{WithGGCR()}},
}

// transport returns a fresh transport that trusts r's certificate, if any.
func transport(r *Registry) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if pool := r.CertPool(); pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return tr
}

func remoteOpts(t *testing.T, r *Registry, extra ...remote.Option) []remote.Option {
	tr := transport(r)
	t.Cleanup(tr.CloseIdleConnections)
	return append([]remote.Option{remote.WithContext(t.Context()), remote.WithTransport(tr)}, extra...)
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(t *testing.T, r *Registry, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.URL().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: transport(r)}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestPushPull(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			r := New(t, b.opts...)

			img := r.PushRandomImage(t, "team/app:v1", 3, 2048)
			got, err := remote.Image(mustRef(t, r.Ref("team/app:v1")), remoteOpts(t, r)...)
			if err != nil {
				t.Fatal(err)
			}
			if want, got := digestOf(t, img), digestOf(t, got); want != got {
				t.Errorf("image digest = %s, want %s", got, want)
			}
			mt, err := got.MediaType()
			if err != nil || mt != types.OCIManifestSchema1 {
				t.Errorf("image media type = %q, %v; want %q", mt, err, types.OCIManifestSchema1)
			}
			layers, err := got.Layers()
			if err != nil || len(layers) != 3 {
				t.Fatalf("layers = %d, %v; want 3", len(layers), err)
			}
			for _, l := range layers {
				rc, err := l.Compressed() // verifies the digest as it reads
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					t.Errorf("layer: %v", err)
				}
				rc.Close()
			}

			idx := r.PushRandomIndex(t, "team/multi:v1")
			d, err := crane.Digest(r.Ref("team/multi:v1"), crane.WithTransport(transport(r)))
			if err != nil {
				t.Fatal(err)
			}
			if want := digestOf(t, idx).String(); d != want {
				t.Errorf("index digest = %s, want %s", d, want)
			}
			gotIdx, err := remote.Index(mustRef(t, r.Ref("team/multi:v1")), remoteOpts(t, r)...)
			if err != nil {
				t.Fatal(err)
			}
			im, err := gotIdx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var plats []v1.Platform
			for _, m := range im.Manifests {
				plats = append(plats, *m.Platform)
				child, err := gotIdx.Image(m.Digest)
				if err != nil {
					t.Fatal(err)
				}
				cf, err := child.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(*m.Platform, *cf.Platform()); diff != "" {
					t.Errorf("config platform differs from descriptor (-desc +config):\n%s", diff)
				}
			}
			if diff := cmp.Diff(Platforms(), plats); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDockerImageAndTag(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			r := New(t, b.opts...)
			first := r.DockerImage(t, "lib/d:latest", 2)
			second := r.PushRandomImage(t, "lib/d:other", 1, 512)

			desc, err := remote.Head(mustRef(t, r.Ref("lib/d:latest")), remoteOpts(t, r)...)
			if err != nil {
				t.Fatal(err)
			}
			if desc.MediaType != types.DockerManifestSchema2 || desc.Digest != digestOf(t, first) {
				t.Errorf("latest = %s %s, want %s %s", desc.MediaType, desc.Digest, types.DockerManifestSchema2, digestOf(t, first))
			}

			r.Tag(t, "lib/d:latest", digestOf(t, second))
			desc, err = remote.Head(mustRef(t, r.Ref("lib/d:latest")), remoteOpts(t, r)...)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != digestOf(t, second) {
				t.Errorf("latest after Tag = %s, want %s", desc.Digest, digestOf(t, second))
			}

			// Deletes are enabled.
			old := mustRef(t, r.Ref("lib/d@"+digestOf(t, first).String()))
			if err := remote.Delete(old, remoteOpts(t, r)...); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if _, err := remote.Head(old, remoteOpts(t, r)...); err == nil {
				t.Error("HEAD of a deleted manifest succeeded")
			}
		})
	}
}

func TestHitsCountBlobGets(t *testing.T) {
	t.Parallel()
	r := New(t)
	img := r.PushRandomImage(t, "a/b:v1", 2, 1024)
	if n := r.Hits().Total(); n != 0 {
		t.Errorf("seeding counted %d hits, want 0", n)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	dgst, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	path := "/v2/a/b/blobs/" + dgst.String()
	for range 2 {
		if resp := get(t, r, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
	}
	get(t, r, "/v2/")
	if got := r.Hits().Count(http.MethodGet, KindBlob); got != 2 {
		t.Errorf("blob GETs = %d, want 2", got)
	}
	if got := r.Hits().CountPath(http.MethodGet, path); got != 2 {
		t.Errorf("GETs of %s = %d, want 2", path, got)
	}
	if got := r.Hits().Count(http.MethodGet, KindPing); got != 1 {
		t.Errorf("pings = %d, want 1", got)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	unavailable := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if k, _ := classify(req.URL.Path); k == KindManifest {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, req)
		})
	}
	r := New(t, WithMiddleware(unavailable))
	r.PushRandomImage(t, "a:v1", 1, 16) // seeding bypasses the middleware
	if resp := get(t, r, "/v2/a/manifests/v1"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("manifest GET = %d, want 503", resp.StatusCode)
	}
	if resp := get(t, r, "/v2/"); resp.StatusCode != http.StatusOK {
		t.Errorf("ping = %d, want 200", resp.StatusCode)
	}
	if got := r.Hits().Count(http.MethodGet, KindManifest); got != 1 {
		t.Errorf("manifest hits = %d, want 1", got)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	r := New(t)
	if resp := get(t, r, "/v2/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("ping = %d", resp.StatusCode)
	}
	r.Close()
	r.Close() // idempotent
	_, err := http.Get(r.URL().String() + "/v2/")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET after Close: %v, want connection refused", err)
	}
}

func TestCloseCutsInFlightRequests(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	hang := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			close(entered)
			<-req.Context().Done()
		})
	}
	r := New(t, WithMiddleware(hang))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(r.URL().String() + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	r.Close()
	if err := <-errc; err == nil {
		t.Error("in-flight request succeeded after Close")
	}
}

func TestReferrers(t *testing.T) {
	tests := []struct {
		name   string
		opts   []Option
		status int
	}{
		{name: "ggcr serves referrers", opts: []Option{WithGGCR()}, status: http.StatusOK},
		{name: "distribution has none", status: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := New(t, tt.opts...)
			img := r.PushRandomImage(t, "a:v1", 1, 16)
			resp := get(t, r, "/v2/a/referrers/"+digestOf(t, img).String())
			if resp.StatusCode != tt.status {
				t.Fatalf("referrers = %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != http.StatusOK {
				return
			}
			var im v1.IndexManifest
			if err := json.NewDecoder(resp.Body).Decode(&im); err != nil {
				t.Fatal(err)
			}
			if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 0 {
				t.Errorf("referrers = %+v, want an empty OCI index", im)
			}
			if got := r.Hits().Count(http.MethodGet, KindReferrers); got != 1 {
				t.Errorf("referrers hits = %d, want 1", got)
			}
		})
	}
}
