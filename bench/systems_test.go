package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// lab is one upstream and every system that fronts it, each on its own loopback listener.
type lab struct {
	up    *registrytest.Registry
	upDir string // where up stores what is pushed to it
	// urls are the base URLs clients use, by system.
	urls map[string]string
	// gate is the gated Portcullis's admission gate; content its content store.
	gate    *admission.Gate
	content map[string]*cache.Content
	// signing: the cosign binary and key that the gate's policy trusts.
	cosign, priv string
	client       *http.Client
	policyDoc    string
	policyFiles  map[string][]byte
	// firstBytes records the first body write of Portcullis's and Distribution's responses, while armed.
	firstBytes *firstBytes
}

// benchPolicy trusts one key for every image.
const benchPolicy = "trust:\n  release: {key: release.pub}\ndefault:\n  signedBy: {anyOf: [release]}\n"

// newClient is the one client every system is measured with.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, DisableCompression: true}}
}

func newLab(t *testing.T, gated bool) *lab {
	t.Helper()
	upDir := t.TempDir()
	l := &lab{
		up:         registrytest.New(t, registrytest.WithStorageDir(upDir)),
		upDir:      upDir,
		urls:       map[string]string{},
		content:    map[string]*cache.Content{},
		client:     newClient(),
		firstBytes: &firstBytes{},
	}
	l.urls[sysDirect] = l.up.URL().String()
	l.urls[sysDistribution] = startDistributionProxy(t, l.up.URL().String(), l.firstBytes.wrap)
	l.urls[sysPortcullis] = l.startPortcullis(t, nil)
	if gated {
		l.cosign = cosigntest.Binary(t)
		var pub string
		l.priv, pub = cosigntest.KeyPair(t)
		pubPEM, err := os.ReadFile(pub)
		if err != nil {
			t.Fatal(err)
		}
		l.policyDoc, l.policyFiles = benchPolicy, map[string][]byte{"release.pub": pubPEM}
		l.urls[sysGated] = l.startPortcullis(t, func(client *upstream.Client, kv cache.KV, content *cache.Content) proxy.Admitter {
			l.gate = newGateWith(t, l.policyDoc, l.policyFiles, map[string]admission.Endpoint{l.up.Host(): client}, kv,
				[]admission.EvidenceOption{admission.WithArtifactStore(newArtifactStore(t, content))})
			return l.gate
		})
	}
	return l
}

// upstreamClient is how Portcullis talks to the lab's upstream.
func (l *lab) upstreamClient(t testing.TB) *upstream.Client {
	t.Helper()
	return upstreamClientAt(t, l.up.Host(), l.up.URL())
}

