package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
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

func (a *API) postReport(w http.ResponseWriter, r *http.Request, who Principal) {
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
	a.record(r, who, admission.AuditRecord{Action: "report", Image: dgst.String(), Detail: map[string]any{
		"scanner": rep.Scanner, "findings": len(rep.Findings), "scanTime": rep.ScanTime}})
	writeAdminJSON(w, http.StatusCreated, map[string]any{"digest": dgst, "scanner": rep.Scanner, "findings": len(rep.Findings), "scanTime": rep.ScanTime})
}

func (a *API) postVEX(w http.ResponseWriter, r *http.Request, who Principal) {
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
		a.record(r, who, admission.AuditRecord{Action: "vex", Image: d.String(), Detail: map[string]any{
			"waived": change.Waived, "withdrawn": change.Withdrawn}})
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
