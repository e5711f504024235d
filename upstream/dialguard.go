package upstream

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
)

// addrClass is the kind of network an address belongs to. A redirect or token realm may only lead to a
// non-public class the registry itself is on: a registry on loopback may redirect to loopback, but not
// to 10.0.0.0/8 or 169.254.169.254.
type addrClass int

const (
	classPublic addrClass = iota
	classLoopback
	classPrivate
	classLinkLocal
)

func (c addrClass) String() string {
	switch c {
	case classLoopback:
		return "loopback"
	case classPrivate:
		return "private"
	case classLinkLocal:
		return "link-local"
	}
	return "public"
}

var (
	// thisNetwork (0.0.0.0/8) reaches the local host on Linux.
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	// nonPublic are ranges that are neither loopback nor link-local but never a public registry's:
	// RFC 6598 shared address space (CGNAT), IETF protocol assignments, benchmarking, reserved, and
	// deprecated IPv6 site-local.
	nonPublic = []netip.Prefix{
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("192.0.0.0/24"),
		netip.MustParsePrefix("198.18.0.0/15"),
		netip.MustParsePrefix("240.0.0.0/4"),
		netip.MustParsePrefix("fec0::/10"),
	}
	// nat64 is the well-known NAT64 prefix: 64:ff9b::a9fe:a9fe is 169.254.169.254 behind a NAT64 gateway.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// classify returns the class of a.
func classify(a netip.Addr) addrClass {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case a.IsLoopback(), a.IsUnspecified(), thisNetwork.Contains(a):
		return classLoopback
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return classLinkLocal
	case a.IsPrivate():
		return classPrivate
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return classPrivate
		}
	}
	return classPublic
}

// addressError is a connection the guard refused. It matches ErrForbiddenAddress.
type addressError struct {
	host  string // as the URL named it
	addr  netip.Addr
	class addrClass
}

func (e *addressError) Error() string {
	at := ""
	if e.addr.IsValid() && e.addr.String() != e.host {
		at = " (" + e.addr.String() + ")"
	}
	return fmt.Sprintf("refusing to connect to %s%s: it is a %s address and the registry is not on one "+
		"(allowPrivateAddresses allows it)", e.host, at, e.class)
}

func (e *addressError) Is(target error) bool { return target == ErrForbiddenAddress }

// dialGuard decides which addresses one client may connect to. The registry's own host:port and the
// HTTP proxies the transport picks may be anywhere (the operator chose them); any other host (a redirect
// target, a token realm) must be on a public address, or on a class of address the registry is on, unless
// private addresses are allowed. The check runs on the address being connected to, inside the dialer
// (net.Dialer.ControlContext), so a name that resolves to a public address for one look-up and to
// 169.254.169.254 for the next gains nothing; and every pooled connection was checked when it was dialled.
type dialGuard struct {
	registry string // the registry's host:port, canonical
	allowAll bool
	classify func(netip.Addr) addrClass

	mu sync.Mutex
	// regClasses are the classes the registry is on: its literal address or localhost, and the class of
	// every address it was dialled at.
	regClasses map[addrClass]bool
	proxies    map[string]bool // host:port of HTTP proxies the transport used
}

func newDialGuard(endpoint *url.URL, allowAll bool, classify func(netip.Addr) addrClass) *dialGuard {
	g := &dialGuard{registry: hostPort(endpoint), allowAll: allowAll, classify: classify,
		regClasses: map[addrClass]bool{}, proxies: map[string]bool{}}
	if a, ok := literalAddr(endpoint.Hostname()); ok {
		g.regClasses[classify(a)] = true
	}
	return g
}

// check decides a connection to hostport (as the URL or the proxy setting named it) at address a.
func (g *dialGuard) check(hostport string, a netip.Addr) error {
	c := g.classify(a)
	hp := canonicalHostPort(hostport)
	g.mu.Lock()
	defer g.mu.Unlock()
	if hp == g.registry {
		g.regClasses[c] = true
		return nil
	}
	if g.allowAll || c == classPublic || g.regClasses[c] || g.proxies[hp] {
		return nil
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	return &addressError{host: host, addr: a, class: c}
}

// checkURL refuses, before any connection, a URL whose host is an IP literal or localhost the guard
// would refuse to dial. Names are left to the dial: only the address actually dialled counts. This also
// covers connections made through an HTTP proxy, where the proxy, not us, resolves and dials.
func (g *dialGuard) checkURL(u *url.URL) error {
	a, ok := literalAddr(u.Hostname())
	if !ok {
		return nil
	}
	if err := g.check(hostPort(u), a); err != nil {
		if ae, ok := err.(*addressError); ok {
			ae.host = u.Hostname()
		}
		return err
	}
	return nil
}

// dialContext returns a DialContext for an http.Transport that dials with base and refuses, before the
// connect, any address check refuses.
func (g *dialGuard) dialContext(base *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := *base
		d.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("refusing to connect to %s: unparsable address %q", addr, address)
			}
			return g.check(addr, ap.Addr())
		}
		return d.DialContext(ctx, network, addr)
	}
}

// proxy wraps a transport's Proxy function so that the proxies it picks may be dialled.
func (g *dialGuard) proxy(inner func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		u, err := inner(req)
		if u != nil && err == nil {
			g.mu.Lock()
			g.proxies[hostPort(u)] = true
			g.mu.Unlock()
		}
		return u, err
	}
}

// literalAddr returns the address of an IP literal host, or 127.0.0.1 for localhost and its
// subdomains (which resolve to loopback without asking DNS).
func literalAddr(host string) (netip.Addr, bool) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	}
	a, err := netip.ParseAddr(host)
	return a, err == nil
}

// hostPort is u's host:port with the scheme's default port filled in, canonical.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "443"
		}
	}
	return canonicalHostPort(net.JoinHostPort(u.Hostname(), port))
}

// canonicalHostPort lowercases the host and drops a trailing dot, so that one host compares equal however
// it was spelt.
func canonicalHostPort(hp string) string {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return strings.ToLower(hp)
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.ToLower(host), "."), port)
}
