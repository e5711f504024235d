package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/httpauth"
)

// Role is what a principal may do: read (list, explain, audit, show and preview the policy) or write (everything,
// changes included: lists, reports, reloading the policy, forgetting decisions).
type Role string

// The roles.
const (
	RoleRead  Role = "read"
	RoleWrite Role = "write"
)

// allows reports whether r may do what need asks.
func (r Role) allows(need Role) bool { return r == RoleWrite || r == need }

// Principal is who is calling: the name audit records give as the actor, and the role.
type Principal struct {
	Name string
	Role Role
}

// Authenticator says who sent a request. Its error means no valid credential (401); a principal whose role is too
// weak for the route gets 403.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// StaticToken is one bearer token, compared in constant time, that is a write principal named "admin": for tests
// and embedders. The binary uses Tokens, which keeps only hashes, for admin.token and admin.tokens alike.
type StaticToken string

// Authenticate implements Authenticator.
func (s StaticToken) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, ErrNoCredential
	}
	tok, ok := httpauth.Bearer(h)
	if !ok || s == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s)) != 1 {
		return Principal{}, ErrBadCredential
	}
	return Principal{Name: "admin", Role: RoleWrite}, nil
}

// API is the admin API: its own listener, authenticated, never the registry port.
type API struct {
	auth    Authenticator
	reports Reports
	lists   Lists
	audit   Audit
	log     *slog.Logger
	mux     *http.ServeMux
	now     func() time.Time
	limiter *failureLimiter
	routes  []Route

	resolver  Resolver
	tags      TagTrust // nil: tags resolve at the registry only
	explainer Explainer
	forgetter Forgetter
	policies  Policies
	previewer Previewer
	manifests admission.Manifests
}

// Option configures an API.
type Option func(*API) error

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(a *API) error { a.log = l; return nil } }

// WithReports serves POST /admin/v1/reports/{digest} and POST /admin/v1/vex. Default: not served.
func WithReports(r Reports) Option { return func(a *API) error { a.reports = r; return nil } }

// WithLists serves the allow and deny lists under /admin/v1/allow and /admin/v1/deny. Default: not served.
func WithLists(l Lists) Option { return func(a *API) error { a.lists = l; return nil } }

// WithAudit serves GET /admin/v1/audit and records every change made through the API. Default: changes are
// logged only.
func WithAudit(au Audit) Option { return func(a *API) error { a.audit = au; return nil } }

// New returns the admin API handler. An Authenticator is required: the admin API is never open.
func New(auth Authenticator, opts ...Option) (*API, error) {
	if auth == nil {
		return nil, errors.New("admin: an authenticator is required")
	}
	a := &API{auth: auth, log: slog.Default(), mux: http.NewServeMux(), now: time.Now,
		limiter: newFailureLimiter(DefaultMaxFailures, DefaultFailureWindow, DefaultFailureBlock)}
	for _, o := range opts {
		if err := o(a); err != nil {
			return nil, err
		}
	}
	if a.reports != nil {
		a.handle("POST /admin/v1/reports/{digest}", RoleWrite, a.postReport)
		a.handle("POST /admin/v1/vex", RoleWrite, a.postVEX)
	}
	if a.lists != nil {
		a.routeLists()
	}
	if a.audit != nil {
		a.handle("GET /admin/v1/audit", RoleRead, a.getAudit)
	}
	if a.explainer != nil {
		a.handle("GET /admin/v1/explain", RoleRead, a.explain)
	}
	if a.forgetter != nil {
		a.handle("DELETE /admin/v1/decisions", RoleWrite, a.forgetDecisions)
	}
	if a.policies != nil {
		a.handle("GET /admin/v1/policy", RoleRead, a.getPolicy)
		a.handle("POST /admin/v1/policy/reload", RoleWrite, a.reloadPolicy)
		a.handle("POST /admin/v1/policy/preview", RoleRead, a.previewPolicy)
	}
	return a, nil
}

// handler is an admin route's handler, told who is calling.
type handler func(w http.ResponseWriter, r *http.Request, who Principal)

// Route is one admin route: its ServeMux pattern ("POST /admin/v1/deny") and the role it needs.
type Route struct {
	Pattern string
	Role    Role
}

// Routes returns the routes a serves, in the order they were registered. The OpenAPI document's test holds it to
// them, both ways.
func (a *API) Routes() []Route { return slices.Clone(a.routes) }

// handle registers h for pattern, for principals whose role allows need.
func (a *API) handle(pattern string, need Role, h handler) {
	a.routes = append(a.routes, Route{Pattern: pattern, Role: need})
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		who, ok := a.authenticate(w, r)
		if !ok {
			return
		}
		if !who.Role.allows(need) {
			adminError(w, http.StatusForbidden, "DENIED", fmt.Sprintf("%s has the %s role; %s %s needs %s", who.Name, who.Role, r.Method, r.URL.Path, need))
			return
		}
		h(w, r, who)
	})
}

// ServeHTTP serves the admin routes; an unknown route is 404 in the registry's error shape.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern == "" {
		if _, ok := a.authenticate(w, r); !ok {
			return
		}
		adminError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("no admin route %s %s", r.Method, r.URL.Path))
		return
	}
	a.mux.ServeHTTP(w, r)
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

// writeAdminJSON writes v as the JSON answer.
func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
