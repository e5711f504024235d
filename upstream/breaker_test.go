package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestCircuitBreaker: a 5xx storm opens the breaker after the threshold; while open no request reaches the
// upstream and calls fail at once with ErrUnavailable; after the cooldown one probe goes out, and once the
// upstream is back the breaker closes by itself.
func TestCircuitBreaker(t *testing.T) {
	var down atomic.Bool
	var hits atomic.Int64
	storm := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	reg := newTestRegistry(t, true, storm)
	reg.pushImage(t, "acme/app", "v1", 128)
	const threshold, cooldown = 4, 300 * time.Millisecond
	var mu sync.Mutex
	var changes []bool // what the breaker observer heard: true opened, false closed
	heard := func() []bool { mu.Lock(); defer mu.Unlock(); return slices.Clone(changes) }
	c := newClient(t, reg.url(t), WithRetries(3, time.Millisecond), WithCircuitBreaker(threshold, cooldown),
		WithBreakerObserver(func(open bool) { mu.Lock(); changes = append(changes, open); mu.Unlock() }))
	ctx := context.Background()
	if _, err := c.Resolve(ctx, "acme/app", "v1", nil); err != nil {
		t.Fatal(err)
	}

	down.Store(true)
	hits.Store(0)
	for i := range 20 {
		start := time.Now()
		_, err := c.Resolve(ctx, "acme/app", "v1", nil)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d in the storm: err = %v, want ErrUnavailable", i, err)
		}
		if i > 0 && (!strings.Contains(err.Error(), "circuit open") || time.Since(start) > cooldown/2) {
			t.Errorf("call %d: %v after %v, want a fast circuit-open error", i, err, time.Since(start))
		}
	}
	if n := hits.Load(); n != threshold {
		t.Errorf("20 calls in a 5xx storm reached the upstream %d times, want %d (the threshold)", n, threshold)
	}
	if got := heard(); !slices.Equal(got, []bool{true}) {
		t.Errorf("observer heard %v in the storm, want one opening [true]", got)
	}

	t.Run("probe while still down", func(t *testing.T) {
		time.Sleep(cooldown + 50*time.Millisecond)
		hits.Store(0)
		_, err := c.Resolve(ctx, "acme/app", "v1", nil)
		if !errors.Is(err, ErrUnavailable) || hits.Load() != 1 {
			t.Errorf("after the cooldown: err %v, %d upstream hits; want one probe, failed", err, hits.Load())
		}
		if _, err := c.Resolve(ctx, "acme/app", "v1", nil); err == nil || !strings.Contains(err.Error(), "circuit open") {
			t.Errorf("a failed probe must reopen the breaker: %v", err)
		}
		if got := heard(); !slices.Equal(got, []bool{true}) {
			t.Errorf("observer heard %v after a failed probe, want still [true] (no change)", got)
		}
	})
	t.Run("recovers", func(t *testing.T) {
		down.Store(false)
		time.Sleep(cooldown + 50*time.Millisecond)
		for i := range 3 {
			if _, err := c.Resolve(ctx, "acme/app", "v1", nil); err != nil {
				t.Fatalf("call %d after the upstream came back: %v", i, err)
			}
		}
		if got := heard(); !slices.Equal(got, []bool{true, false}) {
			t.Errorf("observer heard %v, want [true false]: opened, then closed by the probe", got)
		}
	})
	t.Run("404s do not open it", func(t *testing.T) {
		for range 2 * threshold {
			if _, err := c.Resolve(ctx, "acme/app", "nope", nil); !errors.Is(err, ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		}
	})
	t.Run("a cancelled caller does not count", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		for range 2 * threshold {
			_, _ = c.Resolve(cctx, "acme/app", "v1", nil)
		}
		if _, err := c.Resolve(ctx, "acme/app", "v1", nil); err != nil {
			t.Errorf("after cancelled calls: %v", err)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		down.Store(true)
		defer down.Store(false)
		c := newClient(t, reg.url(t), WithRetries(0, time.Millisecond), WithCircuitBreaker(0, 0))
		hits.Store(0)
		for range 3 * defaultBreakerFailures {
			_, _ = c.Resolve(ctx, "acme/app", "v1", nil)
		}
		if n := hits.Load(); n != 3*defaultBreakerFailures {
			t.Errorf("%d hits, want every call to go out", n)
		}
	})
}

