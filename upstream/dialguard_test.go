package upstream

import (
	"context"
	"encoding/binary"
	"errors"
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

	"github.com/opencontainers/go-digest"
	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS is an in-process DNS server for a net.Resolver (the real Go resolver, over a pipe). Each name
// answers its addresses in turn, one A query at a time, the last repeated: a name can resolve to a public
// address for a first look-up and to a private one for the next, as a rebinding attacker's would.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr // by FQDN, "storage.test."
	queries map[string]int
}

func newFakeDNS() *fakeDNS {
	return &fakeDNS{answers: map[string][]netip.Addr{}, queries: map[string]int{}}
}

// set makes name resolve to addrs, one per query, the last repeated.
func (f *fakeDNS) set(name string, addrs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	f.answers[name+"."] = as
	f.queries[name+"."] = 0
}

func (f *fakeDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go f.serve(server)
		return client, nil
	}}
}

// serve answers DNS over a stream connection (two-byte length prefix), as the Go resolver speaks it to
// a connection that is not a net.PacketConn.
func (f *fakeDNS) serve(c net.Conn) {
	defer c.Close()
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(msg)
		if err != nil {
			return
		}
		q, err := p.Question()
		if err != nil {
			return
		}
		out, err := f.answer(h, q)
		if err != nil {
			return
		}
		binary.BigEndian.PutUint16(l[:], uint16(len(out)))
		if _, err := c.Write(append(l[:], out...)); err != nil {
			return
		}
	}
}

