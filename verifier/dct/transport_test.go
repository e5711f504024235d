package dct

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBoundedTransport checks the two bounds on a notary server: a response body larger than the cap fails
// the read, and a server that stalls fails the request at its deadline.
func TestBoundedTransport(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = io.WriteString(w, strings.Repeat("x", 1025))
		case "/exact":
			_, _ = io.WriteString(w, strings.Repeat("x", 1024))
		case "/stall":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	b := &bounded{next: http.DefaultTransport, timeout: 200 * time.Millisecond, max: 1024}
	tests := []struct {
		path    string
		wantErr func(error) bool
	}{
		{"/exact", func(err error) bool { return err == nil }},
		{"/big", func(err error) bool { return errors.Is(err, errTooLarge) }},
		{"/stall", func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			resp, err := b.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if !tt.wantErr(err) {
				t.Errorf("GET %s: error %v", tt.path, err)
			}
		})
	}
}