func TestCircuitBreakerOptions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int
		cooldown time.Duration
		ok       bool
	}{
		{"default-like", 10, 30 * time.Second, true},
		{"disabled", 0, 0, true},
		{"negative", -1, time.Second, false},
		{"no cooldown", 3, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New("x", &url.URL{Scheme: "https", Host: "example.com"}, WithCircuitBreaker(tc.failures, tc.cooldown))
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestBlobBodyStalls: a body that stops halfway is cut off after the idle timeout with ErrUnavailable, however
// long the caller's context lives; a slow body that keeps moving is not.
func TestBlobBodyStalls(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gap     time.Duration // pause before the second half
		wantErr bool
	}{
		{"stalls halfway", 3 * time.Second, true},
		{"slow but moving", 100 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Repeat("x", 8192)
			reg := newTestRegistry(t, true, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", "8192")
					w.WriteHeader(http.StatusOK)
					for i, half := range []string{body[:4096], body[4096:]} {
						if i == 1 {
							select {
							case <-time.After(tc.gap):
							case <-r.Context().Done():
								return
							}
						}
						io.WriteString(w, half)
						w.(http.Flusher).Flush()
					}
				})
			})
			c := newClient(t, reg.url(t), WithBodyIdleTimeout(400*time.Millisecond))
			rc, _, err := c.Blob(context.Background(), "acme/app", digest.FromString(body))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			start := time.Now()
			b, err := io.ReadAll(rc)
			if !tc.wantErr {
				if err != nil || len(b) != len(body) {
					t.Errorf("%d bytes, err %v", len(b), err)
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no data for") || len(b) != 4096 {
				t.Errorf("%d bytes, err %v; want the first half, then ErrUnavailable naming the stall", len(b), err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("cut off after %v, want ~400ms", el)
			}
		})
	}
}

// TestOnlyBlobsRedirectOffOrigin: a blob may be redirected to another host (object storage); a manifest, tag list
// or referrers request redirected off the registry's origin is refused, and nothing is fetched there.
func TestOnlyBlobsRedirectOffOrigin(t *testing.T) {
	var otherHits atomic.Int64
	var seedURL string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		http.Redirect(w, r, seedURL+r.URL.Path, http.StatusTemporaryRedirect) // back to the real registry
	}))
	t.Cleanup(other.Close)
	reg := newTestRegistry(t, true, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v2/" {
				http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	seedURL = reg.seed.URL
	img := reg.pushImage(t, "acme/app", "v1", 128)
	c := newClient(t, reg.url(t), WithAllowPrivateAddresses(true))
	ctx := context.Background()
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	md := mustDigest(t, img)
	for _, tc := range []struct {
		name string
		call func() error
		ok   bool
	}{
		{"manifest", func() error { _, _, _, err := c.Manifest(ctx, "acme/app", md.String(), nil); return err }, false},
		{"resolve", func() error { _, err := c.Resolve(ctx, "acme/app", "v1", nil); return err }, false},
		{"tags", func() error { _, _, err := c.Tags(ctx, "acme/app", 0, ""); return err }, false},
		{"referrers", func() error { _, _, err := c.Referrers(ctx, "acme/app", digest.Digest(md.String()), ""); return err }, false},
		{"blob", func() error {
			rc, _, err := c.Blob(ctx, "acme/app", digest.Digest(ld.String()))
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			otherHits.Store(0)
			err := tc.call()
			if tc.ok {
				if err != nil || otherHits.Load() != 1 {
					t.Errorf("err %v, %d hits on the other host; want the redirect followed", err, otherHits.Load())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "only blobs") || otherHits.Load() != 0 {
				t.Errorf("err %v, %d hits on the other host; want a refusal before any request there", err, otherHits.Load())
			}
		})
	}
}
