package harbor

import (
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrScanFailed is wrapped by the error for a report request the adapter
	// answered 500: the scan ran and failed (the pull was refused, the image
	// could not be read, the scanner crashed).
	ErrScanFailed = errors.New("harbor: scan failed")
	// ErrUnknownScan is wrapped by the error for a report request the adapter
	// answered 404: it does not know the scan id (expired, or the adapter
	// restarted and lost its queue).
	ErrUnknownScan = errors.New("harbor: unknown scan id")
	// ErrNotCapable is wrapped by the error for a request the adapter answered
	// 501: it cannot scan this kind of artifact or produce this report type.
	ErrNotCapable = errors.New("harbor: scanner not capable")
)

// APIError is an answer from the adapter other than the one the operation
// expects, with the message of its {"error":{"message"}} body when it has one.
type APIError struct {
	// Op is the operation: "metadata", "scan" or "report".
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the adapter's error message, or a prefix of a body that was not
	// an error document.
	Message string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("harbor: %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap maps the statuses with a meaning of their own to ErrScanFailed,
// ErrUnknownScan and ErrNotCapable.
func (e *APIError) Unwrap() error {
	switch {
	case e.StatusCode == http.StatusNotImplemented:
		return ErrNotCapable
	case e.Op == opReport && e.StatusCode == http.StatusNotFound:
		return ErrUnknownScan
	case e.Op == opReport && e.StatusCode == http.StatusInternalServerError:
		return ErrScanFailed
	}
	return nil
}
