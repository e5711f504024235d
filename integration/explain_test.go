package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admin"
	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/imageref"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
	"github.com/portcullis/portcullis/verifier/dct"
)

// memState is the embedded shared state's stand-in for the lists (Collections, Bus) and the journals.
type memState struct {
	mu       sync.Mutex
	coll     map[string]map[string][]byte
	journals map[string][][]byte
}

func (m *memState) Put(_ context.Context, c, id string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.coll == nil {
		m.coll = map[string]map[string][]byte{}
	}
	if m.coll[c] == nil {
		m.coll[c] = map[string][]byte{}
	}
	m.coll[c][id] = v
	return nil
}

func (m *memState) Delete(_ context.Context, c, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.coll[c][id]; !ok {
		return cache.ErrNotFound
	}
	delete(m.coll[c], id)
	return nil
}

func (m *memState) All(_ context.Context, c string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.coll[c]), nil
}

func (m *memState) Publish(context.Context, string, []byte) error  { return nil }
func (m *memState) Subscribe(string, func([]byte)) (cancel func()) { return func() {} }
func (m *memState) Append(_ context.Context, name string, rec []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.journals == nil {
		m.journals = map[string][][]byte{}
	}
	m.journals[name] = append(m.journals[name], rec)
	return nil
}

func (m *memState) Range(_ context.Context, name string, fn func([]byte) bool) error {
	m.mu.Lock()
	recs := append([][]byte(nil), m.journals[name]...)
	m.mu.Unlock()
	for i := len(recs) - 1; i >= 0; i-- {
		if !fn(recs[i]) {
			break
		}
	}
	return nil
}

// testResolver names images on the one upstream of an env, as `portcullis check` does (cmd/portcullis's resolver
// is tested there, against a real registry too).
type testResolver struct {
	name   string
	client *upstream.Client
}

func (r testResolver) Name(ctx context.Context, ref string) (admission.Subject, error) {
	repo, rest, _ := strings.Cut(ref, "@")
	s := admission.Subject{Upstream: r.name}
	if rest != "" {
		d, err := digest.Parse(rest)
		if err != nil {
			return s, fmt.Errorf("%w: %v", admin.ErrBadImage, err)
		}
		s.Digest = d
	} else if i := strings.LastIndex(repo, ":"); i > 0 {
		repo, s.Tag = repo[:i], repo[i+1:]
	}
	if !imageref.IsRepository(repo) {
		return s, fmt.Errorf("%w: %q", admin.ErrBadImage, ref)
	}
	s.Repository = repo
	if s.Digest == "" {
		desc, err := r.client.Resolve(ctx, repo, s.Tag, nil)
		if errors.Is(err, upstream.ErrNotFound) {
			return s, fmt.Errorf("%w: %v", admin.ErrImageUnknown, err)
		} else if err != nil {
			return s, err
		}
		s.Digest = desc.Digest
	}
	return s, nil
}

func (r testResolver) Resolve(ctx context.Context, ref string) (admission.Subject, error) {
	s, err := r.Name(ctx, ref)
	if err != nil {
		return s, err
	}
	s.Manifest, s.MediaType, err = r.Manifest(ctx, s.Upstream, s.Repository, s.Digest)
	return s, err
}

func (r testResolver) Repository(name string) (string, string, error) { return r.name, name, nil }

func (r testResolver) Manifest(ctx context.Context, _, repo string, d digest.Digest) ([]byte, string, error) {
	b, mt, _, err := r.client.Manifest(ctx, repo, d.String(), nil)
	return b, mt, err
}

// adminEnv is an env whose gate keeps lists and a pull log, behind the admin API with a policy file on disk.
type adminEnv struct {
	*env
	api   *httptest.Server
	lists *admission.Lists
	dir   string
}

