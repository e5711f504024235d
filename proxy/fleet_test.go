package proxy

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// TestForgedLeaseDelaysButDoesNotStop: leases are unsigned, so a party that can write to the shared store can hold
// the lease on a tag, a manifest or a blob for ever. A replica waits for the holder's result at most its lease wait
// and then does the work itself: the pull is late, never refused, and still verified.
func TestForgedLeaseDelaysButDoesNotStop(t *testing.T) {
	e := newBlobEnv(t, nil)
	e.p.leaseWait, e.p.blobLeaseWait, e.p.blobs.leaseWait = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	img := e.up.PushRandomImage(t, "acme/app:v1", 1, 4096)
	md, _ := img.Digest()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	mt, _ := img.MediaType()
	leaser := e.p.kv.(cache.Leaser)
	ctx := context.Background()
	for _, name := range []string{
		"tag/" + e.up.Host() + "/acme/app:v1",
		"manifest/" + md.String(),
		"blob/" + ld.String(),
	} {
		if l, err := leaser.Lease(ctx, name, time.Hour); err != nil || l == nil {
			t.Fatalf("forge lease %s: %v %v", name, l, err)
		}
	}
	for _, tc := range []struct{ name, path, accept string }{
		{"manifest by tag", "/v2/acme/app/manifests/v1", string(mt)},
		{"blob", "/v2/acme/app/blobs/" + ld.String(), ""},
	} {
		start := time.Now()
		resp, body, err := e.do(t, http.MethodGet, tc.path, "Accept", tc.accept)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s under a forged lease: %v %v", tc.name, resp, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s took %s under a forged lease; want about the lease wait", tc.name, took)
		}
		if tc.name == "blob" && digest.FromBytes(body).String() != ld.String() {
			t.Errorf("blob bytes do not match %s", ld)
		}
	}
}
