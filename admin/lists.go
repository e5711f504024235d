package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
)

// Lists are the allow and deny lists. *admission.Lists implements it.
type Lists interface {
	Add(ctx context.Context, kind admission.ListKind, match, reason string, expires time.Time, by string) (admission.ListEntry, error)
	Remove(ctx context.Context, kind admission.ListKind, id string) (admission.ListEntry, error)
	Entries(kind admission.ListKind) []admission.ListEntry
}

var _ Lists = (*admission.Lists)(nil)

func (a *API) routeLists() {
	for _, kind := range []admission.ListKind{admission.ListDeny, admission.ListAllow} {
		base := "/admin/v1/" + string(kind)
		a.handle("POST "+base, RoleWrite, func(w http.ResponseWriter, r *http.Request, who Principal) { a.addEntry(w, r, who, kind) })
		a.handle("GET "+base, RoleRead, func(w http.ResponseWriter, r *http.Request, _ Principal) {
			entries := a.lists.Entries(kind)
			if entries == nil {
				entries = []admission.ListEntry{}
			}
			writeAdminJSON(w, http.StatusOK, map[string]any{"entries": entries})
		})
		a.handle("DELETE "+base+"/{id}", RoleWrite, func(w http.ResponseWriter, r *http.Request, who Principal) { a.removeEntry(w, r, who, kind) })
	}
}

// entryRequest is the body of POST /admin/v1/{allow|deny}.
type entryRequest struct {
	Match   string `json:"match"`
	Reason  string `json:"reason"`
	Expires string `json:"expires,omitempty"`
}

func (a *API) addEntry(w http.ResponseWriter, r *http.Request, who Principal, kind admission.ListKind) {
	var req entryRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		adminError(w, http.StatusBadRequest, "BODY_INVALID", `want {"match": "upstream/repository-glob[:tag|@digest]", "reason": "...", "expires": "RFC 3339, optional"}: `+err.Error())
		return
	}
	var expires time.Time
	if req.Expires != "" {
		t, err := time.Parse(time.RFC3339, req.Expires)
		if err != nil {
			adminError(w, http.StatusBadRequest, "FIELD_INVALID", fmt.Sprintf("expires: want an RFC 3339 time such as 2026-12-31T00:00:00Z, not %q", req.Expires))
			return
		}
		expires = t
	}
	e, err := a.lists.Add(r.Context(), kind, req.Match, req.Reason, expires, who.Name)
	var fe *admission.FieldError
	switch {
	case errors.As(err, &fe):
		adminError(w, http.StatusBadRequest, "FIELD_INVALID", fe.Error())
		return
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", fmt.Sprintf("the %s list cannot be changed now (shared state unavailable; the lists in force stay as they are): %v", kind, err))
		return
	}
	a.record(r, who, admission.AuditRecord{Action: string(kind) + ".add", Image: e.Match, Entry: e.ID, Reason: e.Reason,
		Detail: map[string]any{"expires": e.Expires}})
	writeAdminJSON(w, http.StatusCreated, map[string]any{"id": e.ID, "entry": e})
}

func (a *API) removeEntry(w http.ResponseWriter, r *http.Request, who Principal, kind admission.ListKind) {
	id := r.PathValue("id")
	e, err := a.lists.Remove(r.Context(), kind, id)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		adminError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no %s-list entry %q", kind, id))
		return
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", fmt.Sprintf("the %s list cannot be changed now: %v", kind, err))
		return
	}
	a.record(r, who, admission.AuditRecord{Action: string(kind) + ".remove", Image: e.Match, Entry: id, Reason: r.Header.Get("X-Portcullis-Reason")})
	w.WriteHeader(http.StatusNoContent)
}
