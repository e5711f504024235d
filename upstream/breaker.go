package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// errCircuitOpen marks a request refused without a connection because the upstream kept failing. It is
// never retried: the retry layer would only ask the open breaker again.
var errCircuitOpen = errors.New("circuit open")

// breaker is a circuit breaker for one upstream (its registry, token realm and redirect targets alike). After
// threshold failed exchanges in a row (a network error, a 5xx but 501 and 505, or a 429) it opens: for cooldown
// every request fails at once with ErrUnavailable, without touching the network, so a failing upstream is not
// hammered by retries from every pull and the proxy answers from what it has (stale tags, stored content) at
// once. Then one request at a time is let through as a probe: a success closes the breaker, a failure opens it
// for another cooldown. A request the caller cancelled does not count either way.
type breaker struct {
	threshold int
	cooldown  time.Duration
	inner     http.RoundTripper
	now       func() time.Time
	observe   func(open bool) // state changes; nil: none

	mu        sync.Mutex
	failures  int       // failed exchanges in a row
	openUntil time.Time // while failures >= threshold: no request before this
	probing   bool      // a probe is in flight: the others still fail fast
}

func (b *breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := b.allow(); err != nil {
		return nil, err
	}
	resp, err := b.inner.RoundTrip(req)
	b.record(req.Context(), resp, err)
	return resp, err
}

// allow says whether a request may go out now.
func (b *breaker) allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return nil
	}
	if wait := b.openUntil.Sub(b.now()); wait > 0 {
		return fmt.Errorf("%w: %w after %d failed requests in a row; next try in %v", ErrUnavailable, errCircuitOpen, b.failures, wait.Round(time.Second))
	}
	if b.probing {
		return fmt.Errorf("%w: %w after %d failed requests in a row; a probe is in flight", ErrUnavailable, errCircuitOpen, b.failures)
	}
	b.probing = true
	return nil
}

// record counts the outcome of one exchange, and tells the observer when that opened or closed the breaker.
func (b *breaker) record(ctx context.Context, resp *http.Response, err error) {
	opened, closed := b.count(ctx, resp, err)
	if b.observe != nil && (opened || closed) {
		b.observe(opened)
	}
}

func (b *breaker) count(ctx context.Context, resp *http.Response, err error) (opened, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasProbe := b.probing && b.failures >= b.threshold
	if wasProbe {
		b.probing = false
	}
	if err != nil && ctx.Err() != nil {
		return false, false // the caller gave up: says nothing about the upstream
	}
	if !failed(resp, err) {
		closed = b.failures >= b.threshold
		b.failures = 0
		return false, closed
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openUntil = b.now().Add(b.cooldown)
	}
	return b.failures == b.threshold, false
}

// failed says whether an exchange counts against the upstream's health: what the retry layer would retry.
func failed(resp *http.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, ErrForbiddenAddress) // our own refusal, not the upstream's failure
	}
	s := resp.StatusCode
	return s == http.StatusTooManyRequests || s >= 500 && s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported
}
