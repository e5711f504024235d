package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

// tokenServer is a test token service: it counts the tokens it issues and records what it was asked.
type tokenServer struct {
	srv      *httptest.Server
	issued   atomic.Int64
	mu       sync.Mutex
	valid    map[string]string // token -> scope
	lastAuth string
	queries  []url.Values
	// access, when set, answers {"access_token":...} instead of {"token":...}.
	access    bool
	expiresIn int
	delay     time.Duration
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{valid: map[string]string{}}
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(ts.delay)
		n := ts.issued.Add(1)
		tok := fmt.Sprintf("tok-%d", n)
		ts.mu.Lock()
		ts.valid[tok] = r.URL.Query().Get("scope")
		ts.lastAuth = r.Header.Get("Authorization")
		ts.queries = append(ts.queries, r.URL.Query())
		ts.mu.Unlock()
		field := "token"
		if ts.access {
			field = "access_token"
		}
		json.NewEncoder(w).Encode(map[string]any{field: tok, "expires_in": ts.expiresIn})
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) ok(tok string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	_, ok := ts.valid[tok]
	return ok
}

// bearerAuth demands a token from ts (realm given by realm()) on every request, counting 401s.
func bearerAuth(realm func() string, ts *tokenServer, unauth *atomic.Int64) middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || ts == nil || !ts.ok(tok) {
				unauth.Add(1)
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="test-registry"`, realm()))
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestBearerConcurrentSharesOneToken(t *testing.T) {
	ts := newTokenServer(t)
	ts.delay = 50 * time.Millisecond // make the 401s pile up on one fetch
	var unauth atomic.Int64
	reg := newTestRegistry(t, true, bearerAuth(func() string { return ts.srv.URL + "/token" }, ts, &unauth))
	reg.pushImage(t, "acme/app", "v1", 256)
	c := newClient(t, reg.url(t), WithBasicAuth("alice", "s3cret"))

	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := ts.issued.Load(); n != 1 {
		t.Errorf("token fetches = %d, want 1", n)
	}

	// Token reuse: later requests for the same scope carry the cached token up front.
	before := unauth.Load()
	for range 3 {
		if _, err := c.Resolve(context.Background(), "acme/app", "v1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := unauth.Load() - before; got != 0 {
		t.Errorf("401s after the token was cached = %d, want 0", got)
	}
	if n := ts.issued.Load(); n != 1 {
		t.Errorf("token fetches after reuse = %d, want 1", n)
	}

	ts.mu.Lock()
	defer ts.mu.Unlock()
	user, pass, _ := (&http.Request{Header: http.Header{"Authorization": {ts.lastAuth}}}).BasicAuth()
	if user != "alice" || pass != "s3cret" {
		t.Errorf("token realm got Authorization %q, want basic alice:s3cret", ts.lastAuth)
	}
	want := url.Values{"service": {"test-registry"}, "scope": {"repository:acme/app:pull"}}
	if diff := cmp.Diff(want, ts.queries[0]); diff != "" {
		t.Errorf("token query (-want +got):\n%s", diff)
	}
}

func TestBearerVariants(t *testing.T) {
	t.Run("access_token and ping without scope", func(t *testing.T) {
		ts := newTokenServer(t)
		ts.access = true
		var unauth atomic.Int64
		reg := newTestRegistry(t, true, bearerAuth(func() string { return ts.srv.URL }, ts, &unauth))
		c := newClient(t, reg.url(t))
		if err := c.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if ts.lastAuth != "" {
			t.Errorf("anonymous client sent %q to the realm", ts.lastAuth)
		}
		if diff := cmp.Diff(url.Values{"service": {"test-registry"}}, ts.queries[0]); diff != "" {
			t.Errorf("token query (-want +got):\n%s", diff)
		}
	})
	t.Run("rejected token is refetched once", func(t *testing.T) {
		ts := newTokenServer(t)
		var unauth atomic.Int64
		reg := newTestRegistry(t, true, bearerAuth(func() string { return ts.srv.URL }, ts, &unauth))
		reg.pushImage(t, "acme/app", "v1", 256)
		c := newClient(t, reg.url(t))
		if _, err := c.Resolve(context.Background(), "acme/app", "v1", nil); err != nil {
			t.Fatal(err)
		}
		ts.mu.Lock()
		clear(ts.valid) // the registry forgets every token
		ts.mu.Unlock()
		if _, err := c.Resolve(context.Background(), "acme/app", "v1", nil); err != nil {
			t.Fatal(err)
		}
		if n := ts.issued.Load(); n != 2 {
			t.Errorf("token fetches = %d, want 2", n)
		}
	})
	t.Run("token never accepted is ErrUnauthorized", func(t *testing.T) {
		ts := newTokenServer(t)
		var unauth atomic.Int64
		reg := newTestRegistry(t, true, bearerAuth(func() string { return ts.srv.URL }, nil, &unauth))
		c := newClient(t, reg.url(t))
		_, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil)
		var ue *Error
		if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &ue) || ue.Code != "UNAUTHORIZED" {
			t.Errorf("err = %v, want ErrUnauthorized with code", err)
		}
	})
	t.Run("token server down is ErrUnavailable", func(t *testing.T) {
		ts := newTokenServer(t)
		realm := ts.srv.URL
		ts.srv.Close()
		var unauth atomic.Int64
		reg := newTestRegistry(t, true, bearerAuth(func() string { return realm }, nil, &unauth))
		c := newClient(t, reg.url(t))
		if _, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil); !errors.Is(err, ErrUnavailable) {
			t.Errorf("err = %v, want ErrUnavailable", err)
		}
	})
	t.Run("token server 401 is ErrUnauthorized", func(t *testing.T) {
		deny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
		}))
		defer deny.Close()
		var unauth atomic.Int64
		reg := newTestRegistry(t, true, bearerAuth(func() string { return deny.URL }, nil, &unauth))
		c := newClient(t, reg.url(t), WithBasicAuth("bob", "wrong"))
		if _, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("err = %v, want ErrUnauthorized", err)
		}
	})
}

func TestBasicChallenge(t *testing.T) {
	var challenged, authed atomic.Int64
	basic := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
				challenged.Add(1)
				w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			authed.Add(1)
			next.ServeHTTP(w, r)
		})
	}
	reg := newTestRegistry(t, true, basic)
	reg.pushImage(t, "acme/app", "v1", 256)

	anon := newClient(t, reg.url(t))
	if _, err := anon.Resolve(context.Background(), "acme/app", "v1", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("anonymous: err = %v, want ErrUnauthorized", err)
	}

	c := newClient(t, reg.url(t), WithBasicAuth("alice", "s3cret"))
	challenged.Store(0)
	for range 3 {
		if _, err := c.Resolve(context.Background(), "acme/app", "v1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if challenged.Load() != 1 || authed.Load() != 3 {
		t.Errorf("challenged %d, authed %d; want 1 challenge then basic sent up front", challenged.Load(), authed.Load())
	}
}

func TestBlobRedirectCarriesNoCredentials(t *testing.T) {
	var storageAuth []string
	var mu sync.Mutex
	var reg *testRegistry
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageAuth = append(storageAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		// Serve the bytes from the registry itself, as object storage would.
		resp, err := http.Get(reg.seed.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	}))
	defer storage.Close()
	redirect := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") {
				http.Redirect(w, r, storage.URL+r.URL.Path, http.StatusTemporaryRedirect)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	for _, tc := range []struct {
		name string
		auth func(ts *tokenServer, unauth *atomic.Int64) middleware
		opts []Option
	}{
		{"bearer", func(ts *tokenServer, unauth *atomic.Int64) middleware {
			return bearerAuth(func() string { return ts.srv.URL }, ts, unauth)
		}, nil},
		{"basic", func(*tokenServer, *atomic.Int64) middleware {
			return func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if _, _, ok := r.BasicAuth(); !ok {
						w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
						w.WriteHeader(http.StatusUnauthorized)
						return
					}
					next.ServeHTTP(w, r)
				})
			}
		}, []Option{WithBasicAuth("alice", "s3cret")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storageAuth = nil
			ts := newTokenServer(t)
			var unauth atomic.Int64
			var regAuth atomic.Int64
			seen := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Header.Get("Authorization") != "" {
						regAuth.Add(1)
					}
					next.ServeHTTP(w, r)
				})
			}
			reg = newTestRegistry(t, true, seen, tc.auth(ts, &unauth), redirect)
			img := reg.pushImage(t, "acme/app", "v1", 1024)
			layers, _ := img.Layers()
			ld, _ := layers[0].Digest()
			c := newClient(t, reg.url(t), tc.opts...)
			rc, _, err := c.Blob(context.Background(), "acme/app", digest.Digest(ld.String()))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || digest.FromBytes(b).String() != ld.String() {
				t.Fatalf("blob: %v, digest %s", err, digest.FromBytes(b))
			}
			if regAuth.Load() == 0 {
				t.Error("the registry never saw credentials: the test proves nothing")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(storageAuth) == 0 {
				t.Fatal("storage never asked")
			}
			for _, a := range storageAuth {
				if a != "" {
					t.Errorf("storage got Authorization %q", a)
				}
			}
		})
	}
}

// dialRecorder is a base transport that records every dial and only really dials loopback.
type dialRecorder struct {
	mu    sync.Mutex
	dials []string
}

func (d *dialRecorder) transport() *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.mu.Lock()
		d.dials = append(d.dials, addr)
		d.mu.Unlock()
		host, _, _ := net.SplitHostPort(addr)
		if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
			return nil, fmt.Errorf("test refuses to dial %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
}

func (d *dialRecorder) dialed(host string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.dials {
		if h, _, _ := net.SplitHostPort(a); h == host {
			return true
		}
	}
	return false
}

func TestPrivateRealm(t *testing.T) {
	for _, tc := range []struct {
		name       string
		realm      string
		allow      bool
		wantErr    error
		wantDialed bool
	}{
		{"private realm refused before dialing", "http://10.0.0.1/token", false, ErrUnauthorized, false},
		{"link-local realm refused", "http://169.254.169.254/token", false, ErrUnauthorized, false},
		{"ipv6 private realm refused", "http://[fd00::1]/token", false, ErrUnauthorized, false},
		{"allowed: dial attempted (and stopped by the test dialer)", "http://10.0.0.1:9/token", true, ErrUnavailable, true},
		{"allowed ipv6: dial attempted", "http://[fd00::1]/token", true, ErrUnavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var unauth atomic.Int64
			reg := newTestRegistry(t, true, bearerAuth(func() string { return tc.realm }, nil, &unauth))
			d := &dialRecorder{}
			c := newClient(t, reg.url(t), WithTransport(d.transport()), WithAllowPrivateRealm(tc.allow), WithRetries(0, time.Millisecond))
			_, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			ru, _ := url.Parse(tc.realm)
			if got := d.dialed(ru.Hostname()); got != tc.wantDialed {
				t.Errorf("dialed realm = %v, want %v (dials %v)", got, tc.wantDialed, d.dials)
			}
		})
	}
}

func TestCheckRealm(t *testing.T) {
	for _, tc := range []struct {
		name, registry, realm string
		ok                    bool
	}{
		{"public https", "https://registry.example", "https://auth.example/token", true},
		{"http realm for https registry", "https://registry.example", "http://auth.example/token", false},
		{"http realm for http registry", "http://127.0.0.1:5000", "http://127.0.0.1:5001/token", true},
		{"ftp realm", "https://registry.example", "ftp://auth.example/token", false},
		{"relative realm", "https://registry.example", "/token", false},
		{"userinfo realm", "https://registry.example", "https://u:p@auth.example/token", false},
		{"name: left to the dial", "https://registry.example", "https://metadata.example/", true},
		{"localhost name", "https://auth.example", "https://localhost/token", false},
		{"loopback registry, localhost realm", "http://127.0.0.1:5000", "http://localhost:5001/t", true},
		{"loopback registry, private realm", "http://127.0.0.1:5000", "http://10.0.0.1/t", false},
		{"private registry, private realm", "https://10.0.0.5", "https://10.2.3.4/t", true},
		{"private registry, loopback realm", "https://10.0.0.5", "https://127.0.0.1/t", false},
		{"same host as registry", "https://10.0.0.5", "https://10.0.0.5/t", true},
		{"link-local realm", "https://registry.example", "https://169.254.169.254/t", false},
		{"ipv4-mapped loopback", "https://registry.example", "https://[::ffff:127.0.0.1]/t", false},
		{"unspecified", "https://registry.example", "https://0.0.0.0/t", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, _ := url.Parse(tc.registry)
			a := &authTransport{endpoint: ep, guard: newDialGuard(ep, false, classify)}
			_, err := a.checkRealm(tc.realm)
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestObserver(t *testing.T) {
	ts := newTokenServer(t)
	var unauth atomic.Int64
	reg := newTestRegistry(t, true, bearerAuth(func() string { return ts.srv.URL }, ts, &unauth))
	reg.pushImage(t, "acme/app", "v1", 256)
	var mu sync.Mutex
	var got []string
	c := newClient(t, reg.url(t), WithUserAgent("portcullis-test"), WithObserver(func(method, kind string, status int, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%s %s %d", method, kind, status))
	}))
	if _, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"GET manifest 401", "GET token 200", "GET manifest 200"}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func withClock(now func() time.Time) Option {
	return func(o *options) error { o.now = now; return nil }
}

// TestTokenCacheBounded: a client walking many repositories (one token scope each) does not grow the
// token cache past its bound, and expired tokens are dropped.
func TestTokenCacheBounded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		maxTokens int
		walk      int           // repositories pulled one after the other
		advance   time.Duration // then the clock moves on by this much, and one more repository is pulled
		want      int           // tokens cached at the end
	}{
		{name: "bounded while live", maxTokens: 5, walk: 20, want: 5},
		{name: "expired swept when full", maxTokens: 5, walk: 5, advance: 10 * time.Minute, want: 1},
		{name: "expired swept on schedule", maxTokens: 1000, walk: 20, advance: 10 * time.Minute, want: 1},
		{name: "live kept on schedule", maxTokens: 1000, walk: 20, advance: 2 * time.Minute, want: 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.expiresIn = 300 // cached for 290s
			var unauth atomic.Int64
			reg := newTestRegistry(t, true, bearerAuth(func() string { return ts.srv.URL }, ts, &unauth))
			clock := &testClock{now: time.Unix(1_000_000_000, 0)}
			c := newClient(t, reg.url(t), WithMaxTokens(tc.maxTokens), withClock(clock.Now))
			cached := func() int {
				c.auth.mu.Lock()
				defer c.auth.mu.Unlock()
				return len(c.auth.tokens)
			}
			pull := func(repo string) {
				t.Helper()
				// Nothing is pushed: each repository is a 404, after its own token exchange.
				if _, err := c.Resolve(context.Background(), repo, "v1", nil); !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s: err = %v, want ErrNotFound", repo, err)
				}
			}
			for i := range tc.walk {
				pull(fmt.Sprintf("walk/repo%d", i))
				clock.Add(time.Second)
				if n := cached(); n > tc.maxTokens {
					t.Fatalf("after %d repositories: %d tokens cached, bound %d", i+1, n, tc.maxTokens)
				}
			}
			// The cache still works: the latest scope's token is reused.
			issued := ts.issued.Load()
			pull(fmt.Sprintf("walk/repo%d", tc.walk-1))
			if n := ts.issued.Load() - issued; n != 0 {
				t.Errorf("re-pulling the latest repository fetched %d tokens, want 0", n)
			}
			if tc.advance > 0 {
				clock.Add(tc.advance)
				pull("walk/last")
			}
			if n := cached(); n != tc.want {
				t.Errorf("%d tokens cached, want %d", n, tc.want)
			}
		})
	}
}
