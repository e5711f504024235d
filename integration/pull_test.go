package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/internal/registrytest"
)

// sameImage checks every byte of img as pulled through the proxy against the upstream's.
func sameImage(t *testing.T, want, got v1.Image) {
	t.Helper()
	wm, _ := want.RawManifest()
	gm, err := got.RawManifest()
	if err != nil {
		t.Fatalf("manifest through proxy: %v", err)
	}
	if !bytes.Equal(wm, gm) {
		t.Fatalf("manifest bytes differ through the proxy")
	}
	wc, _ := want.RawConfigFile()
	gc, err := got.RawConfigFile()
	if err != nil {
		t.Fatalf("config through proxy: %v", err)
	}
	if !bytes.Equal(wc, gc) {
		t.Fatalf("config bytes differ")
	}
	wl, _ := want.Layers()
	gl, err := got.Layers()
	if err != nil || len(gl) != len(wl) {
		t.Fatalf("layers: %v (%d vs %d)", err, len(gl), len(wl))
	}
	for i := range wl {
		wr, _ := wl[i].Compressed()
		wb, _ := io.ReadAll(wr)
		gr, err := gl[i].Compressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		gb, err := io.ReadAll(gr) // go-containerregistry verifies the digest as it reads
		if err != nil {
			t.Fatalf("layer %d through proxy: %v", i, err)
		}
		if !bytes.Equal(wb, gb) {
			t.Fatalf("layer %d bytes differ", i)
		}
	}
}

func TestPullByTagAndDigest(t *testing.T) {
	e := newEnv(t)
	img := e.up.PushRandomImage(t, "team/app:v1", 3, 64<<10)
	dgst, _ := img.Digest()

	got, err := crane.Pull(e.ref("team/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatalf("pull by tag: %v", err)
	}
	sameImage(t, img, got)

	got, err = crane.Pull(e.ref("team/app@"+dgst.String()), pullOpts()...)
	if err != nil {
		t.Fatalf("pull by digest: %v", err)
	}
	sameImage(t, img, got)

	// Second pull by tag within the TTL: no upstream manifest request at all, blobs from the store.
	e.up.Hits().Reset()
	got, err = crane.Pull(e.ref("team/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, img, got)
	if n := e.up.Hits().Count("", registrytest.KindManifest) + e.up.Hits().Count("", registrytest.KindBlob); n != 0 {
		t.Errorf("warm pull made %d upstream manifest/blob requests, want 0", n)
	}
}

func TestDockerMediaTypes(t *testing.T) {
	e := newEnv(t)
	img := e.up.DockerImage(t, "legacy/app:1", 2)
	got, err := crane.Pull(e.ref("legacy/app:1"), pullOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, img, got)
	resp, _ := e.get(t, http.MethodHead, "/v2/legacy/app/manifests/1", "Accept", string(types.DockerManifestSchema2))
	if ct := resp.Header.Get("Content-Type"); ct != string(types.DockerManifestSchema2) {
		t.Errorf("Content-Type = %q, want docker schema2", ct)
	}
}

func TestIndexThenPlatformManifest(t *testing.T) {
	e := newEnv(t)
	idx := e.up.PushRandomIndex(t, "multi/app:latest", registrytest.Platforms()...)
	wantDigest, _ := idx.Digest()

	got, err := remote.Index(mustRef(t, e.ref("multi/app:latest")))
	if err != nil {
		t.Fatal(err)
	}
	gotDigest, _ := got.Digest()
	if gotDigest != wantDigest {
		t.Fatalf("index digest %s, want %s", gotDigest, wantDigest)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != len(registrytest.Platforms()) {
		t.Fatalf("index has %d children", len(im.Manifests))
	}
	for _, d := range im.Manifests {
		want, _ := idx.Image(d.Digest)
		child, err := crane.Pull(e.ref("multi/app@"+d.Digest.String()), pullOpts()...)
		if err != nil {
			t.Fatalf("child %s: %v", d.Platform, err)
		}
		sameImage(t, want, child)
	}
	// Platform selection by a real client: crane picks the arm64 child from the index.
	arm, err := crane.Pull(e.ref("multi/app:latest"), append(pullOpts(), crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: "arm64"}))...)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := arm.ConfigFile()
	if cf.Architecture != "arm64" {
		t.Errorf("platform pull got %s", cf.Architecture)
	}
}

func TestManifestHeadAndHeaders(t *testing.T) {
	e := newEnv(t)
	img := e.up.PushRandomImage(t, "h/app:v1", 1, 1024)
	raw, _ := img.RawManifest()
	dgst, _ := img.Digest()
	mt, _ := img.MediaType()
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		resp, body := e.get(t, method, "/v2/h/app/manifests/v1", "Accept", string(mt))
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, body)
		}
		got := map[string]string{
			"Content-Type":                    resp.Header.Get("Content-Type"),
			"Docker-Content-Digest":           resp.Header.Get("Docker-Content-Digest"),
			"Content-Length":                  resp.Header.Get("Content-Length"),
			"Docker-Distribution-Api-Version": resp.Header.Get("Docker-Distribution-API-Version"),
		}
		want := map[string]string{
			"Content-Type": string(mt), "Docker-Content-Digest": dgst.String(),
			"Content-Length": fmt.Sprint(len(raw)), "Docker-Distribution-Api-Version": "registry/2.0",
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s headers (-want +got):\n%s", method, d)
		}
		if method == http.MethodGet && !bytes.Equal(body, raw) {
			t.Errorf("GET body differs")
		}
		if method == http.MethodHead && len(body) != 0 {
			t.Errorf("HEAD has a body")
		}
	}
	resp, _ := e.get(t, http.MethodGet, "/v2/")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("/v2/: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestBlobRange(t *testing.T) {
	e := newEnv(t)
	img := e.up.PushRandomImage(t, "r/app:v1", 1, 10000)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	full, _ := io.ReadAll(rc)
	size := len(full)
	path := "/v2/r/app/blobs/" + ld.String()

	// Twice: the first answer comes from the in-flight download, the second from the store.
	for _, phase := range []string{"cold", "warm"} {
		tests := []struct {
			name       string
			rng        string
			wantStatus int
			want       []byte
			wantCR     string
		}{
			{"first bytes", "bytes=0-99", 206, full[:100], fmt.Sprintf("bytes 0-99/%d", size)},
			{"middle", "bytes=100-199", 206, full[100:200], fmt.Sprintf("bytes 100-199/%d", size)},
			{"open end", fmt.Sprintf("bytes=%d-", size-10), 206, full[size-10:], fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size)},
			{"suffix", "bytes=-5", 206, full[size-5:], fmt.Sprintf("bytes %d-%d/%d", size-5, size-1, size)},
			{"past end", fmt.Sprintf("bytes=%d-", size), 416, nil, fmt.Sprintf("bytes */%d", size)},
			{"whole", "", 200, full, ""},
		}
		for _, tc := range tests {
			t.Run(phase+"/"+tc.name, func(t *testing.T) {
				var hdr []string
				if tc.rng != "" {
					hdr = []string{"Range", tc.rng}
				}
				resp, body := e.get(t, http.MethodGet, path, hdr...)
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
				}
				if cr := resp.Header.Get("Content-Range"); cr != tc.wantCR {
					t.Errorf("Content-Range %q, want %q", cr, tc.wantCR)
				}
				if tc.want != nil && !bytes.Equal(body, tc.want) {
					t.Errorf("body differs (%d bytes, want %d)", len(body), len(tc.want))
				}
			})
		}
	}
	resp, body := e.get(t, http.MethodHead, path)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != fmt.Sprint(size) || len(body) != 0 ||
		resp.Header.Get("Docker-Content-Digest") != ld.String() {
		t.Errorf("HEAD blob: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestTagsListPagination(t *testing.T) {
	e := newEnv(t)
	img := e.up.PushRandomImage(t, "t/app:a", 1, 100)
	dgst, _ := img.Digest()
	for _, tag := range []string{"b", "c", "d", "e"} {
		e.up.Tag(t, "t/app:"+tag, dgst)
	}
	var all []string
	path := "/v2/t/app/tags/list?n=2"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		resp, body := e.get(t, http.MethodGet, path)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &tl); err != nil || tl.Name != "t/app" || len(tl.Tags) > 2 {
			t.Fatalf("page %s: %s", path, body)
		}
		all = append(all, tl.Tags...)
		path = ""
		if link := resp.Header.Get("Link"); link != "" {
			path = strings.TrimPrefix(strings.SplitN(link, ">", 2)[0], "<")
		}
	}
	if d := cmp.Diff([]string{"a", "b", "c", "d", "e"}, all); d != "" {
		t.Errorf("tags (-want +got):\n%s", d)
	}
	// And with crane, which follows Link headers itself.
	tags, err := crane.ListTags(e.ref("t/app"), pullOpts()...)
	if err != nil || len(tags) != 5 {
		t.Errorf("crane ls: %v %v", tags, err)
	}
}

