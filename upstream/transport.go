package upstream

import (
	"context"
	"io"
	"net/http"
	"time"
)

// Request kinds, as passed to the Observer.
const (
	kindPing      = "ping"
	kindManifest  = "manifest"
	kindBlob      = "blob"
	kindTags      = "tags"
	kindReferrers = "referrers"
	kindToken     = "token"
)

type kindKey struct{}

// withKind tags a request context with its kind for the observer layer.
func withKind(ctx context.Context, kind string) context.Context {
	return context.WithValue(ctx, kindKey{}, kind)
}

func kindOf(ctx context.Context) string {
	k, _ := ctx.Value(kindKey{}).(string)
	return k
}

// userAgentTransport sets the User-Agent header.
type userAgentTransport struct {
	ua    string
	inner http.RoundTripper
}

func (t *userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", t.ua)
	return t.inner.RoundTrip(req)
}

// observeTransport reports each exchange to the observer. It sits right above the base transport, so
// every attempt, hop and token fetch is seen once.
type observeTransport struct {
	observe Observer
	inner   http.RoundTripper
}

func (t *observeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.inner.RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.observe(req.Method, kindOf(req.Context()), status, time.Since(start))
	return resp, err
}

// drainClose reads a little of a discarded body so the connection can be reused, then closes it.
func drainClose(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxErrorBody)
	resp.Body.Close()
}
