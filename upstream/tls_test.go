package upstream

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestTLSMinimum12: the client will not talk to a registry that offers only TLS 1.1, not even when its caller's
// TLS config asks for less; TLS 1.2 works.
func TestTLSMinimum12(t *testing.T) {
	for _, tc := range []struct {
		name      string
		serverMax uint16
		opts      func(*httptest.Server) []Option
		ok        bool
	}{
		{"caller asks for TLS 1.0, TLS 1.1 server", tls.VersionTLS11, func(s *httptest.Server) []Option {
			return []Option{WithTLSConfig(&tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS10})} //nolint:gosec // the test
		}, false},
		{"TLS 1.2 server", tls.VersionTLS12, func(s *httptest.Server) []Option {
			return []Option{WithTLSConfig(&tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			s.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tc.serverMax} //nolint:gosec // the test
			s.StartTLS()
			defer s.Close()
			u, _ := url.Parse(s.URL)
			c, err := New("t", u, append([]Option{WithRetries(0, 1), WithAllowPrivateAddresses(true)}, tc.opts(s)...)...)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Ping(context.Background())
			if (err == nil) != tc.ok {
				t.Errorf("ping err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
