package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// failFirst answers the first n requests whose path contains sub with status (and Retry-After).
func failFirst(n int64, sub string, status int, retryAfter string, hits *atomic.Int64) middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, sub) {
				next.ServeHTTP(w, r)
				return
			}
			if hits.Add(1) <= n {
				if retryAfter != "" {
					w.Header().Set("Retry-After", retryAfter)
				}
				w.WriteHeader(status)
				io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int64
		status   int
		retries  int
		wantErr  error
		wantHits int64
	}{
		{"503 twice then success", 2, http.StatusServiceUnavailable, 3, nil, 3},
		{"502 then success", 1, http.StatusBadGateway, 3, nil, 2},
		{"exhausted", 10, http.StatusServiceUnavailable, 3, ErrUnavailable, 4},
		{"no retries", 10, http.StatusInternalServerError, 0, ErrUnavailable, 1},
		{"501 not retried", 10, http.StatusNotImplemented, 3, ErrUnavailable, 1},
		{"404 not retried", 10, http.StatusNotFound, 3, ErrNotFound, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int64
			reg := newTestRegistry(t, true, failFirst(tc.failures, "/manifests/", tc.status, "", &hits))
			reg.pushImage(t, "acme/app", "v1", 128)
			c := newClient(t, reg.url(t), WithRetries(tc.retries, time.Millisecond))
			_, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if hits.Load() != tc.wantHits {
				t.Errorf("attempts = %d, want %d", hits.Load(), tc.wantHits)
			}
		})
	}
}

// The one test that waits in real time: a 429 with Retry-After: 1 is honoured.
func TestRetryAfterHonoured(t *testing.T) {
	var hits atomic.Int64
	reg := newTestRegistry(t, true, failFirst(1, "/manifests/", http.StatusTooManyRequests, "1", &hits))
	reg.pushImage(t, "acme/app", "v1", 128)
	c := newClient(t, reg.url(t), WithRetries(1, time.Millisecond))
	start := time.Now()
	if _, err := c.Resolve(context.Background(), "acme/app", "v1", nil); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("retried after %v, want >= 1s", el)
	}
}

func TestRetryAfterBeyondDeadlineGivesUp(t *testing.T) {
	var hits atomic.Int64
	reg := newTestRegistry(t, true, failFirst(10, "/manifests/", http.StatusTooManyRequests, "20", &hits))
	c := newClient(t, reg.url(t), WithTimeout(500*time.Millisecond))
	start := time.Now()
	_, err := c.Resolve(context.Background(), "acme/app", "v1", nil)
	if !errors.Is(err, ErrUnavailable) || hits.Load() != 1 || time.Since(start) > 400*time.Millisecond {
		t.Errorf("err %v after %d hits in %v; want ErrUnavailable at once", err, hits.Load(), time.Since(start))
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"1", time.Second, true},
		{"0", 0, true},
		{"-1", 0, false},
		{"120", maxRetryAfter, true},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second, true},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0, true},
		{now.Add(time.Hour).Format(http.TimeFormat), maxRetryAfter, true},
		{"soon", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseRetryAfter(tc.in, now)
			if got != tc.want || ok != tc.ok {
				t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	rt := &retryTransport{base: 200 * time.Millisecond}
	for attempt, max := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, maxBackoff, maxBackoff, maxBackoff} {
		for range 20 {
			if d := rt.backoff(attempt); d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, max/2, max)
			}
		}
	}
}

func TestTimeouts(t *testing.T) {
	slowHeaders := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/tags/") {
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	// The blob answers at once but dribbles its body for longer than the timeout.
	slowBody := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/blobs/") {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Length", "3")
			w.WriteHeader(http.StatusOK)
			for _, b := range []string{"a", "b", "c"} {
				io.WriteString(w, b)
				w.(http.Flusher).Flush()
				time.Sleep(150 * time.Millisecond)
			}
		})
	}
	reg := newTestRegistry(t, true, slowHeaders, slowBody)
	c := newClient(t, reg.url(t), WithTimeout(200*time.Millisecond))

	start := time.Now()
	if _, _, err := c.Tags(context.Background(), "acme/app", 0, ""); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("tags: err = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("tags took %v, the timeout is 200ms", el)
	}

	rc, size, err := c.Blob(context.Background(), "acme/app", digest.FromString("abc"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "abc" || size != 3 {
		t.Errorf("blob body %q size %d err %v: the timeout must not cover the body", b, size, err)
	}

	// The caller's own cancellation is not ErrUnavailable.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.Tags(ctx, "acme/app", 0, ""); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("cancelled: err = %v, want context.Canceled only", err)
	}
}

func TestBlobTimeToFirstByte(t *testing.T) {
	stall := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		})
	}
	reg := newTestRegistry(t, true, stall)
	c := newClient(t, reg.url(t), WithTimeout(100*time.Millisecond))
	start := time.Now()
	_, _, err := c.Blob(context.Background(), "acme/app", digest.FromString("abc"))
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Errorf("err = %v after %v, want ErrUnavailable after ~100ms", err, time.Since(start))
	}
}
