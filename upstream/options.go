package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Option configures a Client. Options are applied in order by New; an invalid value or a conflicting
// combination makes New fail.
type Option func(*options) error

// Observer is called once per HTTP exchange with the upstream: every retry attempt, redirect hop and
// token fetch. kind is one of ping, manifest, blob, tags, referrers or token; status is 0 when no
// response arrived (network error); d is the time until the response headers arrived.
type Observer func(method, kind string, status int, d time.Duration)

type options struct {
	username, password string
	basic              bool
	tlsConfig          *tls.Config
	transport          http.RoundTripper
	retries            int
	retryBase          time.Duration
	timeout            time.Duration
	userAgent          string
	allowPrivate       bool
	maxManifestSize    int64
	maxTokens          int
	maxIdleConns       int
	observer           Observer
	breakerThreshold   int
	breakerCooldown    time.Duration
	breakerObserver    func(open bool)
	bodyIdleTimeout    time.Duration

	// resolver, classify and now are seams for tests: the resolver the dialer uses (nil: the default),
	// what counts as a public address, and the token cache's clock.
	resolver *net.Resolver
	classify func(netip.Addr) addrClass
	now      func() time.Time
}

const (
	defaultRetries         = 3
	defaultRetryBase       = 200 * time.Millisecond
	defaultTimeout         = 30 * time.Second
	defaultUserAgent       = "portcullis"
	defaultMaxManifestSize = 4 << 20
	defaultMaxTokens       = 10000
	defaultMaxIdleConns    = 64
	defaultBreakerFailures = 10
	defaultBreakerCooldown = 30 * time.Second
	defaultBodyIdleTimeout = 30 * time.Second
)

func defaultOptions() options {
	return options{
		retries:          defaultRetries,
		retryBase:        defaultRetryBase,
		timeout:          defaultTimeout,
		userAgent:        defaultUserAgent,
		maxManifestSize:  defaultMaxManifestSize,
		maxTokens:        defaultMaxTokens,
		maxIdleConns:     defaultMaxIdleConns,
		breakerThreshold: defaultBreakerFailures,
		breakerCooldown:  defaultBreakerCooldown,
		bodyIdleTimeout:  defaultBodyIdleTimeout,
		classify:         classify,
		now:              time.Now,
	}
}

// WithBasicAuth sets the credentials sent to the registry on a Basic challenge and to the token realm
// for a Bearer token exchange. Default: anonymous.
func WithBasicAuth(username, password string) Option {
	return func(o *options) error {
		if username == "" {
			return errors.New("upstream: basic auth username is empty")
		}
		o.username, o.password, o.basic = username, password, true
		return nil
	}
}

// WithTLSConfig sets the TLS configuration of the default transport (custom roots, client
// certificates). A MinVersion below TLS 1.2 is raised to 1.2. It conflicts with WithTransport. Default: the
// system roots, TLS 1.2 at least.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("upstream: nil TLS config")
		}
		o.tlsConfig = c.Clone()
		return nil
	}
}

// WithTransport sets the base transport under the client's own retry, auth and user-agent layers. It
// conflicts with WithTLSConfig. The transport dials with its own dialer, so only redirect and realm
// targets given as IP literals or localhost are checked (see WithAllowPrivateAddresses); checking the
// address every connection is made to is then the transport's job. Default: a clone of
// http.DefaultTransport with the TLS config applied and a dialer that checks every address it connects to.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return errors.New("upstream: nil transport")
		}
		o.transport = rt
		return nil
	}
}

// WithRetries sets how many times a GET or HEAD is retried after a network error, a 5xx or a 429, and
// the base of the exponential backoff between attempts (with jitter, capped at 5s; a Retry-After header
// wins, capped at 30s). n = 0 disables retries. Default: 3 retries, 200ms base.
func WithRetries(n int, base time.Duration) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("upstream: negative retry count %d", n)
		}
		if base <= 0 {
			return fmt.Errorf("upstream: retry base %v must be positive", base)
		}
		o.retries, o.retryBase = n, base
		return nil
	}
}

// WithTimeout bounds each Resolve, Manifest, Tags, Referrers and Ping call (retries included) and, for
// Blob, the time until the response headers arrive; a blob body then streams without a deadline.
// Default: 30s.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("upstream: timeout %v must be positive", d)
		}
		o.timeout = d
		return nil
	}
}