func (f *fakeDNS) answer(h dnsmessage.Header, q dnsmessage.Question) ([]byte, error) {
	f.mu.Lock()
	addrs, known := f.answers[strings.ToLower(q.Name.String())]
	var a netip.Addr
	if known && q.Type == dnsmessage.TypeA {
		i := min(f.queries[q.Name.String()], len(addrs)-1)
		f.queries[q.Name.String()]++
		a = addrs[i]
	}
	f.mu.Unlock()
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if a.IsValid() {
		if err := b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET}, dnsmessage.AResource{A: a.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// withResolver makes the client's dialer resolve names with r.
func withResolver(r *net.Resolver) Option {
	return func(o *options) error { o.resolver = r; return nil }
}

// publicLoopback is 127.0.0.2, which the tests' classifier calls public: a server listening there stands
// for a registry or object store on the internet, without leaving the machine.
var publicLoopback = netip.MustParseAddr("127.0.0.2")

// withPublicLoopback makes the client treat 127.0.0.2 as a public address.
func withPublicLoopback() Option {
	return func(o *options) error {
		o.classify = func(a netip.Addr) addrClass {
			if a == publicLoopback {
				return classPublic
			}
			return classify(a)
		}
		return nil
	}
}

// serveOn starts h on ip (127.0.0.1 or 127.0.0.2) and counts the requests it gets.
func serveOn(t *testing.T, ip string, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &hits
}

func port(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	return u.Port()
}

// TestRedirectTargetsCheckedAtDial: a blob redirect may lead to a public address, or to a non-public one
// of a class the registry is on; anything else is refused at dial time, whatever an earlier look-up of
// the name said.
func TestRedirectTargetsCheckedAtDial(t *testing.T) {
	backend := newTestRegistry(t, true) // holds the bytes; the fronts below redirect blob GETs away
	img := backend.pushImage(t, "acme/app", "v1", 1024)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	dgst := digest.Digest(ld.String())
	objects := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(backend.seed.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	})
	// An object store on loopback (private to this host) and one on a "public" address, same port space.
	loopStore, loopHits := serveOn(t, "127.0.0.1", objects)
	pubStore, pubHits := serveOn(t, "127.0.0.2", objects)

	for _, tc := range []struct {
		name     string
		registry string   // the address the registry listens on
		target   string   // host of the redirect target (port: the store's)
		store    string   // which store the target port is: "loop" or "pub"
		dns      []string // what storage.test resolves to, query by query
		allow    bool
		wantErr  string // "" for success
	}{
		{name: "public registry, public store", registry: "127.0.0.2", target: "storage.test", store: "pub", dns: []string{"127.0.0.2"}},
		{name: "public registry, loopback literal", registry: "127.0.0.2", target: "127.0.0.1", store: "loop", wantErr: "loopback"},
		{name: "public registry, localhost", registry: "127.0.0.2", target: "localhost", store: "loop", wantErr: "loopback"},
		{name: "public registry, name rebinding to loopback", registry: "127.0.0.2", target: "storage.test", store: "loop",
			dns: []string{"127.0.0.2", "127.0.0.1"}, wantErr: "loopback"},
		{name: "public registry, name rebinding to metadata", registry: "127.0.0.2", target: "storage.test", store: "loop",
			dns: []string{"127.0.0.2", "169.254.169.254"}, wantErr: "link-local"},
		{name: "public registry, name rebinding to 10/8", registry: "127.0.0.2", target: "storage.test", store: "loop",
			dns: []string{"127.0.0.2", "10.1.2.3"}, wantErr: "private"},
		{name: "public registry, private allowed", registry: "127.0.0.2", target: "storage.test", store: "loop",
			dns: []string{"127.0.0.1"}, allow: true},
		{name: "loopback registry, loopback name", registry: "127.0.0.1", target: "storage.test", store: "loop", dns: []string{"127.0.0.1"}},
		{name: "loopback registry, loopback literal", registry: "127.0.0.1", target: "127.0.0.1", store: "loop"},
		{name: "loopback registry, name rebinding to 10/8", registry: "127.0.0.1", target: "storage.test", store: "loop",
			dns: []string{"127.0.0.1", "10.1.2.3"}, wantErr: "private"},
		{name: "loopback registry, metadata literal", registry: "127.0.0.1", target: "169.254.169.254", store: "loop", wantErr: "link-local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, hits := loopStore, loopHits
			if tc.store == "pub" {
				store, hits = pubStore, pubHits
			}
			target := "http://" + net.JoinHostPort(tc.target, port(t, store))
			front, _ := serveOn(t, tc.registry, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/blobs/") {
					http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
					return
				}
				backend.front.Config.Handler.ServeHTTP(w, r)
			}))
			dns := newFakeDNS()
			if tc.dns != nil {
				dns.set("storage.test", tc.dns...)
				// The look-up a separate check would make: it sees the first answer, the dial the next.
				if addrs, err := dns.resolver().LookupNetIP(context.Background(), "ip4", "storage.test"); err != nil || addrs[0].String() != tc.dns[0] {
					t.Fatalf("first look-up: %v %v", addrs, err)
				}
			}
			u, _ := url.Parse(front.URL)
			c := newClient(t, u, withResolver(dns.resolver()), withPublicLoopback(), WithAllowPrivateAddresses(tc.allow),
				WithRetries(2, time.Millisecond))
			before := hits.Load()
			rc, _, err := c.Blob(context.Background(), "acme/app", dgst)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || digest.FromBytes(b) != dgst {
					t.Fatalf("blob: %v, digest %s", err, digest.FromBytes(b))
				}
				if hits.Load() == before {
					t.Error("the store was never asked: the test proves nothing")
				}
				return
			}
			if err == nil {
				rc.Close()
				t.Fatal("redirect followed, want it refused")
			}
			if !errors.Is(err, ErrForbiddenAddress) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("err = %v, want ErrForbiddenAddress naming %s", err, tc.wantErr)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("err = %v: a refused address is not an outage", err)
			}
			if n := hits.Load() - before; n != 0 {
				t.Errorf("the store got %d requests", n)
			}
		})
	}
}