// newAdminEnv writes doc and files to a policy directory and serves the admin API over the env's gate; "secret" is
// a write token. more are further env options (withNotary).
func newAdminEnv(t *testing.T, doc string, files map[string][]byte, more ...envOption) *adminEnv {
	t.Helper()
	state := &memState{}
	lists := admission.NewLists(state, state)
	facts := cache.NewMemory() // the facts epochs Forget moves
	t.Cleanup(func() { _ = facts.Close() })
	e := newEnv(t, append([]envOption{withPolicy(doc, files, admission.WithLists(lists), admission.WithPullLog(state), admission.WithReports(admission.NewReports(facts, 0)))}, more...)...)
	t.Cleanup(func() { _ = e.gate.Close() })
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(e.up.Host(), e.up.URL(), upstream.WithAllowPrivateAddresses(true))
	if err != nil {
		t.Fatal(err)
	}
	var cfg envConfig // what more configures, for the evidence of the policies the file loads
	for _, o := range more {
		o(&cfg)
	}
	build := func(pol *policy.Policy) (admission.Evidence, error) {
		v, err := verifier.New(pol.TrustRoots())
		if err != nil {
			return nil, err
		}
		var evOpts []admission.EvidenceOption
		if cfg.notary != nil {
			n, err := dct.New(pol.TrustRoots(), cfg.notary...)
			if err != nil {
				return nil, err
			}
			evOpts = append(evOpts, admission.WithNotary(n))
		}
		return admission.NewEvidence(v, map[string]admission.Endpoint{e.up.Host(): client}, nil, evOpts...)
	}
	pf, err := admission.NewPolicyFile(filepath.Join(dir, "policy.yaml"), e.gate, build, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := testResolver{name: e.up.Host(), client: client}
	api, err := admin.New(admin.StaticToken("secret"), admin.WithLogger(testLogger(t)), admin.WithExplain(e.gate, r),
		admin.WithDecisions(e.gate, r), admin.WithPolicy(pf, e.gate, r))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &adminEnv{env: e, api: srv, lists: lists, dir: dir}
}

// call sends an admin request with the write token and decodes the JSON answer into out (when not nil).
func (a *adminEnv) call(t *testing.T, method, path string, body []byte, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, a.api.URL+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// explained is the part of an explain answer these tests read.
type explained struct {
	Allowed    bool
	Rule       string
	Message    string
	DecidedBy  string
	List       *struct{ ID, Kind, Reason string }
	Cached     *struct{ Allowed bool }
	Evaluation struct {
		Allowed      bool
		Requirements []struct {
			Requirement string
			Passed      bool
			Detail      string
			Signatures  []struct {
				Root     string
				Verified bool
				Format   string
				Reason   string
			}
		}
	}
}

func pushSigned(t *testing.T, e *env, bin, repoTag, key string) digest.Digest {
	t.Helper()
	img := e.up.PushRandomImage(t, repoTag, 1, 1024)
	return signPushed(t, e, bin, repoTag, img, key)
}

func signPushed(t *testing.T, e *env, bin, repoTag string, img v1.Image, key string) digest.Digest {
	t.Helper()
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	if key != "" {
		repo, _, _ := strings.Cut(repoTag, ":")
		cosigntest.Sign(t, bin, e.up.Ref(repo+"@"+d.String()), key)
	}
	return d
}

// TestExplainRealSignatures explains a signed, an unsigned, a wrongly signed and a deny-listed image on a real
// registry with cosign signatures, and shows that explaining changes nothing a pull sees.
func TestExplainRealSignatures(t *testing.T) {
	bin := cosigntest.Binary(t)
	release, other := cosignKey(t), cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": other.pubPEM(t)}
	a := newAdminEnv(t, releasePolicy(""), files)
	signed := pushSigned(t, a.env, bin, "acme/signed:v1", release.priv)
	unsigned := pushSigned(t, a.env, bin, "acme/unsigned:v1", "")
	wrong := pushSigned(t, a.env, bin, "acme/wrong:v1", other.priv)
	listed := pushSigned(t, a.env, bin, "acme/listed:v1", release.priv)
	if _, err := crane.Digest(a.ref("acme/signed:v1"), pullOpts()...); err != nil {
		t.Fatal(err)
	}
	entry, err := a.lists.Add(context.Background(), admission.ListDeny, a.up.Host()+"/acme/listed@"+listed.String(), "recalled build", time.Time{}, "alice")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, ref         string
		allowed, verified bool
		decidedBy, reason string
		message           []string
	}{
		{name: "signed and pulled", ref: "acme/signed:v1", allowed: true, verified: true, decidedBy: "cached", message: []string{signed.String(), "admitted"}},
		{name: "unsigned", ref: "acme/unsigned:v1", decidedBy: "evaluated", reason: "no signatures found",
			message: []string{unsigned.String(), `denied by rule "default": not signed by release (no signatures found)`}},
		{name: "signed by another key", ref: "acme/wrong@" + wrong.String(), decidedBy: "evaluated", message: []string{"not signed by release"}},
		{name: "signed but deny-listed", ref: "acme/listed:v1", verified: true, decidedBy: "deny-list", message: []string{"denied by deny-list entry " + entry.ID, "recalled build"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var x explained
			if code := a.call(t, http.MethodGet, "/admin/v1/explain?image="+tc.ref, nil, &x); code != http.StatusOK {
				t.Fatalf("explain: %d", code)
			}
			if x.Allowed != tc.allowed || x.DecidedBy != tc.decidedBy {
				t.Errorf("allowed %v by %s, want %v by %s: %s", x.Allowed, x.DecidedBy, tc.allowed, tc.decidedBy, x.Message)
			}
			for _, w := range tc.message {
				if !strings.Contains(x.Message, w) {
					t.Errorf("message %q does not say %q", x.Message, w)
				}
			}
			reqs := x.Evaluation.Requirements
			if len(reqs) != 1 || reqs[0].Requirement != "signature" || reqs[0].Passed != tc.verified || len(reqs[0].Signatures) != 1 {
				t.Fatalf("requirements %+v", reqs)
			}
			sig := reqs[0].Signatures[0]
			if sig.Root != "release" || sig.Verified != tc.verified || (tc.verified && sig.Format == "") || (!tc.verified && sig.Reason == "") ||
				(tc.reason != "" && !strings.Contains(sig.Reason, tc.reason)) {
				t.Errorf("signature by release %+v", sig)
			}
			if (x.List != nil) != (tc.decidedBy == "deny-list") {
				t.Errorf("list entry %+v", x.List)
			}
		})
	}
	t.Run("explaining stored nothing: the unsigned image's pull still verifies", func(t *testing.T) {
		a.up.Hits().Reset()
		denial(t, a.env, "/v2/acme/unsigned/manifests/"+unsigned.String())
		if a.up.Hits().Total() == 0 {
			t.Error("the pull after explain was answered from a cache explain filled")
		}
	})
}

// TestForgetAndReloadAndPreview: forgetting a digest makes the next pull verify again; a preview of a candidate
// policy shows that it would deny an image pulled and admitted before and admit one denied before; a reload puts
// it in force, and pulls then see exactly what the preview said.
func TestForgetAndReloadAndPreview(t *testing.T) {
	bin := cosigntest.Binary(t)
	release, other := cosignKey(t), cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": other.pubPEM(t)}
	a := newAdminEnv(t, releasePolicy(""), files)
	byRelease := pushSigned(t, a.env, bin, "acme/a:v1", release.priv)
	byOther := pushSigned(t, a.env, bin, "acme/b:v1", other.priv)
	if _, err := crane.Digest(a.ref("acme/a:v1"), pullOpts()...); err != nil {
		t.Fatal(err)
	}
	denial(t, a.env, "/v2/acme/b/manifests/v1")

	t.Run("forget", func(t *testing.T) {
		a.up.Hits().Reset()
		if _, err := crane.Digest(a.ref("acme/a@"+byRelease.String()), pullOpts()...); err != nil || a.up.Hits().Total() != 0 {
			t.Fatalf("cached pull: %v, %d upstream requests", err, a.up.Hits().Total())
		}
		var ans struct{ Count int }
		if code := a.call(t, http.MethodDelete, "/admin/v1/decisions?image=acme/a@"+byRelease.String(), nil, &ans); code != http.StatusOK || ans.Count != 1 {
			t.Fatalf("forget: %d %+v", code, ans)
		}
		if _, err := crane.Digest(a.ref("acme/a@"+byRelease.String()), pullOpts()...); err != nil || a.up.Hits().Total() == 0 {
			t.Errorf("pull after forgetting: %v, %d upstream requests (want a fresh verification)", err, a.up.Hits().Total())
		}
	})

	candidate := "trust:\n  release: {key: release.pub}\n  other: {key: other.pub}\nrules:\n" +
		"  - name: both\n    match: {repository: acme/a}\n    signedBy: {allOf: [release, other]}\n" +
		"default:\n  signedBy: {anyOf: [other]}\n"
	t.Run("preview", func(t *testing.T) {
		_ = a.gate.Close() // the pull records are written
		var p struct {
			Counts                    struct{ Replayed, Unchanged, NewlyDenied, NewlyAllowed, Errors int }
			NewlyDenied, NewlyAllowed []struct {
				Digest         digest.Digest
				Now, Candidate struct {
					Allowed  bool
					Rule     string
					Failures []string
				}
			}
		}
		if code := a.call(t, http.MethodPost, "/admin/v1/policy/preview", []byte(candidate), &p); code != http.StatusOK {
			t.Fatalf("preview: %d", code)
		}
		if p.Counts.Replayed != 2 || p.Counts.NewlyDenied != 1 || p.Counts.NewlyAllowed != 1 || p.Counts.Errors != 0 {
			t.Fatalf("counts %+v", p.Counts)
		}
		nd, na := p.NewlyDenied[0], p.NewlyAllowed[0]
		if nd.Digest != byRelease || !nd.Now.Allowed || nd.Candidate.Rule != "both" || !strings.Contains(strings.Join(nd.Candidate.Failures, ";"), "not signed by other") {
			t.Errorf("newly denied %+v", nd)
		}
		if na.Digest != byOther || na.Now.Allowed || !strings.Contains(strings.Join(na.Now.Failures, ";"), "not signed by release") || !na.Candidate.Allowed {
			t.Errorf("newly allowed %+v", na)
		}
	})
	t.Run("reload", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(a.dir, "policy.yaml"), []byte(candidate), 0o600); err != nil {
			t.Fatal(err)
		}
		var ch struct{ Changed bool }
		if code := a.call(t, http.MethodPost, "/admin/v1/policy/reload", nil, &ch); code != http.StatusOK || !ch.Changed {
			t.Fatalf("reload: %d %+v", code, ch)
		}
		msg := denial(t, a.env, "/v2/acme/a/manifests/v1")
		mustContain(t, "denial after reload", msg, `rule "both"`, "not signed by other")
		if _, err := crane.Digest(a.ref("acme/b:v1"), pullOpts()...); err != nil {
			t.Errorf("pull of the image signed by other after reload: %v", err)
		}
	})
}
