package registrytest

import "net/http"

// Option configures a Registry built by New.
type Option func(*config)

// config collects what the options ask for.
type config struct {
	ggcr        bool
	auth        bool
	username    string
	password    string
	tls         bool
	storageDir  string
	middlewares []func(http.Handler) http.Handler
}

// WithGGCR serves go-containerregistry's pkg/registry (with the OCI referrers
// API enabled) instead of CNCF Distribution. Default: Distribution, which
// has no referrers endpoint.
func WithGGCR() Option {
	return func(c *config) { c.ggcr = true }
}

// WithBearerAuth puts the registry behind Docker-style token auth. Requests
// without a token issued by the in-test token server (a separate listener)
// get 401 and
// `WWW-Authenticate: Bearer realm="http://localhost:<port>/token",service="registrytest",scope="repository:<repo>:pull"`
// (no scope on /v2/; "pull,push" for writes). The token server demands these
// basic credentials when username is not empty and issues tokens to anyone
// otherwise; tokens are random, opaque and valid for 300 s. Default: no auth.
func WithBearerAuth(username, password string) Option {
	return func(c *config) {
		c.auth = true
		c.username = username
		c.password = password
	}
}

// WithMiddleware wraps the registry handler (inside the hit counter, outside
// the auth gate) for fault injection: corrupt a blob, answer 503, delay.
// Options given more than once stack; the first given is the outermost.
// A middleware that waits should honour r.Context() so Close can finish.
// Default: none.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(c *config) { c.middlewares = append(c.middlewares, mw) }
}

// WithTLS serves HTTPS on the registry and the token server with a fresh
// self-signed certificate for 127.0.0.1, ::1 and localhost; CertPool returns
// a pool that trusts it. Default: plain HTTP.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithStorageDir keeps Distribution's content in dir on its filesystem storage driver instead of in memory, for
// blobs of gigabytes (PushBlob). Ignored with WithGGCR. Default: Distribution's in-memory driver.
func WithStorageDir(dir string) Option {
	return func(c *config) { c.storageDir = dir }
}
