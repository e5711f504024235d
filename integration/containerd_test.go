package integration

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/containerdtest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// TestContainerdPullThroughMirror pulls with containerd's own client, configured the way nodes are: a hosts.toml
// mirror pointing at Portcullis. containerd then sends ns=<registry> on every request.
func TestContainerdPullThroughMirror(t *testing.T) {
	d := containerdtest.Start(t)
	e := newEnv(t)
	idx := e.up.PushRandomIndex(t, "ctr/app:v1", registrytest.Platforms()...)
	want, _ := idx.Digest()
	hosts := containerdtest.WriteHostsDir(t, e.up.Host(), e.srv.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := e.up.Ref("ctr/app:v1")
	out, err := d.Pull(ctx, ref, hosts, "linux/arm64")
	if err != nil {
		t.Fatalf("ctr pull through the mirror: %v\n%s", err, out)
	}
	got, err := d.ImageDigest(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got != want.String() {
		t.Errorf("containerd stored %s, want %s", got, want)
	}
	var withNS, blobs int
	for _, r := range e.seen.all() {
		if strings.Contains(r, "ns="+url.QueryEscape(e.up.Host())) {
			withNS++
		}
		if strings.Contains(r, "/blobs/") {
			blobs++
		}
	}
	if withNS == 0 || blobs == 0 {
		t.Errorf("proxy saw %d requests with ns= and %d blob requests: %v", withNS, blobs, e.seen.all())
	}
}
