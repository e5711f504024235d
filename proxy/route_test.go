package proxy

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/portcullis/portcullis/internal/manifest"
)

// nopRegistry is never called: routing must decide without the network.
type nopRegistry struct{ t testing.TB }

func (n nopRegistry) Resolve(context.Context, string, string, []string) (ocispec.Descriptor, error) {
	n.t.Error("unexpected upstream call")
	return ocispec.Descriptor{}, nil
}
func (n nopRegistry) Manifest(context.Context, string, string, []string) ([]byte, string, digest.Digest, error) {
	n.t.Error("unexpected upstream call")
	return nil, "", "", nil
}
func (n nopRegistry) Blob(context.Context, string, digest.Digest) (io.ReadCloser, int64, error) {
	n.t.Error("unexpected upstream call")
	return nil, 0, nil
}
func (n nopRegistry) StatBlob(context.Context, string, digest.Digest) (int64, error) {
	n.t.Error("unexpected upstream call")
	return 0, nil
}
func (n nopRegistry) Tags(context.Context, string, int, string) ([]string, string, error) {
	n.t.Error("unexpected upstream call")
	return nil, "", nil
}
func (n nopRegistry) Referrers(context.Context, string, digest.Digest, string) ([]byte, bool, error) {
	n.t.Error("unexpected upstream call")
	return nil, false, nil
}

type nopStore struct{}

func (nopStore) Stat(context.Context, digest.Digest) (int64, error) { return 0, nil }
func (nopStore) Open(context.Context, digest.Digest, int64) (io.ReadCloser, error) {
	return nil, nil
}
func (nopStore) Get(context.Context, digest.Digest, int64) ([]byte, error) { return nil, nil }
func (nopStore) Put(context.Context, digest.Digest, io.Reader) (int64, error) {
	return 0, nil
}

type nopKV struct{}

func (nopKV) Get(context.Context, string) ([]byte, error) { return nil, nil }
func (nopKV) Set(context.Context, string, []byte, time.Duration) error {
	return nil
}

