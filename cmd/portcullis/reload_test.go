package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admin"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/upstream"
)

// Policies for the reload tests: under denyAll no rule matches and there is no default, so every image is denied;
// under allowAll every image is served.
const (
	denyAll  = "rules:\n  - {name: nothing, match: {repository: \"nothing/**\"}}\n"
	allowAll = "default: {mode: enforce}\n"
)

// TestSIGHUPReloadsThePolicy runs the wired binary graph: SIGHUP puts the policy file's new content in force; an
// invalid file is refused with its file:line in the error log and a metric, and the running policy keeps deciding.
func TestSIGHUPReloadsThePolicy(t *testing.T) {
	up := registrytest.New(t)
	up.PushRandomImage(t, "team/app:v1", 1, 512)
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(denyAll), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs cachetest.SyncBuilder
	a, _, _ := startApp(t, up, &logs, func(cfg *configs.Config) {
		cfg.Policy = pol
		cfg.Admin.Listen, cfg.Admin.Token = "127.0.0.1:0", "s3cret-s3cret-s3cret"
	})
	ref := a.addr.String() + "/team/app:v1"
	if _, err := crane.Digest(ref, crane.Insecure); err == nil || !strings.Contains(err.Error(), "no rule matches") {
		t.Fatalf("under the deny-all policy: %v", err)
	}
	before := a.gate.Policy().Hash()

	hup := func(t *testing.T, until func() bool) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !until() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s of SIGHUP; log:\n%s", logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Run("a valid file", func(t *testing.T) {
		if err := os.WriteFile(pol, []byte(allowAll), 0o600); err != nil {
			t.Fatal(err)
		}
		hup(t, func() bool { return a.gate.Policy().Hash() != before })
		if _, err := crane.Digest(ref, crane.Insecure); err != nil {
			t.Errorf("under the reloaded policy: %v", err)
		}
		if !strings.Contains(logs.String(), "policy reloaded") || !strings.Contains(logs.String(), "by=SIGHUP") {
			t.Errorf("the reload is not logged:\n%s", logs.String())
		}
	})
	t.Run("an invalid file", func(t *testing.T) {
		running := a.gate.Policy().Hash()
		if err := os.WriteFile(pol, []byte("default:\n  mode: sometimes\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		hup(t, func() bool { return strings.Contains(logs.String(), "policy reload refused") })
		if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "policy.yaml:2") {
			t.Errorf("the refusal does not name file:line at error level:\n%s", logs.String())
		}
		if a.gate.Policy().Hash() != running {
			t.Error("an invalid file replaced the running policy")
		}
		if _, err := crane.Digest(ref, crane.Insecure); err != nil {
			t.Errorf("the running policy stopped serving: %v", err)
		}
		_, metrics := httpGet(t, "http://"+a.opsAddr.String()+"/metrics")
		if !strings.Contains(metrics, `portcullis_policy_reloads_total{result="error"} 1`) ||
			!strings.Contains(metrics, `portcullis_policy_info{hash="`+running[:12]+`"} 1`) {
			t.Errorf("metrics lack the refused reload or the policy in force")
		}
	})
	t.Run("the admin API shows and reloads it", func(t *testing.T) {
		if err := os.WriteFile(pol, []byte(denyAll), 0o600); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.adminAddr.String()+"/admin/v1/policy/reload", nil)
		req.Header.Set("Authorization", "Bearer s3cret-s3cret-s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || a.gate.Policy().Hash() != before || !strings.Contains(string(body), before) {
			t.Errorf("reload through the admin API: %d %s", resp.StatusCode, body)
		}
	})
}

// The resolver names images as check does, sends a reference by digest nowhere unless the manifest is wanted,
// and says which errors are the caller's.
func TestImageResolver(t *testing.T) {
	up := registrytest.New(t)
	img := up.PushRandomImage(t, "team/app:v1", 1, 512)
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	var cf commonFlags
	_ = cf.upstreams.Set(up.Host() + "=" + up.URL().String())
	cfg, err := cf.load()
	if err != nil {
		t.Fatal(err)
	}
	c, err := newUpstreamClient(cfg.Upstreams[0], cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := imageResolver{cfg: cfg, clients: map[string]*upstream.Client{up.Host(): c}}
	ctx := context.Background()

	up.Hits().Reset()
	s, err := r.Name(ctx, "team/app@"+d.String())
	if err != nil || s.Digest != d || s.Upstream != up.Host() || s.Repository != "team/app" || s.Manifest != nil || up.Hits().Total() != 0 {
		t.Errorf("by digest: %+v %v, %d upstream requests", s, err, up.Hits().Total())
	}
	s, err = r.Resolve(ctx, up.Host()+"/team/app:v1")
	if err != nil || s.Digest != d || s.Tag != "v1" || len(s.Manifest) == 0 || s.MediaType == "" {
		t.Errorf("by tag: %+v %v", s, err)
	}
	for _, tc := range []struct {
		ref  string
		want error
	}{
		{"team/App:v1", admin.ErrBadImage},
		{"ghcr.io/team/app:v1", admin.ErrBadImage},
		{"team/app:nope", admin.ErrImageUnknown},
	} {
		if _, err := r.Resolve(ctx, tc.ref); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.ref, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name, up, repo string
		bad            bool
	}{
		{name: "team/app", up: up.Host(), repo: "team/app"},
		{name: up.Host() + "/team/app", up: up.Host(), repo: "team/app"},
		{name: "team/app:v1", bad: true},
		{name: "team/app@" + d.String(), bad: true},
		{name: "ghcr.io/team/app", bad: true},
	} {
		u, repo, err := r.Repository(tc.name)
		if tc.bad != errors.Is(err, admin.ErrBadImage) || (!tc.bad && (u != tc.up || repo != tc.repo)) {
			t.Errorf("Repository(%q) = %q %q %v", tc.name, u, repo, err)
		}
	}
}