func TestWritesRefused(t *testing.T) {
	e := newEnv(t)
	for _, method := range []string{http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		for _, path := range []string{"/v2/x/app/manifests/v1", "/v2/x/app/blobs/uploads/", "/v2/x/app/blobs/sha256:" + strings.Repeat("a", 64)} {
			resp, body := e.get(t, method, path)
			var eb struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			_ = json.Unmarshal(body, &eb)
			if resp.StatusCode != http.StatusMethodNotAllowed || len(eb.Errors) != 1 || eb.Errors[0].Code != "UNSUPPORTED" {
				t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, body)
			}
		}
	}
	if n := e.up.Hits().Total(); n != 0 {
		t.Errorf("writes caused %d upstream requests", n)
	}
}

func TestErrorsAreSpecShaped(t *testing.T) {
	e := newEnv(t)
	e.up.PushRandomImage(t, "e/app:v1", 1, 100)
	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"unknown tag", "/v2/e/app/manifests/nope", 404, "MANIFEST_UNKNOWN"},
		{"unknown digest", "/v2/e/app/manifests/sha256:" + strings.Repeat("0", 64), 404, "MANIFEST_UNKNOWN"},
		{"unknown blob", "/v2/e/app/blobs/sha256:" + strings.Repeat("1", 64), 404, "BLOB_UNKNOWN"},
		{"bad digest", "/v2/e/app/blobs/sha256:zz", 400, "DIGEST_INVALID"},
		{"bad name", "/v2/E/App/manifests/v1", 400, "NAME_INVALID"},
		{"unknown repo tags", "/v2/nothing/here/tags/list", 404, "NAME_UNKNOWN"},
		{"bad n", "/v2/e/app/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.get(t, http.MethodGet, tc.path)
			var eb struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 {
				t.Fatalf("body %s: %v", body, err)
			}
			if resp.StatusCode != tc.status || eb.Errors[0].Code != tc.code || eb.Errors[0].Message == "" {
				t.Errorf("got %d %s %q, want %d %s", resp.StatusCode, eb.Errors[0].Code, eb.Errors[0].Message, tc.status, tc.code)
			}
		})
	}
}
