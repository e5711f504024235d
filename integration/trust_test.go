package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// keys are cosign key pairs made by the cosign CLI, shared by the trust tests (generating one takes a while).
type keyPair struct{ priv, pub string }

func cosignKey(t testing.TB) keyPair {
	t.Helper()
	priv, pub := cosigntest.KeyPair(t)
	return keyPair{priv, pub}
}

func (k keyPair) pubPEM(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// denial fetches a manifest through the proxy and returns the OCI error, failing unless it is a 403 DENIED.
func denial(t *testing.T, e *env, path string) string {
	t.Helper()
	resp, body := e.get(t, http.MethodGet, path)
	var eb struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &eb); err != nil || resp.StatusCode != http.StatusForbidden || len(eb.Errors) != 1 || eb.Errors[0].Code != "DENIED" {
		t.Fatalf("GET %s: want 403 DENIED, got %d %s", path, resp.StatusCode, body)
	}
	return eb.Errors[0].Message
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s %q does not contain %q", what, s, w)
		}
	}
}

func releasePolicy(extra string) string {
	return "trust:\n  release: {key: release.pub}\n  other: {key: other.pub}\n" + extra +
		"default:\n  mode: enforce\n  signedBy: {anyOf: [release]}\n"
}

func TestTrustGate(t *testing.T) {
	bin := cosigntest.Binary(t)
	release, other := cosignKey(t), cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": other.pubPEM(t)}
	e := newEnv(t, withPolicy(releasePolicy(""), files))

	signed := e.up.PushRandomImage(t, "acme/signed:v1", 2, 4096)
	sd, _ := signed.Digest()
	cosigntest.Sign(t, bin, e.up.Ref("acme/signed@"+sd.String()), release.priv)
	unsigned := e.up.PushRandomImage(t, "acme/unsigned:v1", 2, 4096)
	ud, _ := unsigned.Digest()
	wrong := e.up.PushRandomImage(t, "acme/wrongkey:v1", 1, 4096)
	wd, _ := wrong.Digest()
	cosigntest.Sign(t, bin, e.up.Ref("acme/wrongkey@"+wd.String()), other.priv)

	t.Run("signed image by tag and by digest", func(t *testing.T) {
		for _, ref := range []string{"acme/signed:v1", "acme/signed@" + sd.String()} {
			got, err := crane.Pull(e.ref(ref), pullOpts()...)
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			sameImage(t, signed, got)
		}
	})
	t.Run("unsigned image denied with a reason", func(t *testing.T) {
		msg := denial(t, e, "/v2/acme/unsigned/manifests/v1")
		mustContain(t, "denial", msg, "acme/unsigned", ud.String(), `rule "default"`, "not signed by release", "no signatures found")
		_, err := crane.Pull(e.ref("acme/unsigned:v1"), pullOpts()...)
		if err == nil || !strings.Contains(err.Error(), "not signed by release") {
			t.Errorf("crane sees %v", err)
		}
	})
	t.Run("signed by an untrusted key denied", func(t *testing.T) {
		msg := denial(t, e, "/v2/acme/wrongkey/manifests/v1")
		mustContain(t, "denial", msg, "not signed by release")
	})
	t.Run("blob of a denied image refused even by digest", func(t *testing.T) {
		e.up.Hits().Reset()
		layers, _ := unsigned.Layers()
		for _, l := range layers {
			ld, _ := l.Digest()
			msg := denial(t, e, "/v2/acme/unsigned/blobs/"+ld.String())
			mustContain(t, "blob denial", msg, ld.String(), "not part of any image admitted")
		}
		cd, _ := unsigned.ConfigName()
		denial(t, e, "/v2/acme/unsigned/blobs/"+cd.String())
		// A layer of the admitted image is not admitted in another repository either.
		sl, _ := signed.Layers()
		sld, _ := sl[0].Digest()
		denial(t, e, "/v2/acme/unsigned/blobs/"+sld.String())
		if n := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); n != 0 {
			t.Errorf("refused blobs caused %d upstream blob GETs", n)
		}
	})
	t.Run("HEAD of a denied manifest serves no content and carries the reason", func(t *testing.T) {
		resp, body := e.get(t, http.MethodHead, "/v2/acme/unsigned/manifests/v1")
		if len(body) != 0 || !strings.Contains(resp.Header.Get("Warning"), "not signed by release") {
			t.Errorf("HEAD: %d %q %q", resp.StatusCode, resp.Header.Get("Warning"), body)
		}
	})
	t.Run("cosign verify works through the proxy", func(t *testing.T) {
		out := cosigntest.Run(t, bin, "verify", "--key", release.pub, "--insecure-ignore-tlog", "--allow-insecure-registry", "--allow-http-registry",
			e.ref("acme/signed:v1"))
		mustContain(t, "cosign verify", out, sd.String())
	})
	t.Run("decisions are cached: one verification per digest", func(t *testing.T) {
		e.up.Hits().Reset()
		for range 5 {
			if _, err := crane.Digest(e.ref("acme/signed@"+sd.String()), pullOpts()...); err != nil {
				t.Fatal(err)
			}
			denial(t, e, "/v2/acme/unsigned/manifests/"+ud.String())
		}
		if n := e.up.Hits().Total(); n != 0 {
			t.Errorf("cached decisions still made %d upstream requests", n)
		}
	})
}