// WithUserAgent sets the User-Agent header of every request. Default: "portcullis".
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		if ua == "" {
			return errors.New("upstream: empty user agent")
		}
		o.userAgent = ua
		return nil
	}
}

// WithAllowPrivateAddresses lets redirects (blob -> object storage) and Bearer token realms lead to a
// loopback, private or link-local address even when the registry is not on an address of the same kind.
// Without it such a connection is refused when it is dialled (the address connected to is the one
// checked, so DNS rebinding does not get round it), or before any connection for an IP literal or
// localhost; a target on the registry's own host:port, or on a class of address the registry is on, is
// always allowed. Default: false.
func WithAllowPrivateAddresses(ok bool) Option {
	return func(o *options) error {
		o.allowPrivate = ok
		return nil
	}
}

// WithAllowPrivateRealm is the old name of WithAllowPrivateAddresses, which now covers redirects as well
// as token realms.
//
// Deprecated: use WithAllowPrivateAddresses.
func WithAllowPrivateRealm(ok bool) Option { return WithAllowPrivateAddresses(ok) }

// WithMaxManifestSize caps the bytes read for one manifest; a bigger one fails with ErrTooLarge.
// Default: 4 MiB.
func WithMaxManifestSize(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("upstream: max manifest size %d must be positive", n)
		}
		o.maxManifestSize = n
		return nil
	}
}

// WithMaxTokens bounds the Bearer token cache to n scopes (one per repository pulled), so that clients
// walking many repositories cannot grow it without end; expired tokens are dropped as well. Default:
// 10000.
func WithMaxTokens(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("upstream: max tokens %d must be positive", n)
		}
		o.maxTokens = n
		return nil
	}
}

// WithMaxIdleConns sets how many idle connections to the registry (and as many to each other host it sends the
// client to: a token realm, a blob redirect target) the default transport keeps open for reuse. Concurrent pulls and
// admission decisions (up to 32 at once by default, each with a few lookups in parallel) share them; a connection
// that does not fit is closed after its request, and the next request pays a new TCP (and TLS) handshake. It is
// ignored with WithTransport. Default: 64.
func WithMaxIdleConns(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("upstream: max idle connections %d must be positive", n)
		}
		o.maxIdleConns = n
		return nil
	}
}

// WithObserver sets a hook called after every HTTP exchange with the upstream, for metrics. Default:
// none.
func WithObserver(f func(method, kind string, status int, d time.Duration)) Option {
	return func(o *options) error {
		o.observer = f
		return nil
	}
}

// WithCircuitBreaker sets when the upstream is taken for down: after failures failed HTTP exchanges in a row
// (network errors, 5xx but 501 and 505, 429; every retry attempt, token fetch and redirect hop counts) every
// call fails at once with ErrUnavailable for cooldown, without a connection, so a failing upstream is not
// hammered and the proxy serves what it has (stale tags, stored content) without waiting for retries. Then one
// request at a time probes it; a success closes the breaker. failures = 0 disables the breaker. Default: 10
// failures, 30s.
func WithCircuitBreaker(failures int, cooldown time.Duration) Option {
	return func(o *options) error {
		if failures < 0 {
			return fmt.Errorf("upstream: negative circuit breaker threshold %d", failures)
		}
		if failures > 0 && cooldown <= 0 {
			return fmt.Errorf("upstream: circuit breaker cooldown %v must be positive", cooldown)
		}
		o.breakerThreshold, o.breakerCooldown = failures, cooldown
		return nil
	}
}

// WithBreakerObserver sets a hook called when the circuit breaker changes state: open true when it opens (the
// threshold of failures in a row is reached), false when it closes (a probe succeeded). A failed probe that
// opens it for another cooldown is no change. It is called without locks held, for metrics. Default: none.
func WithBreakerObserver(f func(open bool)) Option {
	return func(o *options) error {
		o.breakerObserver = f
		return nil
	}
}

// WithBodyIdleTimeout bounds how long a blob body may go without a byte: a body that stalls (halfway, or
// before its first byte once the headers came) fails with ErrUnavailable after d, so the download it feeds
// is abandoned and the next request starts afresh. Default: 30s.
func WithBodyIdleTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("upstream: body idle timeout %v must be positive", d)
		}
		o.bodyIdleTimeout = d
		return nil
	}
}
