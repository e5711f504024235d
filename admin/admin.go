package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/httpauth"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/report"
)

// maxReportBytes caps a posted report or VEX document.
const maxReportBytes = 32 << 20

// maxClockSkew is how far in the future a posted report's scan time or a VEX statement's timestamp may lie: a
// report dated later would count as fresh past its maxAge, a statement dated later would outrank every
// correction made before that date.
const maxClockSkew = 5 * time.Minute

// Reports is where posted reports and VEX go. *admission.Reports implements it.
type Reports interface {
	// Put stores r as the digest's report from source.
	Put(ctx context.Context, source policy.Source, dgst digest.Digest, r *policy.ScanReport) error
	// PutVEX adds VEX statements about the digest and says what they waived and withdrew.
	PutVEX(ctx context.Context, dgst digest.Digest, statements []policy.VEXStatement) (admission.VEXChange, error)
}

var _ Reports = (*admission.Reports)(nil)

// API is the admin API: its own listener, bearer-token protected, never the registry port. For now it takes
// the vulnerability reports CI posts (Trivy JSON, SARIF, CycloneDX) and OpenVEX documents, bound to digests.
type API struct {
	reports Reports
	token   string
	log     *slog.Logger
	mux     *http.ServeMux
	now     func() time.Time
}

// New returns the admin API handler. An empty token is an error: the admin API is never open.
func New(reports Reports, token string, log *slog.Logger) (*API, error) {
	if token == "" {
		return nil, errors.New("admin: a token is required")
	}
	a := &API{reports: reports, token: token, log: log, mux: http.NewServeMux(), now: time.Now}
	a.mux.HandleFunc("POST /admin/v1/reports/{digest}", a.postReport)
	a.mux.HandleFunc("POST /admin/v1/vex", a.postVEX)
	return a, nil
}

// ServeHTTP checks the bearer token, then serves the admin routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, ok := httpauth.Bearer(r.Header.Get("Authorization"))
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(a.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-admin"`)
		adminError(w, http.StatusUnauthorized, "UNAUTHORIZED", "a valid admin token is required")
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *API) postReport(w http.ResponseWriter, r *http.Request) {
	dgst, err := digest.Parse(r.PathValue("digest"))
	if err != nil {
		adminError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest: "+err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReportBytes))
	if err != nil {
		adminError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("report over %d bytes", maxReportBytes))
		return
	}
	rep, err := report.Detect(body)
	if err != nil {
		adminError(w, http.StatusBadRequest, "REPORT_INVALID", err.Error())
		return
	}
	// A report about another image must not decide this one: it is refused when it names image digests and the
	// URL's is not among them. A report that names none (Grype's SARIF, Trivy's of an image named by tag alone
	// without repo digests) is taken at the caller's word.
	about, err := report.ImageDigests(body)
	if err != nil {
		adminError(w, http.StatusBadRequest, "REPORT_INVALID", err.Error())
		return
	}
	if len(about) > 0 && !slices.Contains(about, dgst) {
		adminError(w, http.StatusBadRequest, "DIGEST_MISMATCH", fmt.Sprintf("the report is about %s, not %s (the digest in the URL)", joinDigests(about), dgst))
		return
	}
	if now := a.now(); rep.ScanTime.After(now.Add(maxClockSkew)) {
		adminError(w, http.StatusBadRequest, "REPORT_INVALID", fmt.Sprintf("the report's scan time %s is in the future (now %s, clock skew allowed %s)",
			rep.ScanTime.Format(time.RFC3339), now.UTC().Format(time.RFC3339), maxClockSkew))
		return
	}
	if err := a.reports.Put(r.Context(), policy.SourceCI, dgst, rep); err != nil {
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
		return
	}
	a.log.Info("audit: CI report stored", "audit", true, "who", "admin-token", "why", r.Header.Get("X-Portcullis-Reason"),
		"digest", dgst, "scanner", rep.Scanner, "findings", len(rep.Findings), "scanTime", rep.ScanTime)
	writeAdminJSON(w, http.StatusCreated, map[string]any{"digest": dgst, "scanner": rep.Scanner, "findings": len(rep.Findings), "scanTime": rep.ScanTime})
}

func (a *API) postVEX(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReportBytes))
	if err != nil {
		adminError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("document over %d bytes", maxReportBytes))
		return
	}
	doc, err := report.ParseOpenVEX(body)
	if err != nil {
		adminError(w, http.StatusBadRequest, "VEX_INVALID", err.Error())
		return
	}
	digests := doc.Digests()
	if len(digests) == 0 {
		adminError(w, http.StatusBadRequest, "VEX_INVALID", "no statement names an image digest (products[].@id as pkg:oci/...@sha256%3A... or sha256:...)")
		return
	}
	now := a.now()
	byDigest := make(map[digest.Digest][]policy.VEXStatement, len(digests))
	for _, d := range digests {
		byDigest[d] = doc.For(d)
		for _, st := range byDigest[d] {
			if st.Time.After(now.Add(maxClockSkew)) {
				adminError(w, http.StatusBadRequest, "VEX_INVALID", fmt.Sprintf("the statement about %s is dated %s, in the future (now %s, clock skew allowed %s)",
					st.IDs[0], st.Time.Format(time.RFC3339), now.UTC().Format(time.RFC3339), maxClockSkew))
				return
			}
		}
	}
	changes := make(map[digest.Digest]admission.VEXChange, len(digests))
	for _, d := range digests {
		change, err := a.reports.PutVEX(r.Context(), d, byDigest[d])
		if err != nil {
			adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
			return
		}
		changes[d] = change
		a.log.Info("audit: VEX stored", "audit", true, "who", "admin-token", "why", r.Header.Get("X-Portcullis-Reason"),
			"digest", d, "waived", change.Waived, "withdrawn", change.Withdrawn)
	}
	writeAdminJSON(w, http.StatusCreated, map[string]any{"digests": digests, "changes": changes})
}

// joinDigests lists digests for a message: "sha256:a… and sha256:b…".
func joinDigests(ds []digest.Digest) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return strings.Join(s, " and ")
}

// errorBody is the registry's error shape, {"errors":[{"code","message"}]}, which admin clients already parse.
type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func adminError(w http.ResponseWriter, status int, code, msg string) {
	writeAdminJSON(w, status, errorBody{Errors: []errorEntry{{Code: code, Message: msg}}})
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
