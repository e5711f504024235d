package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/imageref"
)

// Client is a read-only client for one upstream OCI registry. It is safe for concurrent use; its token
// cache is per Client, and concurrent requests for one scope share one token fetch. It does not merge
// requests: every call goes upstream (the proxy merges concurrent pulls of one tag, manifest or blob).
type Client struct {
	name     string
	endpoint *url.URL
	opts     options
	http     *http.Client
	guard    *dialGuard
	auth     *authTransport

	reposMu sync.Mutex
	repos   map[string]struct{} // names checkRepo passed

	referrersAPI atomic.Pointer[apiAnswer] // what the registry last said about the referrers API
}

// New returns a client for the registry at endpoint (scheme and host, e.g. https://registry-1.docker.io,
// optionally with a path prefix). name identifies the upstream in errors and logs.
func New(name string, endpoint *url.URL, opts ...Option) (*Client, error) {
	if name == "" {
		return nil, errors.New("upstream: empty name")
	}
	if endpoint == nil {
		return nil, errors.New("upstream: nil endpoint")
	}
	if endpoint.Scheme != "http" && endpoint.Scheme != "https" {
		return nil, fmt.Errorf("upstream %s: endpoint scheme %q must be http or https", name, endpoint.Scheme)
	}
	if endpoint.Host == "" {
		return nil, fmt.Errorf("upstream %s: endpoint %q has no host", name, endpoint.Redacted())
	}
	if endpoint.User != nil {
		return nil, fmt.Errorf("upstream %s: endpoint must not carry credentials; use WithBasicAuth", name)
	}
	if endpoint.RawQuery != "" || endpoint.Fragment != "" {
		return nil, fmt.Errorf("upstream %s: endpoint %q must not have a query or fragment", name, endpoint.Redacted())
	}
	ep := *endpoint
	ep.Path = strings.TrimSuffix(ep.Path, "/")
	ep.RawPath = ""

	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.transport != nil && o.tlsConfig != nil {
		return nil, errors.New("upstream: WithTransport and WithTLSConfig conflict: configure TLS on the transport")
	}

	guard := newDialGuard(&ep, o.allowPrivate, o.classify)
	base := o.transport
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.tlsConfig != nil {
			tr.TLSClientConfig = o.tlsConfig
			// Never below TLS 1.2, whatever the caller's config says.
			tr.TLSClientConfig.MinVersion = max(tr.TLSClientConfig.MinVersion, tls.VersionTLS12)
		}
		// http.DefaultTransport keeps 2 idle connections per host: concurrent requests beyond that would dial anew.
		tr.MaxIdleConnsPerHost = o.maxIdleConns
		tr.MaxIdleConns = 4 * o.maxIdleConns
		// Every connection, to the registry, a redirect target or a token realm, is dialled through the
		// guard, so the address checked is the address connected to.
		tr.DialContext = guard.dialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: o.resolver})
		if tr.Proxy != nil {
			tr.Proxy = guard.proxy(tr.Proxy)
		}
		base = tr
	}
	if o.observer != nil {
		base = &observeTransport{observe: o.observer, inner: base}
	}
	if o.breakerThreshold > 0 {
		// Above the observer (a refused request is no exchange) and below retries and auth (every attempt
		// and token fetch counts, and an open breaker ends the retries at once).
		base = &breaker{threshold: o.breakerThreshold, cooldown: o.breakerCooldown, inner: base, now: time.Now,
			observe: o.breakerObserver}
	}
	stack := func(inner http.RoundTripper) http.RoundTripper {
		return &userAgentTransport{ua: o.userAgent, inner: &retryTransport{
			retries: o.retries, base: o.retryBase, inner: inner, now: time.Now,
		}}
	}
	auth := &authTransport{
		endpoint:  &ep,
		username:  o.username,
		password:  o.password,
		hasBasic:  o.basic,
		guard:     guard,
		timeout:   o.timeout,
		inner:     base,
		now:       o.now,
		maxTokens: o.maxTokens,
		tokens:    map[string]token{},
	}
	auth.tokenClient = &http.Client{Transport: stack(base), CheckRedirect: auth.checkRedirect}

	c := &Client{name: name, endpoint: &ep, opts: o, guard: guard, auth: auth, repos: map[string]struct{}{}}
	c.http = &http.Client{Transport: stack(auth), CheckRedirect: c.checkRedirect}
	return c, nil
}

// Name returns the name the client was created with.
func (c *Client) Name() string { return c.name }

// Endpoint returns the registry endpoint (scheme and host) the client talks to.
func (c *Client) Endpoint() *url.URL { u := *c.endpoint; return &u }

