package registrytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Registry is a running in-process OCI registry. Build it with New.
type Registry struct {
	srv      *httptest.Server // what the code under test talks to
	seed     *httptest.Server // side door for the seeding helpers
	tokens   *tokenServer     // nil without WithBearerAuth
	tokenSrv *httptest.Server // nil without WithBearerAuth
	hits     *Hits
	hellos   atomic.Int64   // TLS ClientHellos received by a plain-HTTP listener
	pool     *x509.CertPool // nil without WithTLS

	closeOnce sync.Once
}

// New starts a registry configured by opts and stops it in t.Cleanup.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}

	var backend http.Handler
	if cfg.ggcr {
		backend = newGGCR()
	} else {
		ctx, cancel := context.WithCancel(context.Background())
		var shutdown func()
		backend, shutdown = Distribution(ctx, cfg.storageDir)
		t.Cleanup(func() { shutdown(); cancel() })
	}

	r := &Registry{hits: newHits(), seed: httptest.NewServer(backend)}

	var cert *tls.Certificate
	if cfg.tls {
		c, pool, err := newCert()
		if err != nil {
			t.Fatalf("registrytest: certificate: %v", err)
		}
		cert, r.pool = &c, pool
	}

	h := backend
	if cfg.auth {
		r.tokens = newTokenServer(cfg.username, cfg.password)
		r.tokenSrv = start(r.tokens, cert, &r.hellos)
		// A host name, not 127.0.0.1: go-containerregistry (so crane and
		// cosign) refuses realms on private IP literals other than the
		// registry's own host:port.
		_, port, _ := net.SplitHostPort(r.tokenSrv.Listener.Addr().String())
		r.tokens.realm = scheme(cert) + "://localhost:" + port + "/token"
		h = r.tokens.gate(h)
	}
	for i := len(cfg.middlewares) - 1; i >= 0; i-- {
		h = cfg.middlewares[i](h)
	}
	r.srv = start(r.hits.wrap(h), cert, &r.hellos)

	t.Cleanup(func() {
		r.Close()
		r.seed.Close()
	})
	return r
}

// start serves h on a loopback port, over TLS with cert when it is not nil;
// a plain-HTTP listener counts the connections that open with a TLS
// ClientHello in hellos.
func start(h http.Handler, cert *tls.Certificate, hellos *atomic.Int64) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	if cert == nil {
		s.Listener = helloCounter{Listener: s.Listener, n: hellos}
		s.Start()
		return s
	}
	s.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	// Tests that prove an untrusting client fails would otherwise print
	// "TLS handshake error" lines; other server errors (panics) still show.
	s.Config.ErrorLog = log.New(handshakeFilter{os.Stderr}, "", log.LstdFlags)
	s.StartTLS()
	return s
}

// helloCounter counts the accepted connections whose first byte opens a TLS
// handshake record (0x16): a client that tries HTTPS on a plain-HTTP registry.
type helloCounter struct {
	net.Listener
	n *atomic.Int64
}

func (l helloCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &helloConn{Conn: c, n: l.n}, nil
}

// helloConn checks the first byte read from its connection.
type helloConn struct {
	net.Conn
	n    *atomic.Int64
	seen atomic.Bool // the server's reads take turns, but across goroutines
}

func (c *helloConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.seen.CompareAndSwap(false, true) && p[0] == 0x16 {
		c.n.Add(1)
	}
	return n, err
}

// handshakeFilter drops http.Server's TLS handshake error lines.
type handshakeFilter struct{ w io.Writer }

func (f handshakeFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("TLS handshake error")) {
		return len(p), nil
	}
	return f.w.Write(p)
}

// scheme is https when there is a certificate, http otherwise.
func scheme(cert *tls.Certificate) string {
	if cert != nil {
		return "https"
	}
	return "http"
}

// URL returns the registry's base URL, e.g. http://127.0.0.1:PORT. The caller
// may modify the copy it gets.
func (r *Registry) URL() *url.URL {
	u, err := url.Parse(r.srv.URL)
	if err != nil {
		panic("registrytest: httptest URL: " + err.Error())
	}
	return u
}

// Host returns the registry's host:port, e.g. 127.0.0.1:PORT.
func (r *Registry) Host() string {
	return strings.TrimPrefix(strings.TrimPrefix(r.srv.URL, "http://"), "https://")
}

// Ref returns repoAndTag (or repo@digest) qualified with Host.
func (r *Registry) Ref(repoAndTag string) string {
	return r.Host() + "/" + repoAndTag
}

// CertPool returns a pool that trusts the registry and its token server (one
// fresh self-signed certificate for 127.0.0.1, ::1 and localhost), or nil
// without WithTLS.
func (r *Registry) CertPool() *x509.CertPool {
	return r.pool
}

// Hits returns the counter of requests the registry received.
func (r *Registry) Hits() *Hits {
	return r.hits
}

// TokenRealm returns the realm the registry's challenges name, e.g.
// http://localhost:PORT/token, or "" without WithBearerAuth. A client that
// refuses token realms on private hosts must be told to allow this one.
func (r *Registry) TokenRealm() string {
	if r.tokens == nil {
		return ""
	}
	return r.tokens.realm
}

// TLSAttempts returns how many connections to a plain-HTTP registry (or its
// token server) opened with a TLS handshake: a client that tries HTTPS first
// on an upstream it should know to be plain HTTP. Always 0 WithTLS.
func (r *Registry) TLSAttempts() int {
	return int(r.hellos.Load())
}

// TokensIssued returns how many tokens the token server has issued; always 0
// without WithBearerAuth.
func (r *Registry) TokensIssued() int {
	if r.tokens == nil {
		return 0
	}
	return r.tokens.Issued()
}

// CloseClientConnections closes the connections clients hold to the registry (and its token server), idle ones
// included, so that a test counting goroutines does not count a client's keep-alive pool.
func (r *Registry) CloseClientConnections() {
	r.srv.CloseClientConnections()
	if r.tokenSrv != nil {
		r.tokenSrv.CloseClientConnections()
	}
}

// Close stops serving the registry and its token server, so that requests
// fail with "connection refused", as when the upstream is down. In-flight
// requests are cut off. Stored content survives for the seeding helpers.
// Close is idempotent and also runs in t.Cleanup.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		for _, s := range []*httptest.Server{r.srv, r.tokenSrv} {
			if s == nil {
				continue
			}
			// Refuse new connections first, then cut the live ones so a
			// handler waiting on its request context returns, then wait.
			_ = s.Listener.Close()
			s.CloseClientConnections()
			s.Close()
		}
	})
}
