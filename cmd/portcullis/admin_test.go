package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// The tokens of the admin tests: a write token from a file, a read token from the environment, and the single
// token of earlier versions.
const (
	ciSecret     = "ci-0123456789abcdef0123456789abcdef"
	viewerSecret = "viewer-0123456789abcdef0123456789"
	legacySecret = "s3cret-admin" // short: the start-up log warns
)

// adminApp is a running app whose admin API serves the lists and the audit log, on in-memory shared state.
type adminApp struct {
	*app
	url     string
	auditor *admission.Auditor
	logs    *cachetest.SyncBuilder
	dir     string // where the token files are
	up      *registrytest.Registry
}

// startAdminApp starts the app with the tokens above (ci in a file, viewer in $PORTCULLIS_TOKEN_VIEWER, admin as
// admin.token) on a free admin port; edit adjusts the config after that.
func startAdminApp(t *testing.T, edit func(cfg *configs.Config)) *adminApp {
	t.Helper()
	up := registrytest.New(t)
	dir := t.TempDir()
	ciFile := filepath.Join(dir, "ci")
	if err := os.WriteFile(ciFile, []byte(ciSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cf commonFlags
	cf.listen, cf.opsListen, cf.dataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	_ = cf.upstreams.Set(up.Host() + "=" + up.URL().String())
	cfg, err := cf.load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Shutdown.DrainDelay = 0
	cfg.Admin = configs.Admin{Listen: "127.0.0.1:0", Token: legacySecret, Tokens: []configs.AdminToken{
		{Name: "ci", Role: "write", TokenFile: ciFile},
		{Name: "viewer", Role: "read", TokenEnv: "PORTCULLIS_TOKEN_VIEWER"},
	}}
	if edit != nil {
		edit(cfg)
	}
	cfg.ApplyEnv(func(k string) string { return map[string]string{"PORTCULLIS_TOKEN_VIEWER": viewerSecret}[k] })
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckFiles(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := &cachetest.SyncBuilder{}
	log := newLogger(cfg.Log, logs)
	a, err := build(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	if _, err := a.start(ctx); err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if cfg.Admin.TLS.Enabled() {
		scheme = "https"
	}
	return &adminApp{app: a, url: scheme + "://" + a.adminAddr.String(), auditor: a.auditor, logs: logs, dir: dir, up: up}
}

// tokenFile writes secret to a file and returns its path.
func (a *adminApp) tokenFile(t *testing.T, name, secret string) string {
	t.Helper()
	p := filepath.Join(a.dir, name)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// adminRequest sends one request to the admin API with client and the bearer token (none when "").
func adminRequest(t *testing.T, client *http.Client, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestAdminServeAuth: the binary wires named tokens (from a file and from the environment) and the single token
// of earlier versions, each with its role, and the audit records name the principal.
func TestAdminServeAuth(t *testing.T) {
	a := startAdminApp(t, nil)
	const entry = `{"match":"ghcr.io/acme/**","reason":"CVE-2024-3094 rollout"}`
	tests := []struct {
		name, method, path, token, body string
		status                          int
		actor                           string
	}{
		{name: "no credential", method: "GET", path: "/admin/v1/deny", status: 401},
		{name: "wrong token", method: "GET", path: "/admin/v1/deny", token: "guess", status: 401},
		{name: "read token reads", method: "GET", path: "/admin/v1/deny", token: viewerSecret, status: 200},
		{name: "read token on a write route", method: "POST", path: "/admin/v1/deny", token: viewerSecret, body: entry, status: 403},
		{name: "write token writes", method: "POST", path: "/admin/v1/deny", token: ciSecret, body: entry, status: 201, actor: "ci"},
		{name: "the single token is a write token named admin", method: "POST", path: "/admin/v1/allow", token: legacySecret, body: entry, status: 201, actor: "admin"},
		{name: "read token reads the audit log", method: "GET", path: "/admin/v1/audit", token: viewerSecret, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := adminRequest(t, http.DefaultClient, tt.method, a.url+tt.path, tt.token, tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), `Bearer realm="portcullis-admin"`) {
				t.Errorf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
			}
			if tt.actor != "" {
				recs, err := a.auditor.Query(t.Context(), admission.AuditQuery{Limit: 1})
				if err != nil || len(recs) != 1 || recs[0].Actor != tt.actor {
					t.Errorf("newest audit record %+v (%v), want one by %s", recs, err, tt.actor)
				}
			}
		})
	}
	for _, secret := range []string{ciSecret, viewerSecret, legacySecret} {
		if strings.Contains(a.logs.String(), secret) {
			t.Errorf("a token is in the log:\n%s", a.logs.String())
		}
	}
	if !strings.Contains(a.logs.String(), "the admin token is short") {
		t.Errorf("no warning about the short single token:\n%s", a.logs.String())
	}
}

// TestAdminServeFailureLimit: the binary's admin listener refuses an address after 10 refused credentials a
// minute, the right token included.
func TestAdminServeFailureLimit(t *testing.T) {
	a := startAdminApp(t, nil)
	for i := range 10 {
		if status, _, body := adminRequest(t, http.DefaultClient, "GET", a.url+"/admin/v1/deny", fmt.Sprintf("guess-%d", i), ""); status != 401 {
			t.Fatalf("guess %d: status %d: %s", i, status, body)
		}
	}
	status, h, body := adminRequest(t, http.DefaultClient, "GET", a.url+"/admin/v1/deny", viewerSecret, "")
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "300" {
		t.Fatalf("after 10 refused credentials: status %d, Retry-After %q: %s", status, h.Get("Retry-After"), body)
	}
	if !strings.Contains(a.logs.String(), "too many refused credentials from one address") {
		t.Errorf("the block is not logged:\n%s", a.logs.String())
	}
}

// startMTLSApp starts the app with the admin listener on TLS, client certificates from clients admitted, the one
// for ci-runner.acme.internal mapped to ci (write), others their common name with the read role.
func startMTLSApp(t *testing.T) (a *adminApp, server, clients *testPKI) {
	t.Helper()
	server, clients = newTestPKI(t, "server CA"), newTestPKI(t, "client CA")
	cert, key := server.issue(t, "portcullis-admin", true)
	a = startAdminApp(t, func(cfg *configs.Config) {
		cfg.Admin.TLS = configs.AdminTLS{Cert: cert, Key: key, ClientCA: clients.pem,
			Clients: []configs.AdminClient{{CommonName: "ci-runner.acme.internal", Name: "ci", Role: "write"}}}
	})
	return a, server, clients
}

// tlsClient is an HTTP client that trusts roots and offers the client certificate when certPath is set. Go's TLS
// client sends it only when its issuer is among the CAs the server asks for; force sends it regardless.
func tlsClient(t *testing.T, roots *testPKI, certPath, keyPath string, force ...bool) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(roots.cert)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certPath != "" {
		c, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
		if len(force) > 0 && force[0] {
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
}

// TestAdminServeMTLS: over TLS, a client certificate from the client CA authenticates (mapped, or by its common
// name with the read role); one from another CA fails the handshake; a token still works without a certificate.
func TestAdminServeMTLS(t *testing.T) {
	a, server, clients := startMTLSApp(t)
	stranger := newTestPKI(t, "another CA")
	const entry = `{"match":"ghcr.io/acme/**","reason":"CVE-2024-3094 rollout"}`
	ciCert, ciKey := clients.issue(t, "ci-runner.acme.internal", false)
	aliceCert, aliceKey := clients.issue(t, "alice", false)
	strangerCert, strangerKey := stranger.issue(t, "ci-runner.acme.internal", false)

	tests := []struct {
		name, method, token, body string
		client                    *http.Client
		status                    int
		actor                     string
		handshakeFails            bool
	}{
		{name: "mapped certificate writes", method: "POST", client: tlsClient(t, server, ciCert, ciKey), body: entry, status: 201, actor: "ci"},
		{name: "unmapped certificate reads", method: "GET", client: tlsClient(t, server, aliceCert, aliceKey), status: 200},
		{name: "unmapped certificate may not write", method: "POST", client: tlsClient(t, server, aliceCert, aliceKey), body: entry, status: 403},
		{name: "no certificate, no token", method: "GET", client: tlsClient(t, server, "", ""), status: 401},
		{name: "no certificate, a token", method: "POST", client: tlsClient(t, server, "", ""), token: ciSecret, body: entry, status: 201, actor: "ci"},
		{name: "a certificate from another CA", method: "GET", client: tlsClient(t, server, strangerCert, strangerKey, true), handshakeFails: true},
		{name: "a certificate from another CA, not offered", method: "GET", client: tlsClient(t, server, strangerCert, strangerKey), status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, a.url+"/admin/v1/deny", strings.NewReader(tt.body))
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := tt.client.Do(req)
			if tt.handshakeFails {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("served with status %d, want a failed handshake", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if tt.actor != "" {
				recs, err := a.auditor.Query(t.Context(), admission.AuditQuery{Limit: 1})
				if err != nil || len(recs) != 1 || recs[0].Actor != tt.actor {
					t.Errorf("newest audit record %+v (%v), want one by %s", recs, err, tt.actor)
				}
			}
		})
	}
	if _, err := http.Get(a.url + "/admin/v1/deny"); err == nil {
		// http.Get verifies against the system roots, which do not hold the test CA.
		t.Error("a client that does not trust the server CA was served")
	}
}

// cli runs the binary's command line and returns its exit code and output.
func cli(args ...string) (int, string, string) {
	var out, errb cachetest.SyncBuilder
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestAdminCLI drives the list, audit, explain and preview verbs against the running binary.
func TestAdminCLI(t *testing.T) {
	a := startAdminApp(t, nil)
	ci, viewer := a.tokenFile(t, "ci-cli", ciSecret), a.tokenFile(t, "viewer-cli", viewerSecret)
	policy := filepath.Join(a.dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("default: {mode: audit}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const fixtureDigest = "sha256:a92db5bebcc5706cf8b71379e7105e3b8fce9bbabec9017dc1742c7f8d79158f" // trivy-image.json's image
	vexFile := filepath.Join(a.dir, "vex.json")
	if err := os.WriteFile(vexFile, []byte(`{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://acme.example/vex/1",`+
		`"timestamp":"2026-01-01T00:00:00Z","statements":[{"vulnerability":{"name":"CVE-2024-0001"},"status":"not_affected",`+
		`"justification":"vulnerable_code_not_in_execute_path","products":[{"@id":"`+fixtureDigest+`"}]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := func(tokenFile string) []string { return []string{"--admin", a.url, "--token-file", tokenFile} }

	var denyID string
	steps := []struct {
		name string
		args []string
		code int
		out  []string // substrings of stdout
		err  []string // substrings of stderr
		then func(t *testing.T, stdout string)
	}{
		{name: "empty deny list", args: append([]string{"admin", "deny", "ls"}, conn(viewer)...), out: []string{"no deny-list entries"}},
		{
			name: "deny add, flags after the argument",
			args: append([]string{"admin", "deny", "add", "ghcr.io/acme/app@sha256:" + strings.Repeat("a", 64), "--reason", "CVE-2024-3094 rollout", "--expires", "7d"}, conn(ci)...),
			out:  []string{"added deny-list entry deny-", "ghcr.io/acme/app@sha256:aaaa", "(CVE-2024-3094 rollout), expires 20"},
		},
		{
			name: "deny ls",
			args: append([]string{"admin", "deny", "ls"}, conn(viewer)...),
			out:  []string{"ID", "MATCH", "EXPIRES", "ghcr.io/acme/app@sha256:aaaa", "ci", "CVE-2024-3094 rollout"},
		},
		{
			name: "deny ls as JSON",
			args: append([]string{"admin", "deny", "ls", "-o", "json"}, conn(viewer)...),
			out:  []string{`"entries": [`, `"by": "ci"`},
			then: func(t *testing.T, stdout string) {
				var ls struct{ Entries []struct{ ID string } }
				if err := json.Unmarshal([]byte(stdout), &ls); err != nil || len(ls.Entries) != 1 {
					t.Fatalf("-o json is not the entries: %v\n%s", err, stdout)
				}
				denyID = ls.Entries[0].ID
			},
		},
		{name: "a read token may not add", args: append([]string{"admin", "deny", "add", "ghcr.io/x/y", "--reason", "r"}, conn(viewer)...), code: 1,
			err: []string{"POST /admin/v1/deny: 403 DENIED", "viewer has the read role"}},
		{name: "a match the API refuses", args: append([]string{"admin", "allow", "add", "nonsense", "--reason", "r"}, conn(ci)...), code: 1,
			err: []string{"400 FIELD_INVALID", "match:"}},
		{name: "allow add as JSON", args: append([]string{"admin", "allow", "add", "docker.io/library/nginx:1.27", "--reason", "break glass", "-o", "json"}, conn(ci)...),
			out: []string{`"id": "allow-`, `"match": "docker.io/library/nginx:1.27"`}},
		{name: "allow ls", args: append([]string{"admin", "allow", "ls"}, conn(ci)...), out: []string{"docker.io/library/nginx:1.27", "never", "break glass"}},
		{name: "deny rm", args: nil, out: []string{"removed deny-list entry deny-"}},
		{name: "rm of an unknown entry", args: append([]string{"admin", "deny", "rm", "d-0000"}, conn(ci)...), code: 1, err: []string{"404 NOT_FOUND", `"d-0000"`}},
		{name: "audit", args: append([]string{"admin", "audit", "--since", "1h"}, conn(viewer)...),
			out: []string{"TIME", "ACTOR", "deny.remove", "allow.add", "deny.add", "ci", "cleanup after rollout"}},
		{name: "audit filtered by action's actor and kind", args: append([]string{"admin", "audit", "--actor", "nobody", "--kind", "change"}, conn(viewer)...),
			out: []string{"no audit records"}},
		{name: "audit as JSON, limited", args: append([]string{"admin", "audit", "--limit", "1", "-o", "json"}, conn(viewer)...),
			then: func(t *testing.T, stdout string) {
				var recs struct {
					Records []struct{ Action, Actor string }
				}
				if err := json.Unmarshal([]byte(stdout), &recs); err != nil || len(recs.Records) != 1 || recs.Records[0].Action != "deny.remove" {
					t.Errorf("audit -o json --limit 1: %v\n%s", err, stdout)
				}
			}},
		{name: "audit with a bad kind", args: append([]string{"admin", "audit", "--kind", "nope"}, conn(viewer)...), code: 1, err: []string{"400 PARAM_INVALID", "kind:"}},
		{name: "report", args: append([]string{"admin", "report", fixtureDigest, "../../verifier/report/testdata/trivy-image.json", "--reason", "pipeline 4711"}, conn(ci)...),
			out: []string{"stored the Trivy report for " + fixtureDigest, "findings, scanned 20"}},
		{name: "report about another image", args: append([]string{"admin", "report", "sha256:" + strings.Repeat("b", 64), "../../verifier/report/testdata/trivy-image.json"}, conn(ci)...),
			code: 1, err: []string{"400 DIGEST_MISMATCH"}},
		{name: "report of a non-digest", args: append([]string{"admin", "report", "latest", "x.json"}, conn(ci)...), code: 2, err: []string{"is not a digest"}},
		{name: "vex", args: append([]string{"admin", "vex", vexFile}, conn(ci)...), out: []string{fixtureDigest + ": waived CVE-2024-0001; withdrawn nothing"}},
		{name: "vex as JSON", args: append([]string{"admin", "vex", vexFile, "-o", "json"}, conn(ci)...), out: []string{`"digests": [`}},
		{name: "a read token may not post a report", args: append([]string{"admin", "vex", vexFile}, conn(viewer)...), code: 1, err: []string{"403 DENIED"}},
		{name: "explain: not served yet", args: append([]string{"admin", "explain", "ghcr.io/acme/app:v1"}, conn(viewer)...), code: 1,
			err: []string{"GET /admin/v1/explain: 404", "does not serve that endpoint"}},
		{name: "policy preview: not served yet", args: append([]string{"admin", "policy", "preview", policy}, conn(viewer)...), code: 1,
			err: []string{"POST /admin/v1/policy/preview: 404", "does not serve that endpoint"}},
		{name: "a wrong token", args: append([]string{"admin", "deny", "ls"}, conn(a.tokenFile(t, "wrong", "wrong-token"))...), code: 1,
			err: []string{"401 UNAUTHORIZED", "check --token-file"}},
		{name: "the token from the environment, the URL too", args: []string{"admin", "deny", "ls"}, out: []string{"no deny-list entries"}},
		// Usage errors: exit 2.
		{name: "no verb", args: []string{"admin"}, code: 2, err: []string{"Usage:"}},
		{name: "unknown verb", args: []string{"admin", "frob"}, code: 2, err: []string{`unknown verb "frob"`}},
		{name: "unknown list verb", args: []string{"admin", "deny", "drop"}, code: 2, err: []string{`unknown verb "drop"`}},
		{name: "add without a reason", args: append([]string{"admin", "deny", "add", "ghcr.io/x/y"}, conn(ci)...), code: 2, err: []string{"--reason is required"}},
		{name: "add with a bad expiry", args: append([]string{"admin", "deny", "add", "ghcr.io/x/y", "--reason", "r", "--expires", "soon"}, conn(ci)...), code: 2,
			err: []string{"--expires: want an RFC 3339 time"}},
		{name: "rm without an id", args: append([]string{"admin", "deny", "rm"}, conn(ci)...), code: 2, err: []string{"want one entry ID"}},
		{name: "rm of a path", args: append([]string{"admin", "deny", "rm", "../audit"}, conn(ci)...), code: 2, err: []string{"is not an entry ID"}},
		{name: "ls with an argument", args: append([]string{"admin", "deny", "ls", "x"}, conn(ci)...), code: 2, err: []string{"takes no arguments"}},
		{name: "an unknown flag", args: append([]string{"admin", "audit", "--frob"}, conn(ci)...), code: 2, err: []string{"flag provided but not defined: -frob"}},
		{name: "a bad output", args: append([]string{"admin", "deny", "ls", "-o", "yaml"}, conn(ci)...), code: 2, err: []string{`-o: want text or json, not "yaml"`}},
		{name: "an unknown policy verb", args: []string{"admin", "policy", "apply", policy}, code: 2, err: []string{`unknown verb "apply" (want show, reload or preview)`}},
		{name: "explain without an image", args: append([]string{"admin", "explain"}, conn(ci)...), code: 2, err: []string{"want one IMAGE"}},
		{name: "a bad URL", args: []string{"admin", "deny", "ls", "--admin", "ftp://x", "--token-file", ci}, code: 2, err: []string{"--admin: want http(s)://"}},
		{name: "help", args: []string{"admin", "help"}, out: []string{"portcullis admin deny add MATCH"}},
		{name: "a verb's help", args: []string{"admin", "deny", "ls", "-h"}, err: []string{"portcullis admin deny add MATCH"}},
		// An unreachable API: exit 1.
		{name: "nothing listening", args: []string{"admin", "deny", "ls", "--admin", "http://127.0.0.1:1", "--token-file", ci, "--timeout", "2s"}, code: 1,
			err: []string{"admin API http://127.0.0.1:1"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			args := s.args
			switch s.name {
			case "deny rm":
				args = append([]string{"admin", "deny", "rm", denyID, "--reason", "cleanup after rollout"}, conn(ci)...)
			case "the token from the environment, the URL too":
				t.Setenv("PORTCULLIS_ADMIN_URL", a.url)
				t.Setenv("PORTCULLIS_ADMIN_TOKEN", viewerSecret)
			}
			code, stdout, stderr := cli(args...)
			if code != s.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, s.code, stdout, stderr)
			}
			for _, w := range s.out {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout does not contain %q:\n%s", w, stdout)
				}
			}
			for _, w := range s.err {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr)
				}
			}
			if s.then != nil {
				s.then(t, stdout)
			}
		})
	}
}

// TestAdminCLIMissingCredential: without a token or a client certificate the CLI says what to give, exit 2.
func TestAdminCLIMissingCredential(t *testing.T) {
	t.Setenv("PORTCULLIS_ADMIN_TOKEN", "")
	code, _, stderr := cli("admin", "deny", "ls", "--admin", "http://127.0.0.1:1")
	if code != 2 || !strings.Contains(stderr, "no admin credential: give --token-file FILE or set PORTCULLIS_ADMIN_TOKEN") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// TestAdminCLIMTLS: the CLI over TLS, with a CA bundle and a client certificate, and with a token.
func TestAdminCLIMTLS(t *testing.T) {
	t.Setenv("PORTCULLIS_ADMIN_TOKEN", "")
	a, server, clients := startMTLSApp(t)
	ciCert, ciKey := clients.issue(t, "ci-runner.acme.internal", false)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "client certificate", args: []string{"--cacert", server.pem, "--cert", ciCert, "--key", ciKey}, want: "added deny-list entry"},
		{name: "token over TLS", args: []string{"--cacert", server.pem, "--token-file", a.tokenFile(t, "ci-tls", ciSecret)}, want: "added deny-list entry"},
		{name: "the server's CA not trusted", args: []string{"--cert", ciCert, "--key", ciKey}, code: 1, want: "certificate"},
		{name: "a key without its certificate", args: []string{"--cacert", server.pem, "--key", ciKey}, code: 2, want: "--cert and --key go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"admin", "deny", "add", "ghcr.io/acme/**", "--reason", "mtls", "--admin", a.url}, tt.args...)
			code, stdout, stderr := cli(args...)
			if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
				t.Errorf("exit %d (want %d), output does not contain %q:\n%s%s", code, tt.code, tt.want, stdout, stderr)
			}
		})
	}
	if code, _, stderr := cli("admin", "deny", "ls", "--admin", "http://"+a.adminAddr.String(), "--cacert", server.pem, "--token-file", a.tokenFile(t, "x", ciSecret)); code != 2 ||
		!strings.Contains(stderr, "need an https:// admin URL") {
		t.Errorf("--cacert with http://: exit %d: %s", code, stderr)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		dir  int
		want time.Time
		err  bool
	}{
		{in: "2026-12-31T00:00:00Z", dir: 1, want: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)},
		{in: "7d", dir: 1, want: now.Add(7 * 24 * time.Hour)},
		{in: "90m", dir: -1, want: now.Add(-90 * time.Minute)},
		{in: "0s", dir: 1, err: true},
		{in: "-1h", dir: 1, err: true},
		{in: "tomorrow", dir: 1, err: true},
	}
	for _, tt := range tests {
		got, err := parseWhen(tt.in, now, tt.dir)
		if (err != nil) != tt.err || !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		r    string
	}{
		{args: []string{"a", "--r", "x", "b"}, pos: []string{"a", "b"}, r: "x"},
		{args: []string{"--r", "x", "a"}, pos: []string{"a"}, r: "x"},
		{args: []string{"a", "--", "--r", "y"}, pos: []string{"a", "--r", "y"}},
		{args: nil, pos: nil},
	}
	for _, tt := range tests {
		fs := newFlagSet("t", io.Discard)
		r := fs.String("r", "", "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || !slices.Equal(pos, tt.pos) || *r != tt.r {
			t.Errorf("parseInterspersed(%q) = %q, r=%q, %v; want %q, r=%q", tt.args, pos, *r, err, tt.pos, tt.r)
		}
	}
}

// TestAdminCLINoRedirect: an admin URL that redirects elsewhere does not get the token sent there.
func TestAdminCLINoRedirect(t *testing.T) {
	var leaked atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(true)
		_, _ = io.WriteString(w, `{"entries":[]}`)
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	t.Setenv("PORTCULLIS_ADMIN_TOKEN", ciSecret)
	code, _, stderr := cli("admin", "deny", "ls", "--admin", redirector.URL)
	if leaked.Load() {
		t.Error("the request followed the redirect to another server")
	}
	if code != 1 || !strings.Contains(stderr, "redirect to") || !strings.Contains(stderr, "not followed") {
		t.Errorf("exit %d, want 1 and a message about the redirect: %s", code, stderr)
	}
}
