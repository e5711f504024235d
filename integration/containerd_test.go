package integration

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/internal/containerdtest"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// TestContainerdPullThroughMirror pulls with containerd's own client, configured the way nodes are: a hosts.toml
// mirror pointing at Portcullis. containerd then sends ns=<registry> on every request.
func TestContainerdPullThroughMirror(t *testing.T) {
	d := containerdtest.Start(t)
	e := newEnv(t)
	idx := e.up.PushRandomIndex(t, "ctr/app:v1", registrytest.Platforms()...)
	want, _ := idx.Digest()
	hosts := containerdtest.WriteHostsDir(t, e.up.Host(), e.srv.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := e.up.Ref("ctr/app:v1")
	out, err := d.Pull(ctx, ref, hosts, "linux/arm64")
	if err != nil {
		t.Fatalf("ctr pull through the mirror: %v\n%s", err, out)
	}
	got, err := d.ImageDigest(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if got != want.String() {
		t.Errorf("containerd stored %s, want %s", got, want)
	}
	var withNS, blobs int
	for _, r := range e.seen.all() {
		if strings.Contains(r, "ns="+url.QueryEscape(e.up.Host())) {
			withNS++
		}
		if strings.Contains(r, "/blobs/") {
			blobs++
		}
	}
	if withNS == 0 || blobs == 0 {
		t.Errorf("proxy saw %d requests with ns= and %d blob requests: %v", withNS, blobs, e.seen.all())
	}
}

// TestContainerdTrustGate: a node's pull of a signed image succeeds and of an unsigned one fails, and the person
// reading ctr's error (or kubelet's event) sees why.
func TestContainerdTrustGate(t *testing.T) {
	d := containerdtest.Start(t)
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	e := newEnv(t, withPolicy(releasePolicy(""), map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}))
	signed := e.up.PushRandomImage(t, "node/signed:v1", 2, 2048)
	sd, _ := signed.Digest()
	cosigntest.Sign(t, bin, e.up.Ref("node/signed@"+sd.String()), release.priv)
	e.up.PushRandomImage(t, "node/unsigned:v1", 2, 2048)
	hosts := containerdtest.WriteHostsDir(t, e.up.Host(), e.srv.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := d.Pull(ctx, e.up.Ref("node/signed:v1"), hosts, ""); err != nil {
		t.Fatalf("signed image: %v\n%s", err, out)
	}
	if got, _ := d.ImageDigest(ctx, e.up.Ref("node/signed:v1")); got != sd.String() {
		t.Errorf("containerd stored %s, want %s", got, sd)
	}
	out, err := d.Pull(ctx, e.up.Ref("node/unsigned:v1"), hosts, "")
	if err == nil {
		t.Fatalf("unsigned image pulled:\n%s", out)
	}
	// containerd resolves with HEAD and shows only its status line: the reason phrase carries the denial.
	mustContain(t, "ctr output", out, "403 portcullis: ", "denied by rule", "not signed by release")
	if _, err := d.ImageDigest(ctx, e.up.Ref("node/unsigned:v1")); err == nil {
		t.Error("containerd recorded the denied image")
	}
}

// TestContainerdSampleHostsFiles pulls with the hosts.toml files shipped in configs/containerd, pointed at this
// test's proxy and upstream: what a user installs is what is tested. A denial must not fall back to the registry.
func TestContainerdSampleHostsFiles(t *testing.T) {
	d := containerdtest.Start(t)
	release := cosignKey(t)
	e := newEnv(t, withPolicy(releasePolicy(""), map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}))
	e.up.PushRandomImage(t, "sample/unsigned:v1", 1, 1024)
	signed := e.up.PushRandomImage(t, "sample/signed:v1", 1, 1024)
	sd, _ := signed.Digest()
	cosigntest.Sign(t, cosigntest.Binary(t), e.up.Ref("sample/signed@"+sd.String()), release.priv)
	for _, tc := range []struct{ file, dir string }{
		{"hosts.toml", e.up.Host()},
		{"_default-hosts.toml", "_default"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile("../configs/containerd/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			doc := strings.ReplaceAll(string(b), "http://127.0.0.1:5000", e.srv.URL)
			doc = strings.ReplaceAll(doc, "https://registry-1.docker.io", e.up.URL().String())
			hosts := t.TempDir()
			if err := os.MkdirAll(filepath.Join(hosts, tc.dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(hosts, tc.dir, "hosts.toml"), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if out, err := d.Pull(ctx, e.up.Ref("sample/signed:v1"), hosts, ""); err != nil {
				t.Fatalf("signed image through the sample file: %v\n%s", err, out)
			}
			for _, r := range e.seen.all() {
				if !strings.Contains(r, "ns="+url.QueryEscape(e.up.Host())) {
					t.Errorf("request without ns=: %s", r)
				}
			}
			e.up.Hits().Reset()
			out, err := d.Pull(ctx, e.up.Ref("sample/unsigned:v1"), hosts, "")
			if err == nil {
				t.Fatalf("denied image pulled:\n%s\nproxy saw %v", out, e.seen.all())
			}
			mustContain(t, "ctr output", out, "not signed by release")
			// The node never reached the registry itself: no blob of the denied image left it.
			if n := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); n > 0 {
				t.Errorf("the node fetched %d blobs from the registry itself after the denial", n)
			}
		})
	}
}

// TestContainerdDeniedImageShowsWhy: containerd resolves with HEAD and shows only the status line of a failed HEAD;
// Portcullis answers a denied HEAD with 403 and the reason as the HTTP/1.1 reason phrase, so `ctr` (and kubelet's
// event) names the rule and what failed, over plain HTTP and TLS. An unsigned runnable image placed under a signed
// image's .sig tag is not pulled either.
func TestContainerdDeniedImageShowsWhy(t *testing.T) {
	d := containerdtest.Start(t)
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	e := newEnv(t, withPolicy(releasePolicy(""), map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}))
	signed := e.up.PushRandomImage(t, "why/signed:v1", 1, 2048)
	sd, _ := signed.Digest()
	cosigntest.Sign(t, bin, e.up.Ref("why/signed@"+sd.String()), release.priv)
	evil := e.up.PushRandomImage(t, "why/unsigned:v1", 1, 2048)
	if _, err := crane.Pull(e.ref("why/signed:v1"), pullOpts()...); err != nil { // admitted, and the decision cached
		t.Fatal(err)
	}
	e.up.PushImage(t, "why/signed:sha256-"+sd.Hex+".sig", evil) // then the attacker replaces its signature

	tlsProxy := httptest.NewUnstartedServer(e.proxy)
	tlsProxy.StartTLS()
	t.Cleanup(tlsProxy.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsProxy.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, hosts string }{
		{"plain HTTP", containerdtest.WriteHostsDir(t, e.up.Host(), e.srv.URL)},
		{"TLS", containerdtest.WriteHostsDirCA(t, e.up.Host(), tlsProxy.URL, ca)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if out, err := d.Pull(ctx, e.up.Ref("why/signed:v1"), tc.hosts, ""); err != nil {
				t.Fatalf("signed image: %v\n%s", err, out)
			}
			out, err := d.Pull(ctx, e.up.Ref("why/unsigned:v1"), tc.hosts, "")
			if err == nil {
				t.Fatalf("unsigned image pulled:\n%s", out)
			}
			mustContain(t, "ctr output", out, "403 portcullis: ", "why/unsigned@sha256:", `denied by rule "default"`, "not signed by release")
			t.Logf("ctr shows: %s", strings.TrimSpace(out))
			out, err = d.Pull(ctx, e.up.Ref("why/signed:sha256-"+sd.Hex+".sig"), tc.hosts, "")
			if err == nil {
				t.Fatalf("a runnable image under the signed image's .sig tag was pulled:\n%s", out)
			}
			mustContain(t, "ctr output", out, "403 portcullis: ", "not signed by release", "not admitted as an artifact")
		})
	}
}
