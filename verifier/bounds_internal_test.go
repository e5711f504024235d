package verifier

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestCapped: every body read through the session transport is bounded by
// its kind, whether or not the server says how long it is.
func TestCapped(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		if code, _ := strconv.Atoi(r.URL.Query().Get("code")); code != 0 {
			w.WriteHeader(code)
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), n))
	}))
	t.Cleanup(srv.Close)
	const blob = 1000
	client := &http.Client{Transport: capped{next: http.DefaultTransport, blob: blob}}

	tests := []struct {
		name     string
		path     string // path and query, n = body length
		wantLen  int
		tooLarge bool
	}{
		{name: "manifest at the bound", path: "/v2/a/manifests/x?n=" + strconv.Itoa(maxManifestSize), wantLen: maxManifestSize},
		{name: "manifest past the bound", path: "/v2/a/manifests/x?n=" + strconv.Itoa(maxManifestSize+1), tooLarge: true},
		{name: "manifest past the bound, chunked", path: "/v2/a/manifests/x?chunked=1&n=" + strconv.Itoa(maxManifestSize+1), tooLarge: true},
		{name: "referrers past the bound", path: "/v2/a/referrers/sha256:x?n=" + strconv.Itoa(maxManifestSize+1), tooLarge: true},
		{name: "blob at the bound", path: "/v2/a/blobs/x?n=1000", wantLen: blob},
		{name: "blob past the bound", path: "/v2/a/blobs/x?n=1001", tooLarge: true},
		{name: "blob past the bound, chunked", path: "/v2/a/blobs/x?chunked=1&n=1001", tooLarge: true},
		{name: "redirected download past the bound", path: "/bucket/object?chunked=1&n=5000", tooLarge: true},
		{name: "error body truncated", path: "/v2/a/blobs/x?code=500&chunked=1&n=" + strconv.Itoa(1<<20), wantLen: maxErrorBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			var be *boundError
			switch {
			case tt.tooLarge && !errors.As(err, &be):
				t.Errorf("read %d bytes, err %v; want a bound error", len(b), err)
			case !tt.tooLarge && (err != nil || len(b) != tt.wantLen):
				t.Errorf("read %d bytes, err %v; want %d", len(b), err, tt.wantLen)
			}
		})
	}
}

func TestBytesString(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{1 << 20: "1 MiB", 16 << 20: "16 MiB", 64 << 10: "64 KiB", 1500: "1500 bytes", 0: "0 bytes"} {
		if got := bytesString(n); got != want {
			t.Errorf("bytesString(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestCappedBudget: the bodies read through one session transport draw on
// one budget; a body that says it does not fit is refused unread, and one
// that does not say is cut where the budget ends.
func TestCappedBudget(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		if code, _ := strconv.Atoi(r.URL.Query().Get("code")); code != 0 {
			w.WriteHeader(code)
		}
		if r.URL.Query().Get("chunked") != "" {
			w.(http.Flusher).Flush() // or the server sets the length of a small body itself
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), n))
	}))
	t.Cleanup(srv.Close)
	const limit = 1000
	b := newBudget("attestations", limit)
	client := &http.Client{Transport: capped{next: srv.Client().Transport, blob: 10 * limit, budget: b}}

	steps := []struct {
		path     string
		wantLen  int
		overflow string // the budget's reason, when the read goes past it
		wantUsed int64
	}{
		{path: "/v2/a/blobs/x?n=600", wantLen: 600, wantUsed: 600},
		{path: "/v2/a/blobs/x?code=404&n=5000", wantLen: 5000, wantUsed: 600}, // error bodies are not counted
		{path: "/v2/a/manifests/x?n=500", overflow: "attestations of this image need more than 1000 bytes of evidence: /v2/a/manifests/x is 500 bytes, after 600 bytes read", wantUsed: 600},
		{path: "/v2/a/manifests/x?chunked=1&n=500", wantLen: 400, overflow: "attestations of this image need more than 1000 bytes of evidence: reading /v2/a/manifests/x went past it, after 1000 bytes read", wantUsed: 1000},
		{path: "/v2/a/blobs/y?n=0", wantUsed: 1000},
	}
	for _, s := range steps {
		resp, err := client.Get(srv.URL + s.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case len(got) != s.wantLen:
			t.Errorf("%s: read %d bytes, err %v; want %d", s.path, len(got), err, s.wantLen)
		case s.overflow == "" && err != nil:
			t.Errorf("%s: %v", s.path, err)
		case s.overflow != "" && (err == nil || err.Error() != s.overflow || !isBudget(err)):
			t.Errorf("%s: read %d bytes, err %v; want %q", s.path, len(got), err, s.overflow)
		}
		if used := b.used.Load(); used != s.wantUsed {
			t.Errorf("%s: %d bytes of the budget used, want %d", s.path, used, s.wantUsed)
		}
	}
}
