package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotFound: the upstream has no such repository, manifest, blob or tag.
	ErrNotFound = errors.New("upstream: not found")
	// ErrUnauthorized: the upstream wants credentials that were missing or rejected, or a token could
	// not be obtained safely (for example a refused token realm).
	ErrUnauthorized = errors.New("upstream: unauthorized")
	// ErrDenied: the upstream refused access (403).
	ErrDenied = errors.New("upstream: denied")
	// ErrTooLarge: a response body exceeded its cap.
	ErrTooLarge = errors.New("upstream: response too large")
	// ErrDigestMismatch: the bytes do not hash to the digest they were asked for or advertised with.
	ErrDigestMismatch = errors.New("upstream: digest mismatch")
	// ErrForbiddenAddress: a redirect or token realm led to a loopback, private or link-local address the
	// client may not connect to (the registry is not on one of that kind and private addresses were not
	// allowed). It is not retried.
	ErrForbiddenAddress = errors.New("upstream: connection to a non-public address refused")
	// ErrUnavailable: the upstream could not be reached or kept failing (5xx, 429, network error or
	// timeout) after retries. The proxy may serve stale content on it.
	ErrUnavailable = errors.New("upstream: unavailable")
)

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// Error is an error response from the upstream, with the first entry of its OCI error body if it had
// one. It matches the sentinels with errors.Is: 404 or a *_UNKNOWN code is ErrNotFound, 401 is
// ErrUnauthorized, 403 is ErrDenied, 5xx and 429 (returned after retries) are ErrUnavailable.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the OCI error code, e.g. MANIFEST_UNKNOWN; empty if the body had none (HEAD, non-JSON).
	Code string
	// Message is the OCI error message, or a short excerpt of a non-JSON body.
	Message string
	// Op names the upstream and the operation, e.g. "docker.io manifest library/alpine:3.20".
	Op string
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("upstream ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		b.WriteString(": ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is maps the status and code to the package's sentinel errors.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		switch e.Code {
		case "NAME_UNKNOWN", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN":
			return true
		}
		return e.Status == http.StatusNotFound
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrDenied:
		return e.Status == http.StatusForbidden
	case ErrUnavailable:
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return false
}

// newError builds an *Error from a non-success response, reading at most maxErrorBody of its body.
// The caller still closes resp.Body.
func newError(op string, resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode, Op: op}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		e.Code, e.Message = env.Errors[0].Code, env.Errors[0].Message
		return e
	}
	if msg := strings.TrimSpace(string(body)); msg != "" && isPrintable(msg) {
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		e.Message = msg
	}
	return e
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

// classified reports whether err already carries one of the sentinels, so it is returned as is rather
// than being reported as ErrUnavailable.
func classified(err error) bool {
	for _, s := range []error{ErrNotFound, ErrUnauthorized, ErrDenied, ErrTooLarge, ErrDigestMismatch, ErrForbiddenAddress, ErrUnavailable} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