// upstreamClientAt is how Portcullis talks to the upstream name served at u.
func upstreamClientAt(t testing.TB, name string, u *url.URL) *upstream.Client {
	t.Helper()
	c, err := upstream.New(name, u, upstream.WithRetries(2, 10*time.Millisecond), upstream.WithAllowPrivateAddresses(true))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startPortcullis serves a Portcullis over a filesystem content store and an in-process KV, gated when gate is
// not nil, and returns its URL.
func (l *lab) startPortcullis(t *testing.T, gate func(*upstream.Client, cache.KV, *cache.Content) proxy.Admitter, opts ...proxy.Option) string {
	t.Helper()
	client := l.upstreamClient(t)
	content := newFilesystemContent(t)
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	popts := []proxy.Option{proxy.WithLogger(slog.New(slog.DiscardHandler)), proxy.WithSpoolDir(t.TempDir())}
	name := sysPortcullis
	if gate != nil {
		popts = append(popts, proxy.WithAdmitter(gate(client, kv, content)))
		name = sysGated
	}
	p, err := proxy.New([]*proxy.Upstream{{Name: l.up.Host(), Registry: client}}, "", content, kv, append(popts, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	l.content[name] = content
	srv := httptest.NewServer(l.firstBytes.wrap(p))
	t.Cleanup(srv.Close)
	return srv.URL
}

func newFilesystemContent(t testing.TB) *cache.Content {
	t.Helper()
	driver, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	content, err := cache.NewContent(driver)
	if err != nil {
		t.Fatal(err)
	}
	return content
}

// newArtifactStore is where a gate keeps the artifacts it reads, as cmd/portcullis wires it: a pack in a directory
// of its own in front of the content store.
func newArtifactStore(t testing.TB, content *cache.Content) *cache.Pack {
	t.Helper()
	p, err := cache.OpenPack(t.TempDir(), content)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// newColdGate is a gate over l's policy that remembers no decision (every Admit decides), reading evidence through
// client and keeping artifacts in stores of its own, as cmd/portcullis does; it returns them too.
func newColdGate(t testing.TB, l *lab, client *upstream.Client) (*admission.Gate, *cache.Pack) {
	t.Helper()
	artifacts := newArtifactStore(t, newFilesystemContent(t))
	return newGateWith(t, l.policyDoc, l.policyFiles, map[string]admission.Endpoint{l.up.Host(): client}, forgetful{},
		[]admission.EvidenceOption{admission.WithArtifactStore(artifacts)}), artifacts
}

// newGate compiles a policy and builds the admission gate the way cmd/portcullis does.
func newGate(t testing.TB, doc string, files map[string][]byte, endpoints map[string]admission.Endpoint, kv cache.KV, o ...admission.Option) *admission.Gate {
	t.Helper()
	return newGateWith(t, doc, files, endpoints, kv, nil, o...)
}

// newGateWith is newGate with evidence options (cmd/portcullis keeps artifacts in the content store).
func newGateWith(t testing.TB, doc string, files map[string][]byte, endpoints map[string]admission.Endpoint, kv cache.KV,
	evOpts []admission.EvidenceOption, o ...admission.Option) *admission.Gate {
	t.Helper()
	pol, err := policy.Parse([]byte(doc), "policy.yaml", func(name string) ([]byte, error) {
		if b, ok := files[filepath.Base(name)]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
	})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	v, err := verifier.New(pol.TrustRoots())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := admission.NewEvidence(v, endpoints, nil, evOpts...)
	if err != nil {
		t.Fatal(err)
	}
	g, err := admission.NewGate(pol, ev, kv, append([]admission.Option{admission.WithLogger(slog.New(slog.DiscardHandler))}, o...)...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// startDistributionProxy serves CNCF Distribution's registry app in proxy (pull-through cache) mode in front of
// remote, on the filesystem driver, and returns its URL.
func startDistributionProxy(t *testing.T, remote string, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	ttl := 24 * time.Hour
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem":  configuration.Parameters{"rootdirectory": t.TempDir()},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
			"redirect":    configuration.Parameters{"disable": true},
		},
		Proxy: configuration.Proxy{RemoteURL: remote, TTL: &ttl},
	}
	cfg.HTTP.Secret = "portcullis-bench-secret"
	cfg.Log.Level = "panic"
	cfg.Log.AccessLog.Disabled = true
	ctx, cancel := context.WithCancel(context.Background())
	app := handlers.NewApp(ctx, cfg)
	srv := httptest.NewServer(wrap(app))
	t.Cleanup(func() { srv.Close(); _ = app.Shutdown(); cancel() })
	return srv.URL
}

// pushImage pushes a one-layer image as repo:tag and returns it; signed, when the lab is gated, by the key the
// policy trusts.
func (l *lab) pushImage(t testing.TB, repo, tag string, layerSize int64, sign bool) v1.Image {
	t.Helper()
	img := l.up.PushRandomImage(t, repo+":"+tag, 1, layerSize)
	if sign {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		cosigntest.Sign(t, l.cosign, l.up.Ref(repo+"@"+d.String()), l.priv)
	}
	return img
}

// get does one request and drains the body; it fails on any status but 200.
func get(client *http.Client, method, url, accept string) (int64, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, err
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return n, nil
}
