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

// TestCommitWaitsForReaders: a verified download's commit (an upload to S3, a copy into the store) starts when the
// clients that were reading it are done, so that it does not take the CPU and disk their streams are using; a
// client that keeps reading does not hold it back for longer than commitWait.
func TestCommitWaitsForReaders(t *testing.T) {
	for _, tc := range []struct {
		name       string
		commitWait time.Duration
		readsAll   bool // the client reads the rest before commitWait is over
	}{
		{"the client finishes", time.Minute, true},
		{"the client dawdles", 300 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBlobEnv(t, []registrytest.Option{registrytest.WithStorageDir(t.TempDir())}) // fast for 32 MiB
			started := make(chan struct{})
			slow := &slowStore{Store: e.store, release: make(chan struct{}), started: started}
			close(slow.release) // Put goes at once: what is measured is when it starts
			e.p.store, e.p.blobs.store, e.p.blobs.commitWait = slow, slow, tc.commitWait
			const size = 32 << 20 // more than the sockets hold: the server streams as long as the client reads
			dgst := e.up.PushBlob(t, "acme/app", size, 1)
			resp, err := http.Get(e.srv.URL + "/v2/acme/app/blobs/" + dgst.String())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := io.ReadFull(resp.Body, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			e.waitVerified(t, dgst)
			if !tc.readsAll {
				select {
				case <-started:
				case <-time.After(10 * time.Second):
					t.Fatal("the commit did not start while the client dawdled past commitWait")
				}
				return
			}
			select {
			case <-started:
				t.Fatal("the commit started while its client was still reading")
			case <-time.After(300 * time.Millisecond):
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != size-1 {
				t.Fatalf("read %d more bytes, %v; want %d", n, err, size-1)
			}
			resp.Body.Close()
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("the commit did not start after the client was done")
			}
		})
	}
}

// waitVerified waits until the in-flight download of dgst has fetched and verified the whole blob.
func (e *blobEnv) waitVerified(t *testing.T, dgst digest.Digest) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		e.p.blobs.mu.Lock()
		d := e.p.blobs.inflight[dgst]
		e.p.blobs.mu.Unlock()
		if d != nil {
			if o := d.outcome.Load(); o != nil {
				if o.err != nil {
					t.Fatalf("download failed: %v", o.err)
				}
				return
			}
		}
	}
	t.Fatal("the download did not verify in 10 s")
}
