package dct

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/theupdateframework/notary/storage"
)

// bounded is the RoundTripper to notary servers: every request has a deadline (body included) and every
// response body a size cap, so a slow or hostile server costs a bounded time and memory.
type bounded struct {
	next    http.RoundTripper
	timeout time.Duration
	max     int64
}

func (b *bounded) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), b.timeout)
	resp, err := b.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cappedBody{r: resp.Body, left: b.max, cancel: cancel}
	return resp, nil
}

// errTooLarge is a response larger than the metadata size cap.
var errTooLarge = errors.New("trust metadata larger than the size limit")

// cappedBody fails a read past its cap and ends the request's deadline on Close.
type cappedBody struct {
	r      io.ReadCloser
	left   int64
	cancel context.CancelFunc
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more tells a body of exactly the cap from a larger one.
		var one [1]byte
		if n, _ := c.r.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return c.r.Read(p)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cappedBody) Close() error {
	c.cancel()
	return c.r.Close()
}

// ErrUnreachable is a notary server that could not be asked (network error, timeout, 5xx) with no trust data
// read before that is still valid: the caller cannot decide. Every other error means the trust data did not
// verify.
var ErrUnreachable = errors.New("notary server unreachable")

// unreachable is a failure to reach the notary server: the one failure under which trust data read before may
// still be used, until it expires.
type unreachable struct{ err error }

func (u unreachable) Error() string        { return fmt.Sprintf("%v: %v", ErrUnreachable, u.err) }
func (u unreachable) Unwrap() error        { return u.err }
func (u unreachable) Is(target error) bool { return target == ErrUnreachable }

// explain classifies a load error: unreachable when the server could not be asked.
func explain(err error) error {
	var ne storage.NetworkError
	var su storage.ErrServerUnavailable
	if errors.As(err, &ne) || errors.As(err, &su) || errors.Is(err, context.DeadlineExceeded) {
		return unreachable{err}
	}
	return err
}
