package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// addrClass is the kind of network an address belongs to. A token realm may only be on a non-public
// class the registry itself is on: a registry on loopback may use a loopback realm, but not one on
// 10.0.0.0/8 or 169.254.169.254.
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

// cgnat is RFC 6598 shared address space, treated as private.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func classify(a netip.Addr) addrClass {
	a = a.Unmap()
	switch {
	case a.IsLoopback(), a.IsUnspecified():
		return classLoopback
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return classLinkLocal
	case a.IsPrivate(), cgnat.Contains(a):
		return classPrivate
	}
	return classPublic
}

// lookupFunc resolves a host name to addresses (net.DefaultResolver.LookupNetIP in production).
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// hostClasses returns the set of address classes host (an IP literal or a name) belongs to. Names are
// resolved; "localhost" and its subdomains are loopback without asking DNS.
func hostClasses(ctx context.Context, lookup lookupFunc, host string) (map[addrClass]bool, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return map[addrClass]bool{classLoopback: true}, nil
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = lookup(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
	}
	out := map[addrClass]bool{}
	for _, a := range addrs {
		out[classify(a)] = true
	}
	return out, nil
}

// checkRealm validates a Bearer realm before any connection is made to it: it must be an absolute
// http(s) URL, https unless the registry itself is plain http, and it must not be on a loopback,
// private or link-local address unless the registry is on one of the same class, the realm host is the
// registry host, or private realms were allowed.
func (t *authTransport) checkRealm(ctx context.Context, realm string) (*url.URL, error) {
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid token realm %q", realm)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if t.endpoint.Scheme != "http" {
			return nil, fmt.Errorf("token realm %q is plain http but the registry is https", realm)
		}
	default:
		return nil, fmt.Errorf("token realm %q: scheme must be https", realm)
	}
	if u.User != nil {
		return nil, fmt.Errorf("token realm %q must not carry user info", u.Redacted())
	}
	if t.allowPrivate || strings.EqualFold(u.Host, t.endpoint.Host) {
		return u, nil
	}
	realmClasses, err := hostClasses(ctx, t.lookup, u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("resolving token realm host %q: %w: %w", u.Hostname(), ErrUnavailable, err)
	}
	var regClasses map[addrClass]bool
	for rc := range realmClasses {
		if rc == classPublic {
			continue
		}
		if regClasses == nil {
			if regClasses, err = hostClasses(ctx, t.lookup, t.endpoint.Hostname()); err != nil {
				return nil, fmt.Errorf("resolving registry host %q: %w: %w", t.endpoint.Hostname(), ErrUnavailable, err)
			}
		}
		if !regClasses[rc] {
			return nil, fmt.Errorf("token realm %q is on a %s address and the registry is not; refused (see WithAllowPrivateRealm)", realm, rc)
		}
	}
	return u, nil
}

func defaultLookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}
