package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

const (
	maxTokenBody      = 1 << 20
	defaultTokenTTL   = 60 * time.Second
	maxTokenTTLSlack  = 10 * time.Second
	minTokenTTLForUse = time.Second
	// tokenSweepEvery is how often storing a token also drops every expired one.
	tokenSweepEvery = time.Minute
)

// authError marks an error raised by the auth layer itself (token exchange, refused realm), so the
// retry layer does not retry it and the client keeps its classification.
type authError struct{ err error }

func (e *authError) Error() string { return "auth: " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// token is a cached Bearer token.
type token struct {
	value   string
	expires time.Time
}

// authTransport answers 401 challenges from the registry. For Bearer it fetches a token from the realm
// (one fetch per scope at a time, cached until shortly before it expires) and retries the request once;
// for Basic it retries with the configured credentials and keeps sending them. Credentials are only
// ever attached to requests for the registry's own scheme and host: a redirect elsewhere (blob -> object
// storage) goes out bare.
type authTransport struct {
	endpoint *url.URL
	username string
	password string
	hasBasic bool
	guard    *dialGuard
	timeout  time.Duration
	inner    http.RoundTripper
	// tokenClient fetches tokens: user agent, retries and the observer, but no auth layer.
	tokenClient *http.Client

	basicMode atomic.Bool // the registry asked for Basic once: send it up front from now on
	group     singleflight.Group
	now       func() time.Time
	maxTokens int

	mu        sync.Mutex
	tokens    map[string]token // by scope, at most maxTokens
	lastSweep time.Time
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !sameOrigin(req.URL, t.endpoint) {
		if req.Header.Get("Authorization") != "" {
			req = req.Clone(req.Context())
			req.Header.Del("Authorization")
		}
		return t.inner.RoundTrip(req)
	}
	scope := scopeFor(req.URL.Path, t.endpoint.Path)
	first, used := t.authorize(req, scope)
	resp, err := t.inner.RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}

	chs := parseChallenges(resp.Header)
	if ch, ok := pick(chs, "bearer"); ok && ch.params["realm"] != "" {
		tok, err := t.token(req.Context(), scope, ch, used)
		if err != nil {
			drainClose(resp)
			return nil, &authError{err}
		}
		drainClose(resp)
		again := req.Clone(req.Context())
		again.Header.Set("Authorization", "Bearer "+tok)
		return t.inner.RoundTrip(again)
	}
	if _, ok := pick(chs, "basic"); ok && t.hasBasic && used != basicUsed {
		drainClose(resp)
		t.basicMode.Store(true)
		again := req.Clone(req.Context())
		again.SetBasicAuth(t.username, t.password)
		return t.inner.RoundTrip(again)
	}
	return resp, nil
}

const basicUsed = "\x00basic"

// authorize returns req with the credentials we already know to be wanted for scope, and which
// credential that was ("" none, basicUsed, or the bearer token).
func (t *authTransport) authorize(req *http.Request, scope string) (*http.Request, string) {
	if t.hasBasic && t.basicMode.Load() {
		r := req.Clone(req.Context())
		r.SetBasicAuth(t.username, t.password)
		return r, basicUsed
	}
	if tok, ok := t.cached(scope, ""); ok {
		r := req.Clone(req.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
		return r, tok
	}
	return req, ""
}

// cached returns a live token for scope that is not stale (the one the registry just rejected).
func (t *authTransport) cached(scope, stale string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk, ok := t.tokens[scope]
	if ok && !t.now().Before(tk.expires) {
		delete(t.tokens, scope)
		return "", false
	}
	if !ok || tk.value == stale {
		return "", false
	}
	return tk.value, true
}

// store caches tk for scope. The cache stays bounded however many repositories clients walk: expired
// tokens are swept out every tokenSweepEvery and whenever the cache is full, and a cache full of live
// tokens gives up the one that expires first.
func (t *authTransport) store(scope string, tk token) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	_, replace := t.tokens[scope]
	if full := !replace && len(t.tokens) >= t.maxTokens; full || now.Sub(t.lastSweep) >= tokenSweepEvery {
		for s, old := range t.tokens {
			if !now.Before(old.expires) {
				delete(t.tokens, s)
			}
		}
		t.lastSweep = now
	}
	if !replace && len(t.tokens) >= t.maxTokens {
		var victim string
		var first time.Time
		for s, old := range t.tokens {
			if victim == "" || old.expires.Before(first) {
				victim, first = s, old.expires
			}
		}
		delete(t.tokens, victim)
	}
	t.tokens[scope] = tk
}