// TestRealmCheckedAtDial: a token realm named by host is checked on the address it is dialled at, with
// the same rule as redirects.
func TestRealmCheckedAtDial(t *testing.T) {
	ts := newTokenServer(t) // on 127.0.0.1
	tokenPort := port(t, ts.srv)
	for _, tc := range []struct {
		name     string
		registry string
		dns      []string
		allow    bool
		wantErr  error
	}{
		{"public registry, realm rebinding to loopback", "127.0.0.2", []string{"127.0.0.2", "127.0.0.1"}, false, ErrForbiddenAddress},
		{"public registry, loopback realm allowed", "127.0.0.2", []string{"127.0.0.1"}, true, nil},
		{"loopback registry, loopback realm", "127.0.0.1", []string{"127.0.0.2", "127.0.0.1"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var unauth atomic.Int64
			backend := newTestRegistry(t, true)
			backend.pushImage(t, "acme/app", "v1", 256)
			gate := bearerAuth(func() string { return "http://auth.test:" + tokenPort + "/token" }, ts, &unauth)
			front, _ := serveOn(t, tc.registry, gate(backend.front.Config.Handler))
			dns := newFakeDNS()
			dns.set("auth.test", tc.dns...)
			if _, err := dns.resolver().LookupNetIP(context.Background(), "ip4", "auth.test"); err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(front.URL)
			c := newClient(t, u, withResolver(dns.resolver()), withPublicLoopback(), WithAllowPrivateAddresses(tc.allow))
			before := ts.issued.Load()
			_, _, _, err := c.Manifest(context.Background(), "acme/app", "v1", nil)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrUnauthorized) {
				t.Errorf("err = %v, want %v and ErrUnauthorized", err, tc.wantErr)
			}
			if n := ts.issued.Load() - before; n != 0 {
				t.Errorf("the token server issued %d tokens", n)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want addrClass
	}{
		{"93.184.216.34", classPublic},
		{"2606:2800:220:1::", classPublic},
		{"127.0.0.1", classLoopback},
		{"::1", classLoopback},
		{"0.0.0.0", classLoopback},
		{"0.1.2.3", classLoopback},
		{"::ffff:127.0.0.1", classLoopback},
		{"10.1.2.3", classPrivate},
		{"172.16.0.1", classPrivate},
		{"192.168.1.1", classPrivate},
		{"100.64.0.1", classPrivate},
		{"198.18.0.1", classPrivate},
		{"fd00::1", classPrivate},
		{"169.254.169.254", classLinkLocal},
		{"fe80::1", classLinkLocal},
		{"64:ff9b::a9fe:a9fe", classLinkLocal}, // 169.254.169.254 through NAT64
		{"64:ff9b::5db8:d822", classPublic},    // 93.184.216.34 through NAT64
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := classify(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Errorf("classify(%s) = %s, want %s", tc.addr, got, tc.want)
			}
		})
	}
}

func TestDialGuardCheck(t *testing.T) {
	for _, tc := range []struct {
		name, registry, target, addr string
		allow, ok                    bool
	}{
		{"public target", "https://registry.example", "cdn.example:443", "93.184.216.34", false, true},
		{"private target, public registry", "https://registry.example", "cdn.example:443", "10.0.0.1", false, false},
		{"private target allowed", "https://registry.example", "cdn.example:443", "10.0.0.1", true, true},
		{"the registry itself, anywhere", "https://registry.example", "Registry.Example.:443", "10.0.0.1", false, true},
		{"registry host, other port", "https://registry.example", "registry.example:6379", "10.0.0.1", false, false},
		{"private registry literal, private target", "https://10.0.0.5", "minio.internal:9000", "10.9.9.9", false, true},
		{"private registry literal, link-local target", "https://10.0.0.5", "minio.internal:9000", "169.254.169.254", false, false},
		{"localhost registry, loopback target", "http://localhost:5000", "store:80", "127.0.0.1", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep, _ := url.Parse(tc.registry)
			g := newDialGuard(ep, tc.allow, classify)
			err := g.check(tc.target, netip.MustParseAddr(tc.addr))
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrForbiddenAddress) {
				t.Errorf("err = %v, want ErrForbiddenAddress", err)
			}
		})
	}
	t.Run("a registry dialled on a private address may redirect to that class", func(t *testing.T) {
		ep, _ := url.Parse("https://registry.internal")
		g := newDialGuard(ep, false, classify)
		if err := g.check("minio.internal:9000", netip.MustParseAddr("10.9.9.9")); err == nil {
			t.Fatal("private target allowed before the registry was ever dialled")
		}
		if err := g.check("registry.internal:443", netip.MustParseAddr("10.0.0.5")); err != nil {
			t.Fatal(err)
		}
		if err := g.check("minio.internal:9000", netip.MustParseAddr("10.9.9.9")); err != nil {
			t.Errorf("private target refused after the registry was dialled at a private address: %v", err)
		}
	})
}