func TestTagMovedToUnsignedDigest(t *testing.T) {
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepLastGood=%v", keep), func(t *testing.T) {
			pol := "trust:\n  release: {key: release.pub}\nrules:\n  - name: apps\n    match: {repository: \"apps/**\"}\n" +
				"    signedBy: {anyOf: [release]}\n" + fmt.Sprintf("    keepLastGood: %v\n", keep)
			e := newEnv(t, withPolicy(pol, files), withProxy(tagTTL(1)))
			good := e.up.PushRandomImage(t, "apps/web:stable", 1, 1000)
			gd, _ := good.Digest()
			cosigntest.Sign(t, bin, e.up.Ref("apps/web@"+gd.String()), release.priv)
			if _, err := crane.Pull(e.ref("apps/web:stable"), pullOpts()...); err != nil {
				t.Fatal(err)
			}
			// The upstream moves the tag to an unsigned image.
			bad := e.up.PushRandomImage(t, "apps/web:stable", 1, 1000)
			bd, _ := bad.Digest()
			waitTagTTL()
			resp, body := e.get(t, http.MethodGet, "/v2/apps/web/manifests/stable")
			if !keep {
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), bd.String()) {
					t.Fatalf("moved tag: %d %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != gd.String() {
				t.Fatalf("keepLastGood: %d digest %s, want %s: %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), gd, body)
			}
			mustContain(t, "Warning", resp.Header.Get("Warning"), bd.String(), "last admitted", gd.String())
			// The new digest itself stays denied when asked for directly.
			denial(t, e, "/v2/apps/web/manifests/"+bd.String())
		})
	}
}

func TestSignedIndexAdmitsChildren(t *testing.T) {
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}
	e := newEnv(t, withPolicy(releasePolicy(""), files))
	idx := e.up.PushRandomIndex(t, "multi/app:v1", registrytest.Platforms()...)
	id, _ := idx.Digest()
	cosigntest.Sign(t, bin, e.up.Ref("multi/app@"+id.String()), release.priv, "--recursive=false")

	arm, err := crane.Pull(e.ref("multi/app:v1"), append(pullOpts(), crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: "arm64"}))...)
	if err != nil {
		t.Fatalf("platform pull of a signed index: %v", err)
	}
	if cf, _ := arm.ConfigFile(); cf.Architecture != "arm64" {
		t.Errorf("got %s", cf.Architecture)
	}
	layers, _ := arm.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
		}
		if err != nil {
			t.Fatalf("child layer: %v", err)
		}
	}
	// Every child by digest, no second signature lookup (children carry no signatures of their own).
	im, _ := idx.IndexManifest()
	for _, d := range im.Manifests {
		resp, body := e.get(t, http.MethodGet, "/v2/multi/app/manifests/"+d.Digest.String())
		if resp.StatusCode != 200 {
			t.Errorf("child %s: %d %s", d.Platform, resp.StatusCode, body)
		}
	}
	// An unsigned index: its children are not admitted either.
	other := e.up.PushRandomIndex(t, "multi/other:v1", registrytest.Platforms()...)
	om, _ := other.IndexManifest()
	denial(t, e, "/v2/multi/other/manifests/v1")
	denial(t, e, "/v2/multi/other/manifests/"+om.Manifests[0].Digest.String())
}

func TestWarnMode(t *testing.T) {
	release := cosignKey(t)
	pol := "trust:\n  release: {key: release.pub}\ndefault:\n  mode: warn\n  signedBy: {anyOf: [release]}\n"
	e := newEnv(t, withPolicy(pol, map[string][]byte{"release.pub": release.pubPEM(t)}))
	img := e.up.PushRandomImage(t, "w/app:v1", 1, 100)
	resp, _ := e.get(t, http.MethodGet, "/v2/w/app/manifests/v1")
	if resp.StatusCode != 200 {
		t.Fatalf("warn mode: %d", resp.StatusCode)
	}
	mustContain(t, "Warning", resp.Header.Get("Warning"), "299 - ", "not signed by release", "warn mode")
	got, err := crane.Pull(e.ref("w/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, img, got) // blobs of a warn-mode image are served too
}
