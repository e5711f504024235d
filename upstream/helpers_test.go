package upstream

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry is a real in-process OCI registry. Seeding goes straight to the registry; the client
// under test talks to front, which puts the test's middleware in the way.
type testRegistry struct {
	seed  *httptest.Server
	front *httptest.Server
	host  string // seed host, for name.ParseReference
}

type middleware func(http.Handler) http.Handler

func newTestRegistry(t *testing.T, referrers bool, mws ...middleware) *testRegistry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers))
	var h http.Handler = reg
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	tr := &testRegistry{seed: httptest.NewServer(reg), front: httptest.NewServer(h)}
	t.Cleanup(tr.seed.Close)
	t.Cleanup(tr.front.Close)
	tr.host = strings.TrimPrefix(tr.seed.URL, "http://")
	return tr
}

func (r *testRegistry) url(t *testing.T) *url.URL {
	t.Helper()
	u, err := url.Parse(r.front.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// pushImage writes a random image to repo:tag and returns it.
func (r *testRegistry) pushImage(t *testing.T, repo, tag string, size int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	r.write(t, repo+":"+tag, img)
	return img
}

func (r *testRegistry) write(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	nref, err := name.ParseReference(r.host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nref, img); err != nil {
		t.Fatal(err)
	}
}

func newClient(t *testing.T, u *url.URL, opts ...Option) *Client {
	t.Helper()
	c, err := New("test", u, append([]Option{WithRetries(3, time.Millisecond), WithTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func rawManifest(t *testing.T, img v1.Image) []byte {
	t.Helper()
	b, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tlsConfig() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }
