package admin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/admission"
)

// Audit is the audit log: records written and queried. *admission.Auditor implements it.
type Audit interface {
	Record(ctx context.Context, rec admission.AuditRecord) error
	Query(ctx context.Context, q admission.AuditQuery) ([]admission.AuditRecord, error)
}

var _ Audit = (*admission.Auditor)(nil)

// record writes the audit record of a change made through the API: actor and time filled, the reason from the
// X-Portcullis-Reason header unless the record has one. Without an audit log it is a structured log line.
func (a *API) record(r *http.Request, who Principal, rec admission.AuditRecord) {
	rec.Kind, rec.Actor = admission.AuditChange, who.Name
	if rec.Reason == "" {
		rec.Reason = r.Header.Get("X-Portcullis-Reason")
	}
	if a.audit == nil {
		a.log.Info("audit", "audit", true, "kind", rec.Kind, "actor", rec.Actor, "action", rec.Action, "image", rec.Image,
			"entry", rec.Entry, "reason", rec.Reason, "detail", rec.Detail)
		return
	}
	_ = a.audit.Record(context.WithoutCancel(r.Context()), rec)
}

// getAudit answers GET /admin/v1/audit?since=&until=&image=&actor=&kind=&limit=, newest first.
func (a *API) getAudit(w http.ResponseWriter, r *http.Request, _ Principal) {
	q := r.URL.Query()
	var aq admission.AuditQuery
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				adminError(w, http.StatusBadRequest, "PARAM_INVALID", f.name+": want an RFC 3339 time, e.g. 2026-11-29T12:00:00Z, not "+strconv.Quote(v))
				return
			}
			*f.dst = t
		}
	}
	aq.Image, aq.Actor, aq.Kind = q.Get("image"), q.Get("actor"), admission.AuditKind(q.Get("kind"))
	switch aq.Kind {
	case "", admission.AuditChange, admission.AuditDenial, admission.AuditBreakGlass, admission.AuditKeptLastGood, admission.AuditWarning:
	default:
		adminError(w, http.StatusBadRequest, "PARAM_INVALID", "kind: want change, denial, break-glass, kept-last-good or warning, not "+strconv.Quote(string(aq.Kind)))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			adminError(w, http.StatusBadRequest, "PARAM_INVALID", "limit: want 1 to 10000, not "+strconv.Quote(v))
			return
		}
		aq.Limit = n
	}
	recs, err := a.audit.Query(r.Context(), aq)
	if err != nil {
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "audit log unreadable: "+err.Error())
		return
	}
	if recs == nil {
		recs = []admission.AuditRecord{}
	}
	writeAdminJSON(w, http.StatusOK, map[string]any{"records": recs})
}
