package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

const (
	maxBackoff    = 5 * time.Second
	maxRetryAfter = 30 * time.Second
)

// retryTransport retries idempotent requests (GET, HEAD) after network errors, 5xx (but 501 and 505)
// and 429, with exponential backoff and jitter, honouring Retry-After. When attempts run out it returns
// the last response (or error) so the caller sees the real status.
type retryTransport struct {
	retries int
	base    time.Duration
	inner   http.RoundTripper
	// now is time.Now, replaceable in tests.
	now func() time.Time
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return t.inner.RoundTrip(req)
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		resp, err := t.inner.RoundTrip(req)
		if attempt >= t.retries || !retryable(ctx, resp, err) {
			return resp, err
		}
		wait := t.backoff(attempt)
		if resp != nil {
			if ra, ok := parseRetryAfter(resp.Header.Get("Retry-After"), t.now()); ok {
				wait = ra
			}
		}
		// Waiting past the deadline only to fail is pointless: hand back what we have.
		if dl, ok := ctx.Deadline(); ok && t.now().Add(wait).After(dl) {
			return resp, err
		}
		drainClose(resp)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func retryable(ctx context.Context, resp *http.Response, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		// Errors from our own auth layer (a refused realm, bad token response) and refused addresses
		// will not heal.
		var ae *authError
		var ce *tls.CertificateVerificationError
		return !errors.As(err, &ae) && !errors.As(err, &ce) && !errors.Is(err, ErrForbiddenAddress) && !errors.Is(err, errCircuitOpen)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		return true
	case s == http.StatusNotImplemented, s == http.StatusHTTPVersionNotSupported:
		return false
	default:
		return s >= 500
	}
}

// backoff is base*2^attempt capped at maxBackoff, with "equal jitter": half fixed, half random.
func (t *retryTransport) backoff(attempt int) time.Duration {
	d := t.base
	for i := 0; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// parseRetryAfter reads delay-seconds or an HTTP-date, capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0, false
		}
		d = time.Duration(min(secs, int(maxRetryAfter/time.Second))) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		d = max(at.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, maxRetryAfter), true
}
