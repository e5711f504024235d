package verifier

import (
	"errors"
	"fmt"
)

// ErrUnavailable wraps every failure to read evidence from the registry:
// unreachable, 5xx, auth refused, a connection dropped mid-read. The result is
// unknown, not negative; callers fail closed. Content the registry did serve
// but that cannot count (too large, malformed, not matching its descriptor)
// is not an error: it is invalid evidence, reported in the verdict.
var ErrUnavailable = errors.New("verifier: evidence unavailable")

// ErrUnknownRoot is returned when a call names a trust root that New was not
// given.
var ErrUnknownRoot = errors.New("verifier: unknown trust root")

// RootError says that the material of one trust root could not be used.
type RootError struct {
	Root string // the root's name
	Err  error
}

func (e *RootError) Error() string {
	return fmt.Sprintf("verifier: trust root %q: %v", e.Root, e.Err)
}

func (e *RootError) Unwrap() error { return e.Err }

// unavailable wraps err, which happened while doing what, as ErrUnavailable.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}
