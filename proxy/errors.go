package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/upstream"
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
	// reasonPhrase puts the message in the HTTP/1.1 status line of a HEAD answer, which has no body: the status
	// line is all that containerd (and so kubelet's events) shows of a failed HEAD.
	reasonPhrase bool
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
	case errors.Is(err, errContentType):
		return &apiError{status: http.StatusBadGateway, code: codeManifestInvalid,
			message: fmt.Sprintf("upstream %s sent a manifest whose Content-Type contradicts its bytes; nothing was served or stored: %v", up, err)}
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

// writeError sends the spec's error body. HEAD requests get the status alone, with the message as the reason
// phrase when e asks for it.
func writeError(w http.ResponseWriter, req *http.Request, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.code, Message: e.message, Detail: e.detail}}})
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead && e.reasonPhrase && writeWithReason(w, req, e.status, e.message) {
		return
	}
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

// maxReasonPhrase caps the reason phrase; a longer message is cut (the Warning header has it whole).
const maxReasonPhrase = 1024

// writeWithReason answers a bodiless request with status and a reason phrase of its own, which net/http cannot
// send: it takes over the HTTP/1.x connection, writes the status line and the headers already set, and closes
// the connection. It reports false (nothing written) on HTTP/2 or when the connection cannot be taken over.
func writeWithReason(w http.ResponseWriter, req *http.Request, status int, reason string) bool {
	if req.ProtoMajor != 1 {
		return false
	}
	rc := http.NewResponseController(w)
	conn, brw, err := rc.Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if sw, ok := w.(*statusWriter); ok {
		sw.code, sw.wrote = status, true
	}
	h := w.Header().Clone()
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	_, _ = fmt.Fprintf(brw, "HTTP/1.1 %03d %s\r\n", status, reasonPhrase(reason))
	_ = h.Write(brw)
	_, _ = brw.WriteString("\r\n")
	_ = brw.Flush()
	return true
}

// reasonPhrase makes s a valid HTTP/1.1 reason phrase (RFC 9112: tab, space, visible ASCII and obs-text): control
// characters become spaces, and it is capped.
func reasonPhrase(s string) string {
	b := []byte(s)
	if len(b) > maxReasonPhrase {
		b = append(b[:maxReasonPhrase-3], "..."...)
	}
	for i, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}
