package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A denied HEAD carries its reason in the HTTP/1.1 status line (containerd shows nothing else of a HEAD), over
// plain HTTP and TLS; HTTP/2 has no reason phrase and gets the plain status.
func TestHeadDenialReasonPhrase(t *testing.T) {
	const reason = "portcullis: ghcr.io/acme/app@sha256:ab denied by rule \"default\": not signed by release\r\nX-Injected: 1"
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Add("Warning", warning(reason))
		writeError(sw, r, &apiError{status: http.StatusForbidden, code: codeDenied, message: reason, reasonPhrase: true})
		if sw.status() != http.StatusForbidden {
			t.Errorf("status recorded for metrics: %d", sw.status())
		}
	})
	for _, tc := range []struct {
		name     string
		start    func(http.Handler) *httptest.Server
		client   func(*httptest.Server) *http.Client
		inStatus bool
	}{
		{"HTTP/1.1", httptest.NewServer, func(s *httptest.Server) *http.Client { return s.Client() }, true},
		{"HTTP/1.1 over TLS", httptest.NewTLSServer, func(s *httptest.Server) *http.Client { return s.Client() }, true},
		{"HTTP/2", func(h http.Handler) *httptest.Server {
			s := httptest.NewUnstartedServer(h)
			s.EnableHTTP2 = true
			s.StartTLS()
			return s
		}, func(s *httptest.Server) *http.Client { return s.Client() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(h)
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodHead, srv.URL+"/v2/acme/app/manifests/v1", nil)
			resp, err := tc.client(srv).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if !strings.Contains(resp.Header.Get("Warning"), "not signed by release") {
				t.Errorf("Warning %q", resp.Header.Get("Warning"))
			}
			if resp.Header.Get("X-Injected") != "" {
				t.Error("the reason phrase injected a header")
			}
			if got := strings.Contains(resp.Status, "not signed by release"); got != tc.inStatus {
				t.Errorf("status line %q: reason in it = %v, want %v", resp.Status, got, tc.inStatus)
			}
			if tc.inStatus && resp.Header.Get("Content-Type") == "" {
				t.Error("headers set before the takeover were lost")
			}
		})
	}
	// A GET keeps the JSON body and the standard status line.
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v2/acme/app/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Status != "403 Forbidden" {
		t.Errorf("GET status line %q", resp.Status)
	}
}

func TestReasonPhrase(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                   "plain",
		"line\r\nbreak\x00x":      "line  break x",
		"tab\tstays":              "tab\tstays",
		strings.Repeat("a", 2000): strings.Repeat("a", maxReasonPhrase-3) + "...",
	} {
		if got := reasonPhrase(in); got != want {
			t.Errorf("reasonPhrase(%.20q) = %.30q", in, got)
		}
	}
}