// token returns a token for scope, fetching one unless a live one other than stale is cached.
// Concurrent callers for one scope share one fetch; the fetch outlives a caller that gives up.
func (t *authTransport) token(ctx context.Context, scope string, ch challenge, stale string) (string, error) {
	if tok, ok := t.cached(scope, stale); ok {
		return tok, nil
	}
	res := t.group.DoChan(scope, func() (any, error) {
		// A fetch that finished between our cache check and joining the group already did the work.
		if tok, ok := t.cached(scope, stale); ok {
			return tok, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.timeout)
		defer cancel()
		tk, err := t.fetch(fctx, scope, ch)
		if err != nil {
			return "", err
		}
		t.store(scope, tk)
		return tk.value, nil
	})
	select {
	case r := <-res:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// fetch performs the token exchange described by a Bearer challenge.
func (t *authTransport) fetch(ctx context.Context, scope string, ch challenge) (token, error) {
	u, err := t.checkRealm(ch.params["realm"])
	if err != nil {
		return token{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	q := u.Query()
	if svc := ch.params["service"]; svc != "" {
		q.Set("service", svc)
	}
	if s := ch.params["scope"]; s != "" {
		for _, f := range strings.Fields(s) {
			q.Add("scope", f)
		}
	} else if scope != "" {
		q.Add("scope", scope)
	}
	u.RawQuery = q.Encode()

	req, err := http.NewRequestWithContext(withKind(ctx, kindToken), http.MethodGet, u.String(), nil)
	if err != nil {
		return token{}, err
	}
	if t.hasBasic {
		req.SetBasicAuth(t.username, t.password)
	}
	resp, err := t.tokenClient.Do(req)
	if errors.Is(err, ErrForbiddenAddress) {
		// The realm (or a redirect from it) led to an address we may not connect to: no token, ever.
		return token{}, fmt.Errorf("%w: token from %s: %w", ErrUnauthorized, u.Host, err)
	}
	if err != nil {
		return token{}, fmt.Errorf("token from %s: %w: %w", u.Host, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := newError("token "+u.Host, resp)
		switch {
		case e.Status == http.StatusUnauthorized, e.Status == http.StatusForbidden, e.Is(ErrUnavailable):
			return token{}, e
		}
		return token{}, fmt.Errorf("%w: %v", ErrUnauthorized, e)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody+1))
	if err != nil {
		return token{}, fmt.Errorf("token from %s: %w: %w", u.Host, ErrUnavailable, err)
	}
	if len(body) > maxTokenBody {
		return token{}, fmt.Errorf("token from %s: %w", u.Host, ErrTooLarge)
	}
	value, expiresIn, err := parseTokenResponse(body)
	if err != nil {
		return token{}, fmt.Errorf("%w: token from %s: %v", ErrUnauthorized, u.Host, err)
	}
	return token{value: value, expires: t.now().Add(tokenLifetime(expiresIn))}, nil
}

// parseTokenResponse reads a token server's answer (Docker's token spec: "token", or OAuth2's "access_token", and
// "expires_in" seconds, 0 when absent). The error says why there is no token: the body is not JSON, or names none.
func parseTokenResponse(body []byte) (value string, expiresIn int64, err error) {
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", 0, fmt.Errorf("bad JSON: %v", err)
	}
	value = tr.Token
	if value == "" {
		value = tr.AccessToken
	}
	if value == "" {
		return "", 0, errors.New("response has no token")
	}
	return value, tr.ExpiresIn, nil
}

// tokenLifetime is how long a token is reused: expires_in (default 60s) less a slack of a quarter of
// it, at most 10s, so a token is not sent just as it dies.
func tokenLifetime(expiresIn int64) time.Duration {
	ttl := defaultTokenTTL
	if expiresIn > 0 && expiresIn < int64(24*time.Hour/time.Second) {
		ttl = time.Duration(expiresIn) * time.Second
	}
	return max(ttl-min(ttl/4, maxTokenTTLSlack), minTokenTTLForUse)
}

// checkRedirect vets token-server redirects as if they were the realm, and drops the credentials when
// the host changes.
func (t *authTransport) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if _, err := t.checkRealm(req.URL.String()); err != nil {
		return fmt.Errorf("refusing token-server redirect: %w", err)
	}
	if !sameOrigin(req.URL, via[0].URL) {
		req.Header.Del("Authorization")
	}
	return nil
}

func pick(chs []challenge, scheme string) (challenge, bool) {
	for _, c := range chs {
		if c.scheme == scheme {
			return c, true
		}
	}
	return challenge{}, false
}

// scopeFor derives the pull scope of a registry API path: /v2/<repo>/{manifests,blobs,tags,referrers}/x
// gives repository:<repo>:pull; anything else (the /v2/ ping) gives "".
func scopeFor(path, prefix string) string {
	p := strings.TrimPrefix(path, strings.TrimSuffix(prefix, "/"))
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return ""
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 3 {
		return ""
	}
	switch segs[len(segs)-2] {
	case "manifests", "blobs", "tags", "referrers":
		return "repository:" + strings.Join(segs[:len(segs)-2], "/") + ":pull"
	}
	return ""
}

// sameOrigin reports whether a and b have the same scheme, host and (defaulted) port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		portOf(a) == portOf(b)
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "http") {
		return "80"
	}
	return "443"
}
