package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/manifest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// Policies for the reload tests: the first two admit every image (they differ by a rule nobody matches, so their
// hashes differ), the third requires a signature no image here has.
const (
	reloadOpen  = "default:\n  mode: enforce\n"
	reloadOpen2 = "rules:\n  - name: unused\n    match: {repository: nobody/pulls}\n    mode: audit\ndefault:\n  mode: enforce\n"
	reloadSign  = `trust:
  release: {keyData: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhx6b6jesHDE23RvuCj2KJGFCYULN\nfPwcJ7QtLe6+O518kNdlSwQ0SOiEyC92X+85leiQY3o9rCHvC6Og3qWokg==\n-----END PUBLIC KEY-----\n"}
default:
  mode: enforce
  signedBy: {anyOf: [release]}
`
)

// setPolicy puts doc in force on e's gate, as a reload does (Gate.SetPolicy), with evidence from e's upstream; files
// are the key files it names.
func setPolicy(t *testing.T, e *env, doc string, files ...map[string][]byte) {
	t.Helper()
	pol, err := policy.Parse([]byte(doc), "policy.yaml", func(name string) ([]byte, error) {
		for _, fs := range files {
			if b, ok := fs[filepath.Base(name)]; ok {
				return b, nil
			}
		}
		return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(pol.TrustRoots())
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(e.up.Host(), e.up.URL(), upstream.WithAllowPrivateAddresses(true))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := admission.NewEvidence(v, map[string]admission.Endpoint{e.up.Host(): client}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.gate.SetPolicy(pol, ev); err != nil {
		t.Fatal(err)
	}
}

// blobsOf lists an image's config and layer digests.
func blobsOf(t *testing.T, img v1.Image) []string {
	t.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{cfg.String()}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

// getManifest GETs a manifest through e and fails unless it is served.
func getManifest(t *testing.T, e *env, repo, ref string) {
	t.Helper()
	resp, body := e.get(t, http.MethodGet, "/v2/"+repo+"/manifests/"+ref, "Accept", strings.Join(manifest.AcceptTypes(), ", "))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest %s:%s: %d %s", repo, ref, resp.StatusCode, body)
	}
}

// blobStatus GETs a blob through e and returns its status; a 403 must carry the DENIED code.
func blobStatus(t *testing.T, e *env, repo, dgst string) int {
	t.Helper()
	resp, body := e.get(t, http.MethodGet, "/v2/"+repo+"/blobs/"+dgst)
	if resp.StatusCode == http.StatusForbidden && !strings.Contains(string(body), `"DENIED"`) {
		t.Errorf("blob %s: 403 without the DENIED code: %s", dgst, body)
	}
	return resp.StatusCode
}

// A policy reload between a client's manifest and its blobs does not fail the pull when the new policy admits the
// image too: the manifests that granted the blobs under the old policy are decided again under the new one. A new
// policy that denies the image refuses them, and a blob no admitted manifest ever named stays refused.
func TestReloadBetweenManifestAndBlobs(t *testing.T) {
	e := newEnv(t, withPolicy(reloadOpen, nil))
	img := e.up.PushRandomImage(t, "reload/app:v1", 2, 4096)
	stray := e.up.PushRandomImage(t, "reload/app:other", 1, 4096) // in the repository, never pulled
	idx := e.up.PushRandomIndex(t, "reload/multi:v1")
	idxManifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	child, err := idx.Image(idxManifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		reload string // the policy put in force between the manifest and the blobs
		want   int
	}{
		{"a policy that still admits", reloadOpen2, http.StatusOK},
		{"back to the first policy", reloadOpen, http.StatusOK},
		{"a policy that denies", reloadSign, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setPolicy(t, e, reloadOpen2) // whatever was in force, the manifests are served under an admitting policy
			if tc.reload == reloadOpen2 {
				setPolicy(t, e, reloadOpen)
			}
			getManifest(t, e, "reload/app", "v1")
			getManifest(t, e, "reload/multi", "v1")
			getManifest(t, e, "reload/multi", idxManifest.Manifests[0].Digest.String())
			setPolicy(t, e, tc.reload)
			for _, b := range blobsOf(t, img) {
				if got := blobStatus(t, e, "reload/app", b); got != tc.want {
					t.Errorf("image blob %s: %d, want %d", b, got, tc.want)
				}
			}
			for _, b := range blobsOf(t, child) {
				if got := blobStatus(t, e, "reload/multi", b); got != tc.want {
					t.Errorf("index child's blob %s: %d, want %d", b, got, tc.want)
				}
			}
			for _, b := range blobsOf(t, stray)[1:] {
				if got := blobStatus(t, e, "reload/app", b); got != http.StatusForbidden {
					t.Errorf("a blob never granted: %d, want 403", got)
				}
			}
		})
	}
}

// In a fleet, a replica started under a new policy (a rollout that restarts pods) serves the blobs of a manifest
// another replica served under the old one: the old policy is named in the shared KV, and its grants there.
func TestReloadAcrossReplicas(t *testing.T) {
	addr := cachetest.StartRedis(t)
	content := t.TempDir()
	a := newEnv(t, func(c *envConfig) {
		c.kv, c.contentDir, c.policy = sharedKV(t, addr, "rollout:"), content, reloadOpen
	})
	img := a.up.PushRandomImage(t, "rollout/app:v1", 2, 4096)
	getManifest(t, a, "rollout/app", "v1")

	b := replica(t, a, sharedKV(t, addr, "rollout:"), content, reloadOpen2, nil)
	for _, d := range blobsOf(t, img) {
		if got := blobStatus(t, b, "rollout/app", d); got != http.StatusOK {
			t.Errorf("blob %s from the replica under the new policy: %d", d, got)
		}
	}
	c := replica(t, a, sharedKV(t, addr, "rollout:"), content, reloadSign, nil)
	for _, d := range blobsOf(t, img) {
		if got := blobStatus(t, c, "rollout/app", d); got != http.StatusForbidden {
			t.Errorf("blob %s from a replica whose policy denies the image: %d, want 403", d, got)
		}
	}
}

// A cosign signature fetched by its tag before a reload keeps its payload after it, while its image is admitted under
// the new policy (the signature is decided again by its tag, as an artifact of the image decided again first).
func TestReloadKeepsSignatureBlobs(t *testing.T) {
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": cosignKey(t).pubPEM(t)}
	e := newEnv(t, withPolicy(releasePolicy(""), files))
	img := e.up.PushRandomImage(t, "reload/signed:v1", 1, 4096)
	d, _ := img.Digest()
	cosigntest.Sign(t, bin, e.up.Ref("reload/signed@"+d.String()), release.priv)
	sigTag := "sha256-" + d.Hex + ".sig"

	for _, tc := range []struct {
		name, reload string
		want         int
	}{
		{"a policy that still admits the image", releasePolicy("rules:\n  - name: unused\n    match: {repository: nobody/pulls}\n    mode: audit\n"), http.StatusOK},
		{"a policy that denies it", strings.Replace(releasePolicy(""), "anyOf: [release]", "anyOf: [other]", 1), http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setPolicy(t, e, releasePolicy(""), files)
			getManifest(t, e, "reload/signed", d.String())
			resp, body := e.get(t, http.MethodGet, "/v2/reload/signed/manifests/"+sigTag, "Accept", strings.Join(manifest.AcceptTypes(), ", "))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("signature %s: %d %s", sigTag, resp.StatusCode, body)
			}
			var sig ocispec.Manifest
			if err := json.Unmarshal(body, &sig); err != nil || len(sig.Layers) == 0 {
				t.Fatalf("signature manifest: %v %s", err, body)
			}
			setPolicy(t, e, tc.reload, files)
			if got := blobStatus(t, e, "reload/signed", sig.Layers[0].Digest.String()); got != tc.want {
				t.Errorf("signature payload after the reload: %d, want %d", got, tc.want)
			}
		})
	}
}
