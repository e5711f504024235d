package upstream

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestReferrersAPIKept: a registry that answered the referrers API keeps being believed to have it when it once
// answers 404 (a compliant one never does; a front end's hiccup must not make the verifier skip the API), and the
// answer that said 404 is still reported as unsupported, for the caller to read the fallback tag.
func TestReferrersAPIKept(t *testing.T) {
	var hiccup atomic.Bool
	reg := newTestRegistry(t, true, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hiccup.Load() && strings.Contains(r.URL.Path, "/referrers/") {
				http.NotFound(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	img := reg.pushImage(t, "acme/app", "v1", 256)
	c := newClient(t, reg.url(t))
	dgst := digest.Digest(mustDigest(t, img).String())
	if _, ok, err := c.Referrers(context.Background(), "acme/app", dgst, ""); err != nil || !ok {
		t.Fatalf("supported %v, err %v; want the API", ok, err)
	}
	hiccup.Store(true)
	if _, ok, err := c.Referrers(context.Background(), "acme/app", dgst, ""); err != nil || ok {
		t.Fatalf("supported %v, err %v; want this answer unsupported", ok, err)
	}
	if supported, known := c.ReferrersAPI(); !supported || !known {
		t.Errorf("after one 404 the client says supported %v, known %v; want still known supported", supported, known)
	}
}