func newRoutingProxy(t testing.TB) *Proxy {
	t.Helper()
	p, err := New([]*Upstream{
		{Name: "ghcr.io", Registry: nopRegistry{t}},
		{Name: "docker.io", Registry: nopRegistry{t}},
		{Name: "127.0.0.1:6000", Registry: nopRegistry{t}},
	}, "docker.io", nopStore{}, nopKV{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestParseRoute(t *testing.T) {
	p := newRoutingProxy(t)
	type want struct {
		Kind     string
		Upstream string
		Repo     string
		Ref      string
		Digest   string
		Prefixed bool
	}
	tests := []struct {
		name    string
		target  string
		want    want
		wantErr string
	}{
		{"base", "/v2/", want{Kind: "base"}, ""},
		{"default upstream adds library/", "/v2/alpine/manifests/3.20", want{"manifest", "docker.io", "library/alpine", "3.20", "", false}, ""},
		{"default upstream keeps org", "/v2/bitnami/redis/manifests/7", want{"manifest", "docker.io", "bitnami/redis", "7", "", false}, ""},
		{"ns picks upstream", "/v2/acme/app/manifests/v1?ns=ghcr.io", want{"manifest", "ghcr.io", "acme/app", "v1", "", false}, ""},
		{"ns is case-insensitive", "/v2/acme/app/manifests/v1?ns=GHCR.io", want{"manifest", "ghcr.io", "acme/app", "v1", "", false}, ""},
		{"ns docker.io single name", "/v2/alpine/blobs/sha256:" + hexA + "?ns=docker.io", want{"blob", "docker.io", "library/alpine", "sha256:" + hexA, "sha256:" + hexA, false}, ""},
		{"prefix", "/v2/docker.io/library/alpine/manifests/3.20", want{"manifest", "docker.io", "library/alpine", "3.20", "", true}, ""},
		{"prefix adds library/", "/v2/docker.io/alpine/manifests/3.20", want{"manifest", "docker.io", "library/alpine", "3.20", "", true}, ""},
		{"prefix with port", "/v2/127.0.0.1:6000/team/app/tags/list", want{"tags", "127.0.0.1:6000", "team/app", "", "", true}, ""},
		{"by digest", "/v2/acme/app/manifests/sha256:" + hexA + "?ns=ghcr.io", want{"manifest", "ghcr.io", "acme/app", "sha256:" + hexA, "sha256:" + hexA, false}, ""},
		{"referrers", "/v2/acme/app/referrers/sha256:" + hexA + "?ns=ghcr.io", want{"referrers", "ghcr.io", "acme/app", "sha256:" + hexA, "sha256:" + hexA, false}, ""},
		{"repo named manifests", "/v2/manifests/manifests/v1", want{"manifest", "docker.io", "library/manifests", "v1", "", false}, ""},
		{"double underscore and runs of dashes", "/v2/acme/my__app---x/manifests/v1?ns=ghcr.io", want{"manifest", "ghcr.io", "acme/my__app---x", "v1", "", false}, ""},
		{"dotted first component after ns is a path", "/v2/acme.io/app/manifests/v1?ns=ghcr.io", want{"manifest", "ghcr.io", "acme.io/app", "v1", "", false}, ""},
		{"255 characters with library/", "/v2/" + strings.Repeat("a", 247) + "/manifests/v1", want{"manifest", "docker.io", "library/" + strings.Repeat("a", 247), "v1", "", false}, ""},
		{"256 characters with library/", "/v2/" + strings.Repeat("a", 248) + "/manifests/v1", want{}, "NAME_INVALID"},
		{"triple underscore", "/v2/acme/a___b/manifests/v1", want{}, "NAME_INVALID"},
		{"port in a path after ns", "/v2/foo:5000/bar/manifests/v1?ns=ghcr.io", want{}, "NAME_INVALID"},
		{"upper-case host in a path after ns", "/v2/Foo.com/bar/manifests/v1?ns=ghcr.io", want{}, "NAME_INVALID"},
		{"unknown ns", "/v2/acme/app/manifests/v1?ns=evil.example.com", want{}, "NAME_UNKNOWN"},
		{"unknown prefix", "/v2/evil.example.com/acme/app/manifests/v1", want{}, "NAME_UNKNOWN"},
		{"bad digest", "/v2/acme/app/blobs/sha256:abc", want{}, "DIGEST_INVALID"},
		{"bad tag", "/v2/acme/app/manifests/-bad", want{}, "MANIFEST_INVALID"},
		{"upper-case name", "/v2/Acme/app/manifests/v1", want{}, "NAME_INVALID"},
		{"dot-dot name", "/v2/../etc/manifests/v1", want{}, "NAME_INVALID"},
		{"no name", "/v2/manifests/v1", want{}, "NAME_UNKNOWN"},
		{"uploads", "/v2/acme/app/blobs/uploads/", want{}, "NAME_UNKNOWN"},
		{"not v2", "/v1/_ping", want{}, "NAME_UNKNOWN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := p.parseRoute(httptest.NewRequest("GET", tc.target, nil))
			if tc.wantErr != "" {
				ae, ok := err.(*apiError)
				if !ok || ae.code != tc.wantErr {
					t.Fatalf("err = %v, want %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := want{Kind: r.kind.String(), Repo: r.repo, Ref: r.ref, Digest: r.dgst.String(), Prefixed: r.prefixed}
			if r.upstream != nil {
				got.Upstream = r.upstream.Name
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		header       string
		size         int64
		start, count int64
		ok           bool
	}{
		{"", 100, 0, 100, true},
		{"bytes=0-9", 100, 0, 10, true},
		{"bytes=90-", 100, 90, 10, true},
		{"bytes=90-200", 100, 90, 10, true},
		{"bytes=-10", 100, 90, 10, true},
		{"bytes=-200", 100, 0, 100, true},
		{"bytes=100-", 100, 0, 0, false},
		{"bytes=-0", 100, 0, 0, false},
		{"bytes=5-1", 100, 0, 100, true},     // malformed: ignored
		{"bytes=0-1,5-6", 100, 0, 100, true}, // multi-range: whole blob
		{"items=0-1", 100, 0, 100, true},     // other unit: ignored
		{"bytes=x-y", 100, 0, 100, true},     // garbage: ignored
		{"bytes=0-", 0, 0, 0, false},         // empty blob has no byte 0
		{"bytes=9223372036854775807-", 100, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			s, n, ok := parseRange(tc.header, tc.size)
			if s != tc.start || n != tc.count || ok != tc.ok {
				t.Errorf("parseRange(%q, %d) = %d, %d, %v; want %d, %d, %v", tc.header, tc.size, s, n, ok, tc.start, tc.count, tc.ok)
			}
		})
	}
}

func TestDetectMediaType(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`, manifest.MediaTypeDockerManifest},
		{`{"schemaVersion":2,"manifests":[]}`, ocispec.MediaTypeImageIndex},
		{`{"schemaVersion":2,"config":{}}`, ocispec.MediaTypeImageManifest},
		{`{"schemaVersion":1,"fsLayers":[]}`, "application/vnd.docker.distribution.manifest.v1+prettyjws"},
		{`not json`, "application/octet-stream"},
	}
	for _, tc := range tests {
		if got := detectMediaType([]byte(tc.body)); got != tc.want {
			t.Errorf("detectMediaType(%s) = %s, want %s", tc.body, got, tc.want)
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/manifests/b", "/v2/docker.io/a/blobs/sha256:" + hexA, "/v2/a/tags/list?n=1&ns=x", "/v2//manifests/", "/v2/a/referrers/x"} {
		f.Add(s)
	}
	p := newRoutingProxy(f)
	f.Fuzz(func(t *testing.T, target string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = target
		r, err := p.parseRoute(req)
		if err == nil && r.kind != kindBase && (r.upstream == nil || r.repo == "") {
			t.Fatalf("route without upstream or repo: %+v", r)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes=0-1", int64(10))
	f.Add("bytes=-5", int64(3))
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			return
		}
		s, n, ok := parseRange(h, size)
		if ok && (s < 0 || n < 0 || s+n > size) {
			t.Fatalf("parseRange(%q, %d) = %d, %d outside the blob", h, size, s, n)
		}
	})
}
