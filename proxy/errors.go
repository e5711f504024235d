package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// OCI distribution error codes (the spec's list, plus Distribution's UNAVAILABLE and UNKNOWN).
const (
	codeBlobUnknown     = "BLOB_UNKNOWN"
	codeDigestInvalid   = "DIGEST_INVALID"
	codeManifestInvalid = "MANIFEST_INVALID"
	codeManifestUnknown = "MANIFEST_UNKNOWN"
	codeNameInvalid     = "NAME_INVALID"
	codeNameUnknown     = "NAME_UNKNOWN"
	codeDenied          = "DENIED"
	codeUnsupported     = "UNSUPPORTED"
	codeTooManyRequests = "TOOMANYREQUESTS"
	codeUnavailable     = "UNAVAILABLE"
	codeUnknown         = "UNKNOWN"
	codePaginationInval = "PAGINATION_NUMBER_INVALID"
)

// spoolRetryAfter is the Retry-After, in seconds, of a blob refused because the spool is full: downloads in flight
// need time to finish.
const spoolRetryAfter = 10

// apiError is an error with its HTTP status and OCI code already chosen.
type apiError struct {
	status  int
	code    string
	message string
	detail  any
	// retryAfter, in seconds, is sent as Retry-After when positive.
	retryAfter int
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

var errRouteUnknown = &apiError{status: http.StatusNotFound, code: codeNameUnknown, message: "unknown route: this proxy serves the OCI distribution pull API under /v2/"}

// toAPIError maps an inner error to the OCI error a client sees. k says whether the request was for a manifest,
// a blob or something else, because "not found" has a code per kind.
func toAPIError(err error, k kind, r route) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	up := ""
	if r.upstream != nil {
		up = r.upstream.Name
	}
	switch {
	case errors.Is(err, upstream.ErrNotFound):
		switch k {
		case kindManifest:
			return &apiError{status: http.StatusNotFound, code: codeManifestUnknown, message: fmt.Sprintf("manifest %s not found in %s/%s", r.ref, up, r.repo)}
		case kindBlob:
			return &apiError{status: http.StatusNotFound, code: codeBlobUnknown, message: fmt.Sprintf("blob %s not found in %s/%s", r.dgst, up, r.repo)}
		default:
			return &apiError{status: http.StatusNotFound, code: codeNameUnknown, message: fmt.Sprintf("repository %s/%s not found", up, r.repo)}
		}
	case errors.Is(err, upstream.ErrForbiddenAddress):
		// Before ErrUnauthorized: a refused token realm carries both.
		return &apiError{status: http.StatusBadGateway, code: codeUnknown,
			message: fmt.Sprintf("upstream %s sent Portcullis to an address it may not connect to (a redirect or token realm on a private network); refused: %v", up, err)}
	case errors.Is(err, upstream.ErrUnauthorized), errors.Is(err, upstream.ErrDenied):
		return &apiError{status: http.StatusForbidden, code: codeDenied,
			message: fmt.Sprintf("upstream %s refused access to %s (the repository does not exist or needs credentials): %v", up, r.repo, err)}
	case errors.Is(err, upstream.ErrDigestMismatch), errors.Is(err, errBlobMismatch):
		return &apiError{status: http.StatusBadGateway, code: codeUnknown, message: fmt.Sprintf("upstream %s sent content that does not match its digest; nothing was served or stored", up)}
	case errors.Is(err, upstream.ErrTooLarge):
		return &apiError{status: http.StatusBadGateway, code: codeManifestInvalid, message: fmt.Sprintf("upstream %s sent a manifest over the size limit: %v", up, err)}
	case errors.Is(err, errSpoolFull):
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable,
			message: "portcullis is busy: its spool for blob downloads is full (content.spoolMaxSize); try again shortly", retryAfter: spoolRetryAfter}
	case errors.Is(err, errShortBlob):
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: fmt.Sprintf("upstream %s sent a truncated blob; nothing was served or stored", up), retryAfter: 5}
	case errors.Is(err, upstream.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: fmt.Sprintf("upstream %s is unavailable: %v", up, err), retryAfter: 5}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, message: "request timed out: " + err.Error(), retryAfter: 1}
	}
	return &apiError{status: http.StatusInternalServerError, code: codeUnknown, message: err.Error()}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError sends the spec's error body. HEAD requests get the status alone.
func writeError(w http.ResponseWriter, req *http.Request, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.code, Message: e.message, Detail: e.detail}}})
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strconv.Quote(s)
}
