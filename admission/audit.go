package admission

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Journal is the bounded, append-only log the audit records go to: a durable file when embedded, Redis in a fleet
// (cache.Journal). The oldest records go first when it is full.
type Journal interface {
	Append(ctx context.Context, name string, rec []byte) error
	// Range calls fn with records newest first until fn returns false.
	Range(ctx context.Context, name string, fn func(rec []byte) bool) error
}

// AuditKind is what an audit record is about.
type AuditKind string

// Audit record kinds.
const (
	// AuditChange is an admin change: a list entry added or removed, a report or VEX posted, a policy reloaded,
	// cached decisions forgotten. Actor names the admin token.
	AuditChange AuditKind = "change"
	// AuditDenial is an image refused: by the policy (recorded when decided, not for every cached answer) or by
	// a deny-list entry.
	AuditDenial AuditKind = "denial"
	// AuditBreakGlass is a pull admitted by an allow-list entry, the gates skipped.
	AuditBreakGlass AuditKind = "break-glass"
	// AuditKeptLastGood is a tag served at its last admitted digest because it moved to a denied one.
	AuditKeptLastGood AuditKind = "kept-last-good"
	// AuditWarning is an image served although its rule failed, because the rule is in warn or audit mode
	// (recorded when decided, not for every cached answer): what enforcing the rule would refuse.
	AuditWarning AuditKind = "warning"
)

// AuditRecord is one audit log entry. Every field but Time and Kind is optional.
type AuditRecord struct {
	Time time.Time `json:"time"`
	Kind AuditKind `json:"kind"`
	// Actor is who acted: an admin token's name; empty for what the gate did on a pull.
	Actor string `json:"actor,omitempty"`
	// Action says what changed, for AuditChange: "deny.add", "allow.remove", "report", "vex", "policy.reload",
	// "decisions.forget".
	Action string `json:"action,omitempty"`
	// Image is upstream/repository@digest (or a repository, or a match pattern) the record is about.
	Image string `json:"image,omitempty"`
	Tag   string `json:"tag,omitempty"`
	// Entry is the list entry involved.
	Entry string `json:"entry,omitempty"`
	// Reason is why: the denial's message, the entry's reason, the reason an admin gave.
	Reason string `json:"reason,omitempty"`
	// Detail holds what else the record needs (the CVEs a VEX waived, the old and new policy hash).
	Detail map[string]any `json:"detail,omitempty"`
}

// auditJournal is the Journal name of the audit log.
const auditJournal = "audit"

// Auditor writes audit records to the journal and as structured log records (audit=true). Denials of one image
// for one reason are recorded once a minute at most, so a crash-looping pod does not flood the log.
type Auditor struct {
	journal Journal
	log     *slog.Logger
	now     func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // denial key -> when last recorded
}

// NewAuditor returns an Auditor on journal.
func NewAuditor(journal Journal, log *slog.Logger) *Auditor {
	return &Auditor{journal: journal, log: log, now: time.Now, seen: map[string]time.Time{}}
}

// Record writes rec (Time is set when zero). A journal failure is logged and returned: the log record is written
// either way.
func (a *Auditor) Record(ctx context.Context, rec AuditRecord) error {
	if rec.Time.IsZero() {
		rec.Time = a.now().UTC()
	}
	if rec.Kind == AuditDenial && !a.firstInAMinute(rec.Image+"|"+rec.Reason, rec.Time) {
		return nil
	}
	a.log.Info("audit", "audit", true, "kind", rec.Kind, "actor", rec.Actor, "action", rec.Action, "image", rec.Image,
		"tag", rec.Tag, "entry", rec.Entry, "reason", rec.Reason, "detail", rec.Detail)
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := a.journal.Append(ctx, auditJournal, b); err != nil {
		a.log.Warn("audit journal write failed; the record is in the log only", "error", err)
		return err
	}
	return nil
}

func (a *Auditor) firstInAMinute(key string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.seen[key]; ok && now.Sub(last) < time.Minute {
		return false
	}
	if len(a.seen) > 10000 {
		for k, t := range a.seen {
			if now.Sub(t) >= time.Minute {
				delete(a.seen, k)
			}
		}
	}
	a.seen[key] = now
	return true
}

// AuditQuery selects audit records; zero fields select everything.
type AuditQuery struct {
	Since, Until time.Time
	// Image matches records whose Image contains it.
	Image string
	Actor string
	Kind  AuditKind
	// Limit caps the answer (newest first); <= 0 means 100.
	Limit int
}

// Query returns the records q selects, newest first.
func (a *Auditor) Query(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []AuditRecord
	err := a.journal.Range(ctx, auditJournal, func(b []byte) bool {
		var r AuditRecord
		if json.Unmarshal(b, &r) != nil {
			return true
		}
		if !q.Until.IsZero() && r.Time.After(q.Until) {
			return true
		}
		if !q.Since.IsZero() && r.Time.Before(q.Since) {
			return false // newest first: everything after this is older still
		}
		if (q.Image != "" && !strings.Contains(r.Image, q.Image)) || (q.Actor != "" && r.Actor != q.Actor) || (q.Kind != "" && r.Kind != q.Kind) {
			return true
		}
		out = append(out, r)
		return len(out) < q.Limit
	})
	return out, err
}

// audit records rec if the gate has an auditor.
func (g *Gate) audit(ctx context.Context, rec AuditRecord) {
	if g.auditor != nil {
		_ = g.auditor.Record(context.WithoutCancel(ctx), rec)
	}
}
