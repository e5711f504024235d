package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/internal/s3test"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
)

// TestS3Fleet runs the fleet layout on real parts: two replicas whose content store is one bucket on a real S3 server
// (versitygw, tools/versitygw, through CNCF Distribution's s3aws driver) and whose shared state is one Redis. A blob one
// replica fetched is served by the other from S3 without another upstream fetch; with the S3 server stopped in the
// middle of a pull, that pull and pulls of content cached in S3 keep working from the upstream; after it returns,
// everything in the bucket is whole (its bytes hash to its digest) and is served whole.
//
// It builds versitygw (minutes of CPU on a cold cache), so it runs only with PORTCULLIS_S3=1: `make test-s3`.
func TestS3Fleet(t *testing.T) {
	if os.Getenv("PORTCULLIS_S3") == "" {
		t.Skip("set PORTCULLIS_S3=1 (make test-s3): builds and runs the versitygw S3 server")
	}
	s3, err := s3test.Start(t)
	if err != nil {
		t.Fatal(err)
	}
	redisAddr := cachetest.StartRedis(t)
	up := registrytest.New(t, registrytest.WithStorageDir(t.TempDir()))
	client, err := upstream.New(up.Host(), up.URL(), upstream.WithRetries(2, 10*time.Millisecond), upstream.WithAllowPrivateAddresses(true))
	if err != nil {
		t.Fatal(err)
	}
	replica := func() (*httptest.Server, *cache.Content) {
		driver, err := cache.NewDriver("s3", s3.DriverParameters(5<<20))
		if err != nil {
			t.Fatal(err)
		}
		content, err := cache.NewContent(driver)
		if err != nil {
			t.Fatal(err)
		}
		kv := cache.NewRedis(cache.RedisClient([]string{redisAddr}, "", "", "", 0), cache.WithKeyPrefix("fleet:"))
		t.Cleanup(func() { _ = kv.Close() })
		p, err := proxy.New([]*proxy.Upstream{{Name: up.Host(), Registry: client}}, "", content, kv,
			proxy.WithLogger(testLogger(t)), proxy.WithSpoolDir(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		return srv, content
	}
	a, contentA := replica()
	b, _ := replica()
	ctx := context.Background()

	const repo = "fleet/app"
	first := up.PushBlob(t, repo, 8<<20, 1)
	path := func(d digest.Digest) string { return "/v2/" + repo + "/blobs/" + d.String() }
	if err := getVerified(a.URL+path(first), first); err != nil {
		t.Fatalf("replica A, cold: %v", err)
	}
	waitStored(t, contentA, first)
	gets := func(d digest.Digest) int { return up.Hits().CountPath(http.MethodGet, path(d)) }
	if err := getVerified(b.URL+path(first), first); err != nil {
		t.Fatalf("replica B, warm: %v", err)
	}
	if n := gets(first); n != 1 {
		t.Errorf("upstream GETs of a blob both replicas served: %d, want 1 (B reads what A put in S3)", n)
	}

	t.Run("S3 stops mid-pull", func(t *testing.T) {
		second := up.PushBlob(t, repo, 64<<20, 2)
		resp, err := http.Get(a.URL + path(second))
		if err != nil {
			t.Fatal(err)
		}
		h := digest.Canonical.Digester()
		if _, err := io.CopyN(h.Hash(), resp.Body, 4<<20); err != nil {
			t.Fatalf("first 4 MiB: %v", err)
		}
		s3.Stop()
		_, err = io.Copy(h.Hash(), resp.Body)
		resp.Body.Close()
		if err != nil || h.Digest() != second {
			t.Errorf("the pull the S3 server stopped under: %v, digest %s, want %s", err, h.Digest(), second)
		}
		// Content cached in S3, and not yet cached anywhere: both come from the upstream while S3 is away.
		for _, d := range []digest.Digest{first, second} {
			for name, srv := range map[string]*httptest.Server{"A": a, "B": b} {
				if err := getVerified(srv.URL+path(d), d); err != nil {
					t.Errorf("replica %s, S3 down, blob %s: %v", name, d.Encoded()[:12], err)
				}
			}
		}
		if err := s3.Restart(); err != nil {
			t.Fatal(err)
		}
		// Back: what the bucket holds is whole, and both replicas serve both blobs whole.
		for _, d := range []digest.Digest{first, second} {
			if err := bucketWhole(ctx, contentA, d); err != nil {
				t.Errorf("after S3 returned: %v", err)
			}
			for name, srv := range map[string]*httptest.Server{"A": a, "B": b} {
				if err := getVerified(srv.URL+path(d), d); err != nil {
					t.Errorf("replica %s, S3 back, blob %s: %v", name, d.Encoded()[:12], err)
				}
			}
		}
	})
}

// getVerified GETs url and checks a 200 whose body hashes to d.
func getVerified(url string, d digest.Digest) error {
	c := &http.Client{Timeout: 3 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := digest.Canonical.Digester()
	n, err := io.Copy(h.Hash(), resp.Body)
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case err != nil:
		return fmt.Errorf("after %d bytes: %w", n, err)
	case h.Digest() != d:
		return fmt.Errorf("WRONG BYTES: %d bytes hash to %s, want %s", n, h.Digest(), d)
	}
	return nil
}

// waitStored waits (generously: the machine is shared) until the content store holds d.
func waitStored(t *testing.T, c *cache.Content, d digest.Digest) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := c.Stat(context.Background(), d); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not in the content store 3 minutes after it was served", d)
		}
	}
}

// bucketWhole checks that the content store either lacks d or holds bytes that hash to d.
func bucketWhole(ctx context.Context, c *cache.Content, d digest.Digest) error {
	if _, err := c.Stat(ctx, d); err != nil {
		return nil // absent (or unreadable): a replica fetches it again
	}
	rc, err := c.Open(ctx, d, 0)
	if err != nil {
		return fmt.Errorf("%s: listed but cannot be opened: %v", d, err)
	}
	defer rc.Close()
	h := digest.Canonical.Digester()
	if _, err := io.Copy(h.Hash(), rc); err != nil {
		return fmt.Errorf("%s: reading it back: %v", d, err)
	}
	if h.Digest() != d {
		return fmt.Errorf("HALF-WRITTEN: the bucket's %s hashes to %s", d, h.Digest())
	}
	return nil
}
