package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// roleAuth authenticates "Bearer w" as a writer named alice and "Bearer r" as a reader named rob.
type roleAuth struct{}

func (roleAuth) Authenticate(r *http.Request) (Principal, error) {
	switch r.Header.Get("Authorization") {
	case "Bearer w":
		return Principal{Name: "alice", Role: RoleWrite}, nil
	case "Bearer r":
		return Principal{Name: "rob", Role: RoleRead}, nil
	}
	return Principal{}, ErrNoCredential
}

func apiCall(t *testing.T, h http.Handler, method, path, token, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// errorCode returns the OCI-shaped error's code and message.
func errorCode(t *testing.T, body string) (string, string) {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || len(eb.Errors) != 1 {
		t.Fatalf("error body %q is not {\"errors\":[{code,message}]}", body)
	}
	return eb.Errors[0].Code, eb.Errors[0].Message
}

func TestListEndpoints(t *testing.T) {
	api := fullAPI(t, roleAuth{})
	digest := "sha256:" + strings.Repeat("ab", 32)
	future := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)

	t.Run("validation errors name the field", func(t *testing.T) {
		for _, tc := range []struct{ body, field, says string }{
			{`{"match": "ghcr.io/acme/***", "reason": "x"}`, "match", "** must be a whole path segment"},
			{`{"match": "ghcr.io/acme/app@sha256:123", "reason": "x"}`, "match", "bad digest"},
			{`{"match": "app", "reason": "x"}`, "match", "names no upstream and repository"},
			{`{"match": "ghcr.io/acme/app", "reason": ""}`, "reason", "required"},
			{`{"match": "ghcr.io/acme/app", "reason": "x", "expires": "2020-01-01T00:00:00Z"}`, "expires", "in the past"},
			{`{"match": "ghcr.io/acme/app", "reason": "x", "expires": "tomorrow"}`, "expires", "RFC 3339"},
		} {
			code, body := apiCall(t, api, http.MethodPost, "/admin/v1/deny", "w", tc.body)
			c, msg := errorCode(t, body)
			if code != http.StatusBadRequest || c != "FIELD_INVALID" || !strings.HasPrefix(msg, tc.field+":") || !strings.Contains(msg, tc.says) {
				t.Errorf("%s: %d %s %q; want 400 FIELD_INVALID on %s saying %q", tc.body, code, c, msg, tc.field, tc.says)
			}
		}
		code, body := apiCall(t, api, http.MethodPost, "/admin/v1/deny", "w", `{"match": "ghcr.io/a/b", "reason": "x", "color": "red"}`)
		if c, msg := errorCode(t, body); code != http.StatusBadRequest || c != "BODY_INVALID" || !strings.Contains(msg, "color") {
			t.Errorf("unknown field: %d %s %s", code, c, msg)
		}
	})
	t.Run("add, list with who, when, why and until when, remove", func(t *testing.T) {
		code, body := apiCall(t, api, http.MethodPost, "/admin/v1/deny", "w",
			`{"match": "docker.io/library/nginx@`+digest+`", "reason": "CVE-2024-3094", "expires": "`+future+`"}`)
		var created struct {
			ID string `json:"id"`
		}
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil || !strings.HasPrefix(created.ID, "deny-") {
			t.Fatalf("POST: %d %s", code, body)
		}
		code, body = apiCall(t, api, http.MethodGet, "/admin/v1/deny", "r", "")
		var list struct {
			Entries []struct {
				ID, Match, Reason, By string
				Added, Expires        time.Time
			} `json:"entries"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list.Entries) != 1 {
			t.Fatalf("GET: %d %s", code, body)
		}
		e := list.Entries[0]
		if e.ID != created.ID || e.By != "alice" || e.Reason != "CVE-2024-3094" || e.Added.IsZero() || e.Expires.Format(time.RFC3339) != future {
			t.Errorf("entry %+v", e)
		}
		if code, _ := apiCall(t, api, http.MethodGet, "/admin/v1/allow", "r", ""); code != http.StatusOK {
			t.Errorf("GET allow: %d", code)
		}
		if code, _ := apiCall(t, api, http.MethodDelete, "/admin/v1/deny/"+created.ID, "w", ""); code != http.StatusNoContent {
			t.Errorf("DELETE: %d", code)
		}
		code, body = apiCall(t, api, http.MethodDelete, "/admin/v1/deny/"+created.ID, "w", "")
		if c, _ := errorCode(t, body); code != http.StatusNotFound || c != "NOT_FOUND" {
			t.Errorf("DELETE again: %d %s", code, body)
		}
		code, body = apiCall(t, api, http.MethodGet, "/admin/v1/audit?actor=alice&kind=change", "r", "")
		if code != http.StatusOK || !strings.Contains(body, `"action":"deny.add"`) || !strings.Contains(body, `"action":"deny.remove"`) {
			t.Errorf("audit: %d %s", code, body)
		}
	})
	t.Run("roles", func(t *testing.T) {
		code, body := apiCall(t, api, http.MethodPost, "/admin/v1/allow", "r", `{"match": "ghcr.io/a/b", "reason": "x"}`)
		if c, _ := errorCode(t, body); code != http.StatusForbidden || c != "DENIED" {
			t.Errorf("read token adding: %d %s", code, body)
		}
		if code, _ := apiCall(t, api, http.MethodDelete, "/admin/v1/allow/allow-x", "r", ""); code != http.StatusForbidden {
			t.Errorf("read token removing: %d", code)
		}
		code, _ = apiCall(t, api, http.MethodGet, "/admin/v1/deny", "", "")
		if code != http.StatusUnauthorized {
			t.Errorf("no token: %d", code)
		}
	})
	t.Run("audit query validation", func(t *testing.T) {
		for _, q := range []string{"since=yesterday", "kind=everything", "limit=0", "limit=x"} {
			code, body := apiCall(t, api, http.MethodGet, "/admin/v1/audit?"+q, "r", "")
			if c, _ := errorCode(t, body); code != http.StatusBadRequest || c != "PARAM_INVALID" {
				t.Errorf("%s: %d %s", q, code, body)
			}
		}
	})
}
