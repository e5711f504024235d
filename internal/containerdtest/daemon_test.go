package containerdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const upstreamHost = "registry.example.test"

// deniedBody is the answer Portcullis gives for a denied manifest.
const deniedBody = `{"errors":[{"code":"DENIED","message":"portcullis: denied: test reason"}]}`

// seen is one request containerd sent to the mirror.
type seen struct {
	Method, Path, NS string
}

// mirror is an in-process registry standing in for Portcullis: it records containerd's requests and
// answers 403 DENIED to those of containerd's requests that deny selects.
type mirror struct {
	srv  *httptest.Server
	reg  http.Handler
	deny func(*http.Request) bool

	mu   sync.Mutex
	seen []seen
}

func newMirror(t *testing.T, deny func(*http.Request) bool) *mirror {
	t.Helper()
	m := &mirror{reg: registry.New(registry.Logger(log.New(io.Discard, "", 0))), deny: deny}
	m.srv = httptest.NewServer(m)
	t.Cleanup(m.srv.Close)
	return m
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Only containerd's requests count; the test's own pushes pass untouched.
	fromContainerd := strings.HasPrefix(r.UserAgent(), "containerd/")
	if fromContainerd {
		m.mu.Lock()
		m.seen = append(m.seen, seen{Method: r.Method, Path: r.URL.Path, NS: r.URL.Query().Get("ns")})
		m.mu.Unlock()
	}
	if fromContainerd && m.deny != nil && m.deny(r) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Warning", `299 - "portcullis: denied: test reason"`)
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, deniedBody)
		return
	}
	m.reg.ServeHTTP(w, r)
}

func (m *mirror) requests() []seen {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.seen)
}

// push stores a fresh random image in the mirror as repo:tag and returns it.
func (m *mirror) push(t *testing.T, repo, tag string) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(strings.TrimPrefix(m.srv.URL, "http://") + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPullThroughMirror(t *testing.T) {
	d := Start(t)
	tests := []struct {
		name     string
		repo     string
		platform string
	}{
		{name: "default platform", repo: "library/demo"},
		{name: "explicit platform", repo: "acme/app", platform: runtime.GOOS + "/" + runtime.GOARCH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			m := newMirror(t, nil)
			img := m.push(t, tt.repo, "v1")
			hosts := WriteHostsDir(t, upstreamHost, m.srv.URL)
			ref := upstreamHost + "/" + tt.repo + ":v1"

			out, err := d.Pull(ctx, ref, hosts, tt.platform)
			if err != nil {
				t.Fatalf("Pull: %v\n%s", err, out)
			}
			got, err := d.ImageDigest(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			want, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if got != want.String() {
				t.Errorf("ImageDigest(%s) = %s, want %s", ref, got, want)
			}

			reqs := m.requests()
			if len(reqs) == 0 {
				t.Fatal("the mirror saw no request from containerd")
			}
			var blobs []string
			for _, r := range reqs {
				if r.NS != upstreamHost {
					t.Errorf("%s %s: ns = %q, want %q", r.Method, r.Path, r.NS, upstreamHost)
				}
				if r.Method == http.MethodGet && strings.Contains(r.Path, "/blobs/") {
					blobs = append(blobs, r.Path)
				}
			}
			if diff := cmp.Diff(blobPaths(t, img, tt.repo), sorted(blobs)); diff != "" {
				t.Errorf("blobs fetched through the mirror (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPullDenied(t *testing.T) {
	d := Start(t)
	manifests := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }
	tests := []struct {
		name  string
		deny  func(*http.Request) bool
		debug bool
		want  []string // substrings of ctr's output
		not   []string // substrings that must not appear
	}{
		{
			// Resolve is a HEAD: containerd has no body to read and prints only the status.
			name: "manifest denied",
			deny: manifests,
			want: []string{"failed with status code [manifests v1]: 403 Forbidden"},
			not:  []string{"test reason"},
		},
		{
			// With --debug ctr logs the response headers of the HEAD, so a reason in a header shows.
			name:  "manifest denied, ctr --debug",
			deny:  manifests,
			debug: true,
			want:  []string{`response.header.warning="299 - \"portcullis: denied: test reason\""`, "403 Forbidden"},
		},
		{
			name: "manifest GET denied after a successful resolve",
			deny: func(r *http.Request) bool { return manifests(r) && r.Method == http.MethodGet },
			want: []string{"403 Forbidden - Server message: denied: portcullis: denied: test reason"},
		},
		{
			name: "blob denied",
			deny: func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/") },
			want: []string{"403 Forbidden - Server message: denied: portcullis: denied: test reason"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			m := newMirror(t, tt.deny)
			repo := fmt.Sprintf("denied/case%d", i)
			m.push(t, repo, "v1")
			hosts := WriteHostsDir(t, upstreamHost, m.srv.URL)
			ref := upstreamHost + "/" + repo + ":v1"

			var out string
			var err error
			if tt.debug {
				out, err = d.Ctr(ctx, "--debug", "images", "pull", "--hosts-dir", hosts, ref)
			} else {
				out, err = d.Pull(ctx, ref, hosts, "")
			}
			if err == nil {
				t.Fatalf("Pull succeeded, want a denial:\n%s", out)
			}
			for _, s := range tt.want {
				if !strings.Contains(out, s) {
					t.Errorf("ctr output lacks %q:\n%s", s, out)
				}
			}
			// The upstream itself must never be tried, not even after the mirror's error.
			for _, s := range append(tt.not, "https://"+upstreamHost, "trying next host") {
				if strings.Contains(out, s) {
					t.Errorf("ctr output has %q:\n%s", s, out)
				}
			}
			if _, err := d.ImageDigest(ctx, ref); !errors.Is(err, ErrImageNotFound) {
				t.Errorf("ImageDigest after a denied pull: err = %v, want ErrImageNotFound", err)
			}
		})
	}
}

// blobPaths returns the sorted /v2/<repo>/blobs/<digest> paths of img's config and layers.
func blobPaths(t *testing.T, img v1.Image, repo string) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/v2/" + repo + "/blobs/" + m.Config.Digest.String()}
	for _, l := range m.Layers {
		paths = append(paths, "/v2/"+repo+"/blobs/"+l.Digest.String())
	}
	return sorted(paths)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
