package admin

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/admission"
)

const (
	ciToken     = "ci-0123456789abcdef0123456789abcdef"
	viewerToken = "viewer-0123456789abcdef0123456789ab"
)

func testTokens(t *testing.T) *Tokens {
	t.Helper()
	toks, err := NewTokens(Token{Name: "ci", Role: RoleWrite, Secret: ciToken}, Token{Name: "viewer", Role: RoleRead, Secret: viewerToken})
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// call sends one request to a from remote with the Authorization header auth ("" for none).
func call(a http.Handler, method, path, auth, remote, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if remote != "" {
		req.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	return rec
}

func TestAuthentication(t *testing.T) {
	const denyBody = `{"match":"ghcr.io/acme/**","reason":"CVE-2024-3094 rollout"}`
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		challenge                      string // the WWW-Authenticate header; "" for none
		actor                          string // the audit record's actor, for a change
	}{
		{name: "no credential", method: "GET", path: "/admin/v1/deny", status: 401, challenge: `Bearer realm="portcullis-admin"`},
		{name: "wrong token", method: "GET", path: "/admin/v1/deny", auth: "Bearer not-a-token", status: 401,
			challenge: `Bearer realm="portcullis-admin", error="invalid_token"`},
		{name: "another scheme", method: "GET", path: "/admin/v1/deny", auth: "Basic Y2k6c2VjcmV0", status: 401,
			challenge: `Bearer realm="portcullis-admin", error="invalid_token"`},
		{name: "a token's prefix", method: "GET", path: "/admin/v1/deny", auth: "Bearer " + ciToken[:len(ciToken)-1], status: 401,
			challenge: `Bearer realm="portcullis-admin", error="invalid_token"`},
		{name: "read token on a read route", method: "GET", path: "/admin/v1/deny", auth: "Bearer " + viewerToken, status: 200},
		{name: "read token on the audit log", method: "GET", path: "/admin/v1/audit", auth: "Bearer " + viewerToken, status: 200},
		{name: "read token on a write route", method: "POST", path: "/admin/v1/deny", auth: "Bearer " + viewerToken, body: denyBody, status: 403},
		{name: "write token on a write route", method: "POST", path: "/admin/v1/deny", auth: "Bearer " + ciToken, body: denyBody, status: 201, actor: "ci"},
		{name: "write token on a read route", method: "GET", path: "/admin/v1/allow", auth: "Bearer " + ciToken, status: 200},
		{name: "unknown route without a credential", method: "GET", path: "/admin/v1/nothing", status: 401, challenge: `Bearer realm="portcullis-admin"`},
		{name: "unknown route with a token", method: "GET", path: "/admin/v1/nothing", auth: "Bearer " + viewerToken, status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := fullAPI(t, testTokens(t), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			rec := call(a, tt.method, tt.path, tt.auth, "", tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if rec.Code >= 400 {
				var body errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code == "" {
					t.Errorf("error body %s is not {\"errors\":[{\"code\",\"message\"}]}", rec.Body)
				}
			}
			if strings.Contains(logs.String(), ciToken) || strings.Contains(logs.String(), viewerToken) {
				t.Errorf("a token is in the log:\n%s", logs.String())
			}
			if tt.status == 401 && !strings.Contains(logs.String(), "admin request refused") {
				t.Errorf("the refusal is not logged:\n%s", logs.String())
			}
			if tt.actor != "" {
				recs, err := a.audit.Query(t.Context(), admission.AuditQuery{})
				if err != nil || len(recs) != 1 || recs[0].Actor != tt.actor {
					t.Errorf("audit records %+v (%v), want one by %s", recs, err, tt.actor)
				}
			}
		})
	}
}

func TestNewTokens(t *testing.T) {
	tests := []struct {
		name   string
		tokens []Token
		want   string // substring of the error; "" for none
	}{
		{name: "two roles", tokens: []Token{{"ci", RoleWrite, "a"}, {"viewer", RoleRead, "b"}}},
		{name: "no tokens", tokens: nil},
		{name: "no name", tokens: []Token{{"", RoleWrite, "a"}}, want: `name ""`},
		{name: "a name with a space", tokens: []Token{{"ci bot", RoleWrite, "a"}}, want: `name "ci bot"`},
		{name: "a name twice", tokens: []Token{{"ci", RoleWrite, "a"}, {"ci", RoleRead, "b"}}, want: `"ci": the name is used twice`},
		{name: "unknown role", tokens: []Token{{"ci", "admin", "a"}}, want: `role must be read or write, not "admin"`},
		{name: "empty token", tokens: []Token{{"ci", RoleWrite, ""}}, want: `"ci": the token is empty`},
		{name: "one token, two names", tokens: []Token{{"ci", RoleWrite, "a"}, {"viewer", RoleRead, "a"}}, want: `"viewer": the same token as "ci"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTokens(tt.tokens...)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("NewTokens: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("NewTokens = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestTokensKeepOnlyHashes: nothing of the token itself is kept, only its SHA-256.
func TestTokensKeepOnlyHashes(t *testing.T) {
	toks := testTokens(t)
	if dump := fmt.Sprintf("%+v %#v", *toks, toks.hashes); strings.Contains(dump, ciToken) || strings.Contains(dump, viewerToken) ||
		strings.Contains(dump, fmt.Sprintf("%v", []byte(ciToken))) {
		t.Errorf("the tokens are kept as they are: %s", dump)
	}
}

// verifiedRequest is a request over TLS whose client certificate (subject CN cn) the listener verified, or only
// presented when verified is false.
func verifiedRequest(cn string, verified bool) *http.Request {
	req := httptest.NewRequest("GET", "/admin/v1/deny", nil)
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	if verified {
		req.TLS.VerifiedChains = [][]*x509.Certificate{{cert}}
	}
	return req
}

func TestClientCerts(t *testing.T) {
	mapping := map[string]Principal{"ci-runner.acme.internal": {Name: "ci", Role: RoleWrite}}
	tests := []struct {
		name        string
		defaultRole Role
		req         *http.Request
		want        Principal
		err         error
	}{
		{name: "mapped", defaultRole: RoleRead, req: verifiedRequest("ci-runner.acme.internal", true), want: Principal{"ci", RoleWrite}},
		{name: "mapped, no default role", req: verifiedRequest("ci-runner.acme.internal", true), want: Principal{"ci", RoleWrite}},
		{name: "unmapped: its common name, the default role", defaultRole: RoleRead, req: verifiedRequest("alice", true), want: Principal{"alice", RoleRead}},
		{name: "unmapped without a default role", req: verifiedRequest("alice", true), err: ErrBadCredential},
		{name: "unmapped, a common name that is no name", defaultRole: RoleRead, req: verifiedRequest("alice smith", true), err: ErrBadCredential},
		{name: "presented but not verified", defaultRole: RoleRead, req: verifiedRequest("ci-runner.acme.internal", false), err: ErrNoCredential},
		{name: "plain HTTP", defaultRole: RoleRead, req: httptest.NewRequest("GET", "/admin/v1/deny", nil), err: ErrNoCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClientCerts(mapping, tt.defaultRole)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Authenticate(tt.req)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("Authenticate = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
	if _, err := NewClientCerts(nil, "admin"); err == nil {
		t.Error("a default role of admin was taken")
	}
	if _, err := NewClientCerts(map[string]Principal{"x": {Name: "x", Role: "root"}}, ""); err == nil {
		t.Error("a mapping to the role root was taken")
	}
}

func TestAnyOf(t *testing.T) {
	certs, err := NewClientCerts(nil, RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	auth := AnyOf(testTokens(t), certs)
	withToken := func(req *http.Request, tok string) *http.Request {
		req.Header.Set("Authorization", "Bearer "+tok)
		return req
	}
	tests := []struct {
		name string
		req  *http.Request
		want Principal
		err  error
	}{
		{name: "token", req: withToken(httptest.NewRequest("GET", "/", nil), ciToken), want: Principal{"ci", RoleWrite}},
		{name: "certificate", req: verifiedRequest("alice", true), want: Principal{"alice", RoleRead}},
		{name: "both: the token first", req: withToken(verifiedRequest("alice", true), viewerToken), want: Principal{"viewer", RoleRead}},
		{name: "nothing", req: httptest.NewRequest("GET", "/", nil), err: ErrNoCredential},
		{name: "a wrong token and no certificate", req: withToken(httptest.NewRequest("GET", "/", nil), "wrong"), err: ErrBadCredential},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.Authenticate(tt.req)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("Authenticate = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestFailureLimit: an address that sends too many refused credentials is refused for a while, whatever it sends
// then; another address, and requests without a credential, are not affected.
func TestFailureLimit(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var logs bytes.Buffer
	a := fullAPI(t, testTokens(t), WithFailureLimit(3, time.Minute, 5*time.Minute), WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	a.now = func() time.Time { return now }
	const attacker, holder = "203.0.113.7:40000", "198.51.100.9:50000"
	good, bad := "Bearer "+viewerToken, "Bearer guess"

	steps := []struct {
		name       string
		remote     string
		auth       string
		advance    time.Duration
		forwarded  string // X-Forwarded-For and X-Real-IP
		status     int
		retryAfter string
	}{
		{name: "no credential does not count", remote: attacker, status: 401},
		{name: "no credential does not count, again", remote: attacker, status: 401},
		{name: "no credential does not count, third", remote: attacker, status: 401},
		{name: "guess 1", remote: attacker, auth: bad, status: 401},
		{name: "guess 2", remote: attacker, auth: bad, status: 401},
		{name: "guess 3 reaches the limit", remote: attacker, auth: bad, status: 401},
		{name: "blocked, even with a valid token", remote: attacker, auth: good, status: 429, retryAfter: "300"},
		{name: "blocked, another port of the same address", remote: "203.0.113.7:40001", auth: bad, status: 429, retryAfter: "300"},
		{name: "a forwarding header does not change the address", remote: attacker, auth: good, forwarded: "198.51.100.9", status: 429, retryAfter: "300"},
		{name: "the holder elsewhere is served", remote: holder, auth: good, status: 200},
		{name: "Retry-After counts down", remote: attacker, auth: good, advance: 4 * time.Minute, status: 429, retryAfter: "60"},
		{name: "served once the block is over", remote: attacker, auth: good, advance: time.Minute, status: 200},
		{name: "the count starts again", remote: attacker, auth: bad, status: 401},
		{name: "failures in an old window are forgotten 1", remote: attacker, auth: bad, advance: 2 * time.Minute, status: 401},
		{name: "failures in an old window are forgotten 2", remote: attacker, auth: bad, status: 401},
		{name: "a success does not reset the count", remote: attacker, auth: good, status: 200},
		{name: "the third in the window blocks", remote: attacker, auth: bad, status: 401},
		{name: "blocked again", remote: attacker, auth: good, status: 429, retryAfter: "300"},
		{name: "IPv6: one /64", remote: "[2001:db8:1:2::1]:1", auth: bad, status: 401},
		{name: "IPv6: one /64, another host", remote: "[2001:db8:1:2::2]:1", auth: bad, status: 401},
		{name: "IPv6: one /64, a third host", remote: "[2001:db8:1:2:ffff::3]:1", auth: bad, status: 401},
		{name: "IPv6: the /64 is blocked", remote: "[2001:db8:1:2::4]:1", auth: good, status: 429, retryAfter: "300"},
		{name: "IPv6: another /64 is not", remote: "[2001:db8:1:3::1]:1", auth: good, status: 200},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		req := httptest.NewRequest("GET", "/admin/v1/deny", nil)
		req.RemoteAddr = s.remote
		if s.auth != "" {
			req.Header.Set("Authorization", s.auth)
		}
		if s.forwarded != "" {
			req.Header.Set("X-Forwarded-For", s.forwarded)
			req.Header.Set("X-Real-IP", s.forwarded)
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != s.status {
			t.Fatalf("%s: status %d, want %d: %s", s.name, rec.Code, s.status, rec.Body)
		}
		if got := rec.Header().Get("Retry-After"); got != s.retryAfter {
			t.Errorf("%s: Retry-After %q, want %q", s.name, got, s.retryAfter)
		}
		if s.status == 429 && !strings.Contains(rec.Body.String(), `"code":"TOOMANYREQUESTS"`) {
			t.Errorf("%s: body %s", s.name, rec.Body)
		}
	}
	if n := strings.Count(logs.String(), "too many refused credentials from one address"); n != 3 {
		t.Errorf("%d block records in the log, want 3 (one per block):\n%s", n, logs.String())
	}
}

// TestFailureLimiterBounded: an attacker with many addresses does not grow the limiter without bound.
func TestFailureLimiterBounded(t *testing.T) {
	l := newFailureLimiter(10, time.Minute, time.Minute)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range 3 * maxTrackedAddrs {
		l.fail(fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff), now)
	}
	if n := len(l.addrs); n > maxTrackedAddrs {
		t.Errorf("%d addresses tracked, want at most %d", n, maxTrackedAddrs)
	}
}

func TestWithFailureLimitInvalid(t *testing.T) {
	for _, o := range []Option{WithFailureLimit(0, time.Minute, time.Minute), WithFailureLimit(3, 0, time.Minute), WithFailureLimit(3, time.Minute, -1)} {
		if _, err := New(testTokens(t), o); err == nil {
			t.Error("a non-positive failure limit was taken")
		}
	}
}