// Transport returns the client's full transport stack (auth, retries, user agent), for other registry clients
// (cosign's) that must reach the same upstream with the same credentials. Credentials still go to the endpoint
// host only.
func (c *Client) Transport() http.RoundTripper { return c.http.Transport }

// Ping checks that the registry speaks the distribution API (GET /v2/), authenticating if asked to.
func (c *Client) Ping(ctx context.Context) error {
	const op = "ping"
	ctx2, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	u := c.endpoint.JoinPath("v2")
	u.Path += "/"
	resp, err := c.do(ctx2, http.MethodGet, kindPing, u, nil)
	if err != nil {
		return c.wrapErr(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.newError(op, resp)
	}
	return nil
}

// newError builds the *Error for a failed response, naming the upstream in its Op.
func (c *Client) newError(op string, resp *http.Response) *Error {
	return newError(c.name+" "+op, resp)
}

// do sends one request through the transport stack.
func (c *Client) do(ctx context.Context, method, kind string, u *url.URL, accept []string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(withKind(ctx, kind), method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	if kind == kindBlob {
		// Keep the transport from asking for gzip and silently inflating: sizes must be the blob's.
		req.Header.Set("Accept-Encoding", "identity")
	}
	return c.http.Do(req)
}

// wrapErr classifies a transport error: the caller's own cancellation stays a context error; errors
// that already carry a sentinel keep it; everything else (connection refused, DNS, our timeout) is
// ErrUnavailable.
func (c *Client) wrapErr(parent context.Context, op string, err error) error {
	if perr := parent.Err(); perr != nil {
		if errors.Is(err, perr) {
			return fmt.Errorf("upstream %s %s: %w", c.name, op, err)
		}
		return fmt.Errorf("upstream %s %s: %w: %w", c.name, op, perr, err)
	}
	if classified(err) {
		return fmt.Errorf("upstream %s %s: %w", c.name, op, err)
	}
	return fmt.Errorf("upstream %s %s: %w: %w", c.name, op, ErrUnavailable, err)
}

// checkRedirect follows at most 10 redirects, never from https to http, never to an IP literal or
// localhost the dial guard would refuse (names are checked when dialled), and never carries an
// Authorization header off the registry's origin (the auth layer would not add one either). Only blobs
// may leave the registry's origin (to object storage): a manifest, tag list or referrers answer from
// another host is refused, so the upstream cannot hand its API to a host nobody configured.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if k := kindOf(req.Context()); k != kindBlob && !sameOrigin(req.URL, c.endpoint) {
		return fmt.Errorf("refusing redirect of a %s request to another host, %s: only blobs are fetched off the registry's origin", k, req.URL.Redacted())
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing redirect from https to %s", req.URL.Redacted())
	}
	if err := c.guard.checkURL(req.URL); err != nil {
		return fmt.Errorf("refusing redirect to %s: %w", req.URL.Redacted(), err)
	}
	if !sameOrigin(req.URL, c.endpoint) {
		req.Header.Del("Authorization")
	}
	return nil
}

// checkRepo refuses a repository name that is not one. The grammar's regular expression costs more than a
// request's other work on loopback, and the proxy and the verifier ask about one repository many times in a row, so
// the names that passed are remembered (at most maxKnownRepos; all are forgotten when that is reached).
func (c *Client) checkRepo(repo string) error {
	c.reposMu.Lock()
	_, ok := c.repos[repo]
	c.reposMu.Unlock()
	if ok {
		return nil
	}
	if !imageref.IsRepository(repo) {
		return fmt.Errorf("upstream: invalid repository name %q", repo)
	}
	c.reposMu.Lock()
	if len(c.repos) >= maxKnownRepos {
		clear(c.repos)
	}
	c.repos[repo] = struct{}{}
	c.reposMu.Unlock()
	return nil
}

// maxKnownRepos bounds the repository names a Client remembers as valid.
const maxKnownRepos = 1024

// parseRef splits a manifest reference into a tag or a digest.
func parseRef(ref string) (tag string, dgst digest.Digest, err error) {
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			return "", "", fmt.Errorf("upstream: invalid digest reference %q: %w", ref, err)
		}
		return "", d, nil
	}
	if !imageref.IsTag(ref) {
		return "", "", fmt.Errorf("upstream: invalid tag %q", ref)
	}
	return ref, "", nil
}

// refOp names a manifest operation: "manifest repo:tag" or "manifest repo@sha256:...".
func refOp(verb, repo, ref string) string {
	if strings.Contains(ref, ":") {
		return verb + " " + repo + "@" + ref
	}
	return verb + " " + repo + ":" + ref
}

// mediaType returns the Content-Type without parameters.
func mediaType(h http.Header) string {
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	return strings.TrimSpace(mt)
}
