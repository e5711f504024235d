package report

import (
	"errors"
	"fmt"
)

// Limits on what a report may hold. A larger input is refused, never cut short.
const (
	// MaxFindings is the most findings one report may name.
	MaxFindings = 100000
	// MaxSize is the largest input, in bytes, a parser accepts.
	MaxSize = 64 << 20
)

var (
	// ErrMalformed wraps every failure to read a report in a format that was
	// recognised: bad JSON, wrong field types, impossible values.
	ErrMalformed = errors.New("report: malformed")
	// ErrUnsupported is returned for input that is not a format this package
	// reads, or a version of one it does not.
	ErrUnsupported = errors.New("report: unsupported format")
	// ErrTooLarge is returned for input over MaxSize bytes or with more than
	// MaxFindings findings.
	ErrTooLarge = errors.New("report: too large")
)

// malformed wraps err, found while reading format, as ErrMalformed.
func malformed(format string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformed, format, err)
}

// malformedf is malformed with a message of its own.
func malformedf(format, msg string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, format, fmt.Sprintf(msg, args...))
}

// unsupportedf says why input is not a format or version this package reads.
func unsupportedf(msg string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(msg, args...))
}

// checkSize refuses input over MaxSize.
func checkSize(format string, b []byte) error {
	if len(b) > MaxSize {
		return fmt.Errorf("%w: %s: %d bytes, max %d", ErrTooLarge, format, len(b), MaxSize)
	}
	return nil
}
