package integration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
)

func TestUpstreamSelection(t *testing.T) {
	// Two upstreams: the default one from newEnv, and a second registry reachable by ns= or prefix only.
	second := registrytest.New(t)
	client, err := upstream.New(second.Host(), second.URL())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *envConfig) { c.extra = []*proxy.Upstream{{Name: second.Host(), Registry: client}} })
	first := e.up.PushRandomImage(t, "sel/app:v1", 1, 100)
	other := second.PushRandomImage(t, "sel/app:v1", 1, 100)
	fd, _ := first.Digest()
	od, _ := other.Digest()

	tests := []struct {
		name, path string
		want       string
	}{
		{"default upstream", "/v2/sel/app/manifests/v1", fd.String()},
		{"ns of the default", "/v2/sel/app/manifests/v1?ns=" + e.up.Host(), fd.String()},
		{"ns of the second", "/v2/sel/app/manifests/v1?ns=" + second.Host(), od.String()},
		{"prefix of the second", "/v2/" + second.Host() + "/sel/app/manifests/v1", od.String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get(t, http.MethodGet, tc.path)
			if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != tc.want {
				t.Fatalf("%d %s digest %s, want %s", resp.StatusCode, body, resp.Header.Get("Docker-Content-Digest"), tc.want)
			}
		})
	}
}

func TestUnknownUpstreamMakesNoOutboundRequest(t *testing.T) {
	e := newEnv(t)
	// An outbound request to anywhere would be a bug: count what the only configured upstream sees, and give the
	// refused names something that would be reachable if the proxy tried.
	tests := []struct{ name, path string }{
		{"ns manifest", "/v2/library/alpine/manifests/3.20?ns=evil.example.com"},
		{"ns blob", "/v2/library/alpine/blobs/sha256:" + zeros + "?ns=" + "127.0.0.1:1"},
		{"ns tags", "/v2/library/alpine/tags/list?ns=docker.io"},
		{"prefix manifest", "/v2/evil.example.com/library/alpine/manifests/3.20"},
		{"prefix loopback", "/v2/127.0.0.1:1/x/blobs/sha256:" + zeros},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get(t, http.MethodGet, tc.path)
			var eb struct {
				Errors []struct{ Code string } `json:"errors"`
			}
			_ = json.Unmarshal(body, &eb)
			if resp.StatusCode != 404 || len(eb.Errors) != 1 || eb.Errors[0].Code != "NAME_UNKNOWN" {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
		})
	}
	if n := e.up.Hits().Total(); n != 0 {
		t.Errorf("refused requests caused %d upstream requests", n)
	}
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

// artifact is a small OCI artifact of the given type whose subject is subject's manifest.
func artifact(t *testing.T, artifactType string, subject v1.Image) v1.Image {
	t.Helper()
	mt, _ := subject.MediaType()
	d, _ := subject.Digest()
	sz, _ := subject.Size()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(artifactType))
	img = mutate.Annotations(img, map[string]string{"test": artifactType}).(v1.Image)
	return mutate.Subject(img, v1.Descriptor{MediaType: mt, Digest: d, Size: sz}).(v1.Image)
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestReferrers(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []registrytest.Option
	}{
		{"passthrough (registry with the referrers API)", []registrytest.Option{registrytest.WithGGCR()}},
		{"fallback tag (CNCF Distribution)", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withUpstream(tc.opts...))
			img := e.up.PushRandomImage(t, "ref/app:v1", 1, 100)
			subj, _ := img.Digest()
			sigType := "application/vnd.dev.cosign.artifact.sig.v1+json"
			sbomType := "application/spdx+json"
			// remote.Write pushes the referrer and, on a registry without the API, updates the fallback tag index
			// itself (as cosign and oras do).
			for _, at := range []string{sigType, sbomType} {
				art := artifact(t, at, img)
				if err := remote.Write(mustRef(t, e.up.Ref("ref/app@"+digestOf(t, art))), art); err != nil {
					t.Fatal(err)
				}
			}
			for _, filter := range []struct {
				query string
				want  int
			}{{"", 2}, {"?artifactType=" + url.QueryEscape(sigType), 1}, {"?artifactType=none/none", 0}} {
				resp, body := e.get(t, http.MethodGet, "/v2/ref/app/referrers/"+subj.String()+filter.query)
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex {
					t.Fatalf("%s: %d %s", filter.query, resp.StatusCode, body)
				}
				var idx ocispec.Index
				if err := json.Unmarshal(body, &idx); err != nil {
					t.Fatal(err)
				}
				if len(idx.Manifests) != filter.want {
					t.Errorf("%q: %d referrers, want %d: %s", filter.query, len(idx.Manifests), filter.want, body)
				}
				if filter.query != "" && resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
					t.Errorf("no OCI-Filters-Applied header")
				}
			}
			// An image with no referrers: an empty index, not an error.
			other := e.up.PushRandomImage(t, "ref/app:v2", 1, 100)
			od, _ := other.Digest()
			resp, body := e.get(t, http.MethodGet, "/v2/ref/app/referrers/"+od.String())
			if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"manifests":[]`)) {
				t.Errorf("no referrers: %d %s", resp.StatusCode, body)
			}
		})
	}
}
