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
