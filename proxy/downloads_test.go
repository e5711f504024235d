package proxy

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/registrytest"
)

// slowStore is a content store whose Put of a blob waits until release is closed: a slow commit (an upload to S3).
type slowStore struct {
	Store
	release chan struct{}
	started chan struct{} // closed when the first Put begins
	puts    atomic.Int32
}

func (s *slowStore) Put(ctx context.Context, dgst digest.Digest, r io.Reader) (int64, error) {
	if s.puts.Add(1) == 1 {
		close(s.started)
	}
	select {
	case <-s.release:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Store.Put(ctx, dgst, r)
}

// TestColdBlobDoesNotWaitForStoreCommit: a cold blob's clients get its last byte when the digest verifies, not
// when the content store has committed it; a client arriving while the commit runs is served from the verified
// spool without another upstream fetch; and once the download leaves the in-flight set the blob is in the store.
func TestColdBlobDoesNotWaitForStoreCommit(t *testing.T) {
	e := newBlobEnv(t, nil)
	slow := &slowStore{Store: e.store, release: make(chan struct{}), started: make(chan struct{})}
	e.p.store, e.p.blobs.store = slow, slow
	released := false
	release := func() {
		if !released {
			released = true
			close(slow.release)
		}
	}
	t.Cleanup(release)
	dgst, size := e.layer(t, "acme/app", 256<<10)
	e.up.Hits().Reset()
	path := "/v2/acme/app/blobs/" + dgst.String()

	get := func(name string) {
		t.Helper()
		done := make(chan struct{})
		var resp *http.Response
		var body []byte
		var err error
		go func() {
			defer close(done)
			resp, body, err = e.do(t, http.MethodGet, path)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			release()
			<-done
			t.Fatalf("%s: the body was not complete until the store commit ended", name)
		}
		if err != nil || resp.StatusCode != http.StatusOK || int64(len(body)) != size || digest.FromBytes(body) != dgst {
			t.Fatalf("%s: status %v, %d bytes, err %v; want 200 and the %d-byte blob", name, resp, len(body), err, size)
		}
	}
	get("first client")
	<-slow.started
	if n := e.inflight(); n != 1 {
		t.Fatalf("%d downloads in flight while the commit runs; want 1 (it stays until committed)", n)
	}
	get("client arriving during the commit")
	if n := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); n != 1 {
		t.Errorf("upstream saw %d blob GETs; want 1 (the second client is served from the spool)", n)
	}
	if resp, _, err := e.do(t, http.MethodHead, path); err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != size {
		t.Fatalf("HEAD during the commit: %v %v; want 200 with Content-Length %d", resp, err, size)
	}
	if n := e.up.Hits().Total(); n != 1 {
		t.Errorf("upstream saw %d requests; want 1 (a HEAD during the commit is answered from the download)", n)
	}

	release()
	e.waitSpoolEmpty(t)
	if _, err := e.store.Get(context.Background(), dgst, size); err != nil { // Get verifies the digest
		t.Fatalf("blob not in the store after the download left the in-flight set: %v", err)
	}
	get("client after the commit")
	if n := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); n != 1 {
		t.Errorf("upstream saw %d blob GETs; want 1 (the last client is served from the store)", n)
	}
}
