package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

const (
	releasePEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhx6b6jesHDE23RvuCj2KJGFCYULN\nfPwcJ7QtLe6+O518kNdlSwQ0SOiEyC92X+85leiQY3o9rCHvC6Og3qWokg==\n-----END PUBLIC KEY-----\n"
	// signingPolicy admits images signed by release; unsigned ones are denied.
	signingPolicy = "trust:\n  release: {key: keys/release.pub}\nrules:\n  - name: acme\n    match: {upstream: ghcr.io, repository: \"acme/**\"}\n    signedBy: {anyOf: [release]}\ndefault:\n  signedBy: {anyOf: [release]}\n"
)

// policyEnv is the admin API over a real gate, its policy file, lists, audit and pull log.
type policyEnv struct {
	api      *API
	gate     *admission.Gate
	file     *admission.PolicyFile
	dir      string
	ev       *fakeEvidence
	resolver *fakeResolver
	lists    *admission.Lists
	audit    *admission.Auditor
}

func newPolicyEnv(t *testing.T) *policyEnv {
	t.Helper()
	e := &policyEnv{dir: t.TempDir(), ev: &fakeEvidence{signed: map[digest.Digest]bool{}}, resolver: &fakeResolver{images: map[string]admission.Subject{}}}
	if err := os.MkdirAll(filepath.Join(e.dir, "keys"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "keys", "release.pub"), []byte(releasePEM), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writePolicy(t, signingPolicy)
	pol, err := policy.Load(e.policyPath())
	if err != nil {
		t.Fatal(err)
	}
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.audit = admission.NewAuditor(&memJournal{}, log)
	e.lists = admission.NewLists(&collections{}, nopBus{})
	e.gate, err = admission.NewGate(pol, e.ev, kv, admission.WithLogger(log), admission.WithReports(admission.NewReports(kv, 0)),
		admission.WithLists(e.lists), admission.WithAudit(e.audit), admission.WithPullLog(&memJournal{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.gate.Close() })
	build := func(*policy.Policy) (admission.Evidence, error) { return e.ev, nil }
	if e.file, err = admission.NewPolicyFile(e.policyPath(), e.gate, build, nil); err != nil {
		t.Fatal(err)
	}
	e.api, err = New(testAuth{}, WithLogger(log), WithAudit(e.audit), WithLists(e.lists), WithExplain(e.gate, e.resolver),
		WithDecisions(e.gate, e.resolver), WithPolicy(e.file, e.gate, e.resolver))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *policyEnv) policyPath() string { return filepath.Join(e.dir, "policy.yaml") }

func (e *policyEnv) writePolicy(t *testing.T, doc string) {
	t.Helper()
	if err := os.WriteFile(e.policyPath(), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// push adds an image at repo:tag upstream, signed or not, and returns it.
func (e *policyEnv) push(t *testing.T, repo, tag string, signed bool) admission.Subject {
	t.Helper()
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString(repo + tag), Size: 1}}
	m.SchemaVersion = 2
	b, _ := json.Marshal(m)
	s := admission.Subject{Upstream: "ghcr.io", Repository: repo, Tag: tag, Digest: digest.FromBytes(b), MediaType: m.MediaType, Manifest: b}
	e.resolver.images["ghcr.io/"+repo+":"+tag] = s
	byDigest := s
	byDigest.Tag = ""
	e.resolver.images["ghcr.io/"+repo+"@"+s.Digest.String()] = byDigest
	e.ev.mu.Lock()
	e.ev.signed[s.Digest] = signed
	e.ev.mu.Unlock()
	return s
}

// pull decides on s as a pull does.
func (e *policyEnv) pull(t *testing.T, s admission.Subject) admission.Verdict {
	t.Helper()
	v, err := e.gate.Admit(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	_ = e.gate.Close() // the pull record is written
	return v
}

// do sends a request with token ("" for none) and returns the status and the body.
func (e *policyEnv) do(t *testing.T, method, target, token string, body []byte) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Portcullis-Reason", "test")
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// decode decodes body into v, failing the test.
func decode(t *testing.T, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
}

// Every route asks for a credential, lets a read principal read and preview, and keeps changes to write.
func TestPolicyRoutesRoles(t *testing.T) {
	e := newPolicyEnv(t)
	img := e.push(t, "acme/app", "v1", true)
	for _, tc := range []struct {
		method, target string
		body           []byte
		need           Role
	}{
		{http.MethodGet, "/admin/v1/explain?image=ghcr.io/acme/app:v1", nil, RoleRead},
		{http.MethodGet, "/admin/v1/policy", nil, RoleRead},
		{http.MethodPost, "/admin/v1/policy/preview", []byte("default: {}\n"), RoleRead},
		{http.MethodPost, "/admin/v1/policy/reload", nil, RoleWrite},
		{http.MethodDelete, "/admin/v1/decisions?image=ghcr.io/acme/app@" + img.Digest.String(), nil, RoleWrite},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			if code, _ := e.do(t, tc.method, tc.target, "", tc.body); code != http.StatusUnauthorized {
				t.Errorf("without a token: %d, want 401", code)
			}
			if code, _ := e.do(t, tc.method, tc.target, "wrong", tc.body); code != http.StatusUnauthorized {
				t.Errorf("with a wrong token: %d, want 401", code)
			}
			code, body := e.do(t, tc.method, tc.target, readToken, tc.body)
			if tc.need == RoleWrite && (code != http.StatusForbidden || !strings.Contains(body, "needs write")) {
				t.Errorf("read principal on a write route: %d %s", code, body)
			}
			if tc.need == RoleRead && code != http.StatusOK {
				t.Errorf("read principal: %d %s", code, body)
			}
			if code, body := e.do(t, tc.method, tc.target, "secret", tc.body); code != http.StatusOK {
				t.Errorf("write principal: %d %s", code, body)
			}
		})
	}
}

func TestExplainEndpoint(t *testing.T) {
	e := newPolicyEnv(t)
	ctx := context.Background()
	signed := e.push(t, "acme/app", "v1", true)
	unsigned := e.push(t, "acme/app", "v2", false)
	listed := e.push(t, "acme/app", "v3", true)
	entry, err := e.lists.Add(ctx, admission.ListDeny, "ghcr.io/acme/app@"+listed.Digest.String(), "CVE-2024-3094 in this build", time.Time{}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	e.pull(t, signed)

	type answer struct {
		explainAnswer
		List *struct {
			ID, Kind, Match, Reason string
		} `json:"list"`
	}
	for _, tc := range []struct {
		name, ref     string
		allowed       bool
		decidedBy     string
		message       []string
		cached        bool
		signature     bool // the fresh evaluation's signature check passed
		listed        bool
		signatureNote string
	}{
		{name: "signed, pulled before", ref: "ghcr.io/acme/app:v1", allowed: true, decidedBy: "cached", cached: true, signature: true,
			message: []string{`admitted by rule "acme"`}},
		{name: "signed, by digest", ref: "ghcr.io/acme/app@" + signed.Digest.String(), allowed: true, decidedBy: "cached", cached: true, signature: true},
		{name: "unsigned", ref: "ghcr.io/acme/app:v2", decidedBy: "evaluated", message: []string{unsigned.Digest.String(), "not signed by release (no signatures found)"}},
		{name: "signed but deny-listed", ref: "ghcr.io/acme/app:v3", decidedBy: "deny-list", signature: true, listed: true,
			message: []string{"denied by deny-list entry " + entry.ID, "CVE-2024-3094 in this build"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(t, http.MethodGet, "/admin/v1/explain?image="+tc.ref, readToken, nil)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			var a answer
			decode(t, body, &a)
			if a.Allowed != tc.allowed || a.DecidedBy != tc.decidedBy || a.Rule == "" || a.Mode != "enforce" || a.Policy != e.gate.Policy().Hash() {
				t.Errorf("answer %s", body)
			}
			for _, w := range tc.message {
				if !strings.Contains(a.Message, w) {
					t.Errorf("message %q does not say %q", a.Message, w)
				}
			}
			if (a.Cached != nil) != tc.cached || (a.List != nil) != tc.listed {
				t.Errorf("cached %+v, list %+v", a.Cached, a.List)
			}
			if a.List != nil && (a.List.ID != entry.ID || a.List.Kind != "deny" || a.List.Reason != "CVE-2024-3094 in this build") {
				t.Errorf("list entry %+v", a.List)
			}
			reqs := a.Evaluation.Requirements
			if len(reqs) != 1 || reqs[0].Requirement != "signature" || reqs[0].Passed != tc.signature || len(reqs[0].Signatures) != 1 ||
				reqs[0].Signatures[0].Root != "release" || reqs[0].Signatures[0].Verified != tc.signature {
				t.Fatalf("requirements %+v", reqs)
			}
			if sig := reqs[0].Signatures[0]; tc.signature && sig.Format != "cosign-tag" || !tc.signature && sig.Reason != "no signatures found" {
				t.Errorf("signature %+v", sig)
			}
		})
	}
	t.Run("explaining stores nothing: an unsigned image's next pull is evaluated", func(t *testing.T) {
		code, body := e.do(t, http.MethodGet, "/admin/v1/explain?image=ghcr.io/acme/app:v2", readToken, nil)
		var a answer
		decode(t, body, &a)
		if code != http.StatusOK || a.Cached != nil || a.DecidedBy != "evaluated" {
			t.Errorf("second explain: %d %s", code, body)
		}
	})
	for _, tc := range []struct {
		name, target string
		status       int
		code, msg    string
	}{
		{"no image", "/admin/v1/explain", http.StatusBadRequest, "PARAM_INVALID", "image: required"},
		{"a bad reference", "/admin/v1/explain?image=ghcr.io/Acme/App:v1", http.StatusBadRequest, "IMAGE_INVALID", "not a reference"},
		{"an unknown upstream", "/admin/v1/explain?image=quay.io/acme/app:v1", http.StatusBadRequest, "IMAGE_INVALID", `quay.io\" is not configured`},
		{"an unknown tag", "/admin/v1/explain?image=ghcr.io/acme/app:v9", http.StatusNotFound, "IMAGE_UNKNOWN", "ghcr.io/acme/app:v9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(t, http.MethodGet, tc.target, readToken, nil)
			if code != tc.status || !strings.Contains(body, tc.code) || !strings.Contains(body, tc.msg) {
				t.Errorf("%d %s, want %d %s %q", code, body, tc.status, tc.code, tc.msg)
			}
		})
	}
}

func TestForgetDecisionsEndpoint(t *testing.T) {
	e := newPolicyEnv(t)
	ctx := context.Background()
	a1, a2 := e.push(t, "acme/app", "v1", true), e.push(t, "acme/app", "v2", true)
	other := e.push(t, "acme/other", "v1", true)
	for _, s := range []admission.Subject{a1, a2, other} {
		e.pull(t, s)
	}
	cached := func(s admission.Subject) bool {
		x, err := e.gate.Explain(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return x.Cached != nil
	}
	t.Run("one image, by tag", func(t *testing.T) {
		code, body := e.do(t, http.MethodDelete, "/admin/v1/decisions?image=ghcr.io/acme/app:v1", "secret", nil)
		if code != http.StatusOK || !strings.Contains(body, a1.Digest.String()) || !strings.Contains(body, `"count":1`) {
			t.Fatalf("%d %s", code, body)
		}
		if cached(a1) || !cached(a2) {
			t.Errorf("cached after forgetting v1: v1 %v, v2 %v", cached(a1), cached(a2))
		}
		recs, _ := e.audit.Query(ctx, admission.AuditQuery{Kind: admission.AuditChange})
		if len(recs) != 1 || recs[0].Action != "decisions.forget" || recs[0].Actor != "admin" || recs[0].Image != a1.Image() || recs[0].Reason != "test" {
			t.Errorf("audit %+v", recs)
		}
	})
	t.Run("a repository", func(t *testing.T) {
		e.pull(t, a1) // decided again
		code, body := e.do(t, http.MethodDelete, "/admin/v1/decisions?repository=ghcr.io/acme/app", "secret", nil)
		if code != http.StatusOK || !strings.Contains(body, `"count":2`) || strings.Contains(body, other.Digest.String()) {
			t.Fatalf("%d %s", code, body)
		}
		if cached(a1) || cached(a2) || !cached(other) {
			t.Errorf("cached after forgetting acme/app: %v %v, acme/other %v", cached(a1), cached(a2), cached(other))
		}
		recs, _ := e.audit.Query(ctx, admission.AuditQuery{Kind: admission.AuditChange, Image: "ghcr.io/acme/app"})
		if len(recs) == 0 || recs[0].Detail["count"] != float64(2) {
			t.Errorf("audit %+v", recs)
		}
	})
	for _, tc := range []struct {
		name, query string
		status      int
		msg         string
	}{
		{"neither", "", http.StatusBadRequest, "give one of image"},
		{"both", "?image=ghcr.io/acme/app:v1&repository=ghcr.io/acme/app", http.StatusBadRequest, "give one of image"},
		{"a bad reference", "?image=ghcr.io/acme/App", http.StatusBadRequest, "IMAGE_INVALID"},
		{"an unknown upstream", "?image=quay.io/acme/app:v1", http.StatusBadRequest, "not configured"},
		{"a bad repository", "?repository=ghcr.io/acme/app:v1", http.StatusBadRequest, "names no repository"},
		{"an unknown tag", "?image=ghcr.io/acme/app:v9", http.StatusNotFound, "IMAGE_UNKNOWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(t, http.MethodDelete, "/admin/v1/decisions"+tc.query, "secret", nil)
			if code != tc.status || !strings.Contains(body, tc.msg) {
				t.Errorf("%d %s, want %d %q", code, body, tc.status, tc.msg)
			}
		})
	}
}

func TestPolicyEndpoints(t *testing.T) {
	e := newPolicyEnv(t)
	var st struct {
		File, Hash, ShortHash string
		Loaded                time.Time
		Rules                 []string
		HasDefault            bool
	}
	get := func() {
		t.Helper()
		code, body := e.do(t, http.MethodGet, "/admin/v1/policy", readToken, nil)
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		decode(t, body, &st)
	}
	get()
	first := e.gate.Policy().Hash()
	if st.File != e.policyPath() || st.Hash != first || st.ShortHash != first[:12] || st.Loaded.IsZero() || !st.HasDefault ||
		len(st.Rules) != 1 || st.Rules[0] != "acme" {
		t.Fatalf("status %+v", st)
	}
	img := e.push(t, "acme/app", "v1", false)

	t.Run("reload a valid file", func(t *testing.T) {
		e.writePolicy(t, "rules:\n  - {name: open, match: {repository: \"acme/**\"}}\n")
		code, body := e.do(t, http.MethodPost, "/admin/v1/policy/reload", "secret", nil)
		var ans struct {
			Old, New string
			Changed  bool
		}
		decode(t, body, &ans)
		if code != http.StatusOK || ans.Old != first || ans.New == first || !ans.Changed {
			t.Fatalf("%d %s", code, body)
		}
		get()
		if st.Hash != ans.New || st.HasDefault || len(st.Rules) != 1 || st.Rules[0] != "open" {
			t.Errorf("status after reload %+v", st)
		}
		if !e.pull(t, img).Allowed {
			t.Error("the reloaded policy does not decide")
		}
		recs, _ := e.audit.Query(context.Background(), admission.AuditQuery{Kind: admission.AuditChange})
		if len(recs) != 1 || recs[0].Action != "policy.reload" || recs[0].Actor != "admin" || recs[0].Detail["old"] != first || recs[0].Detail["new"] != ans.New {
			t.Errorf("audit %+v", recs)
		}
	})
	t.Run("reload an invalid file", func(t *testing.T) {
		before := e.gate.Policy().Hash()
		e.writePolicy(t, "rules:\n  - name: open\n    mode: sometimes\n")
		code, body := e.do(t, http.MethodPost, "/admin/v1/policy/reload", "secret", nil)
		if code != http.StatusBadRequest || !strings.Contains(body, "POLICY_INVALID") || !strings.Contains(body, "policy.yaml:3") ||
			!strings.Contains(body, "the running policy stays") {
			t.Errorf("%d %s", code, body)
		}
		if e.gate.Policy().Hash() != before {
			t.Error("an invalid file replaced the running policy")
		}
	})
}

// A preview replays what was pulled under the policy in force and the candidate: here the candidate denies an
// image admitted before and admits one denied before, and says why under both.
func TestPolicyPreviewEndpoint(t *testing.T) {
	e := newPolicyEnv(t)
	admitted := e.push(t, "acme/app", "v1", true)
	denied := e.push(t, "acme/tool", "v1", false)
	kept := e.push(t, "acme/lib", "v1", true)
	gone := e.push(t, "acme/gone", "v1", true)
	for _, s := range []admission.Subject{admitted, denied, kept, gone} {
		e.pull(t, s)
	}
	delete(e.resolver.images, "ghcr.io/acme/gone@"+gone.Digest.String()) // deleted upstream since
	// The candidate: acme/app needs a scan report too (it has none); acme/tool needs nothing; the rest as before.
	candidate := "trust:\n  release: {key: keys/release.pub}\nrules:\n" +
		"  - name: scanned\n    match: {repository: acme/app}\n    signedBy: {anyOf: [release]}\n    scan: {maxSeverity: high, sources: [ci]}\n" +
		"  - name: tools\n    match: {repository: acme/tool}\n" +
		"default:\n  signedBy: {anyOf: [release]}\n"
	code, body := e.do(t, http.MethodPost, "/admin/v1/policy/preview?since=1h", readToken, []byte(candidate))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var ans previewAnswer
	decode(t, body, &ans)
	want := previewCounts{Replayed: 4, Unchanged: 1, NewlyDenied: 1, NewlyAllowed: 1, Errors: 1}
	if ans.Counts != want || ans.Policy != e.gate.Policy().Hash() || ans.Candidate == ans.Policy {
		t.Errorf("counts %+v, want %+v; policy %s, candidate %s", ans.Counts, want, ans.Policy, ans.Candidate)
	}
	if len(ans.NewlyDenied) != 1 || len(ans.NewlyAllowed) != 1 || len(ans.Errors) != 1 {
		t.Fatalf("answer %s", body)
	}
	nd := ans.NewlyDenied[0]
	if nd.Digest != admitted.Digest || nd.Tag != "v1" || !nd.Now.Allowed || nd.Now.Rule != "acme" || nd.Candidate.Allowed ||
		nd.Candidate.Rule != "scanned" || !strings.Contains(strings.Join(nd.Candidate.Failures, ";"), "scan: no scan report") {
		t.Errorf("newly denied %+v", nd)
	}
	na := ans.NewlyAllowed[0]
	if na.Digest != denied.Digest || na.Now.Allowed || !strings.Contains(strings.Join(na.Now.Failures, ";"), "not signed by release") ||
		!na.Candidate.Allowed || na.Candidate.Rule != "tools" {
		t.Errorf("newly allowed %+v", na)
	}
	if er := ans.Errors[0]; er.Digest != gone.Digest || !strings.Contains(er.Error, "fetch its manifest") {
		t.Errorf("error %+v", er)
	}
	if e.gate.Policy().Hash() != ans.Policy {
		t.Error("the preview changed the policy in force")
	}

	for _, tc := range []struct {
		name, query, doc string
		status           int
		msg              []string
	}{
		{"a candidate with a line error", "", "default:\n  signedBy: {anyOf: [nobody]}\n", http.StatusBadRequest,
			[]string{"POLICY_INVALID", "candidate.yaml:2", "nobody"}},
		{"a candidate reading a file outside the policy's directory", "", "trust:\n  x: {key: /etc/hostname}\ndefault: {}\n", http.StatusBadRequest,
			[]string{"POLICY_INVALID", "candidate.yaml:2", "relative to the policy's directory"}},
		{"a bad window", "?since=yesterday", "default: {}\n", http.StatusBadRequest, []string{"PARAM_INVALID", "since"}},
		{"a window too long", "?since=90d", "default: {}\n", http.StatusBadRequest, []string{"PARAM_INVALID", "since"}},
		{"a bad max", "?max=0", "default: {}\n", http.StatusBadRequest, []string{"PARAM_INVALID", "max"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do(t, http.MethodPost, "/admin/v1/policy/preview"+tc.query, readToken, []byte(tc.doc))
			if code != tc.status {
				t.Errorf("%d %s, want %d", code, body, tc.status)
			}
			for _, w := range tc.msg {
				if !strings.Contains(body, w) {
					t.Errorf("%s does not say %q", body, w)
				}
			}
		})
	}
}
