package integration

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
)

// replica is a second Portcullis sharing the first one's upstream, Redis and content directory.
func replica(t *testing.T, first *env, kv cache.KV, contentDir string, pol string, files map[string][]byte) *env {
	t.Helper()
	client, err := upstream.New(first.up.Host(), first.up.URL())
	if err != nil {
		t.Fatal(err)
	}
	ups := []*proxy.Upstream{{Name: first.up.Host(), Registry: client}}
	e := newEnv(t, func(c *envConfig) { c.kv, c.contentDir, c.policy, c.policyFiles = kv, contentDir, pol, files })
	// newEnv made its own upstream; point this replica at the first one's instead.
	m := proxy.NewMetrics(nil)
	opts := []proxy.Option{proxy.WithLogger(testLogger(t)), proxy.WithMetrics(m), proxy.WithSpoolDir(t.TempDir())}
	if pol != "" {
		opts = append(opts, proxy.WithAdmitter(newGate(t, pol, files, map[string]admission.Endpoint{first.up.Host(): client}, kv, admission.NewMetrics(nil), nil)))
	}
	p, err := proxy.New(ups, "", e.content, kv, opts...)
	if err != nil {
		t.Fatal(err)
	}
	waitDownloads(t, p)
	e.srv.Config.Handler = e.seen.wrap(p)
	e.up = first.up
	return e
}

func sharedKV(t *testing.T, addr, prefix string) cache.KV {
	kv := cache.NewTiered(cache.NewMemory(), cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix(prefix)), time.Minute)
	t.Cleanup(func() { _ = kv.Close() })
	return kv
}

// TestFleetSharesWork: two replicas on one Redis and one content store are one logical proxy. What one resolved,
// decided or stored, the other does not do again.
func TestFleetSharesWork(t *testing.T) {
	addr := cachetest.StartRedis(t)
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}
	pol := releasePolicy("")
	content := t.TempDir()
	a := newEnv(t, func(c *envConfig) {
		c.kv, c.contentDir, c.policy, c.policyFiles = sharedKV(t, addr, "fleet:"), content, pol, files
		c.proxyOpts = []proxy.Option{proxy.WithTagTTL(time.Hour)}
	})
	b := replica(t, a, sharedKV(t, addr, "fleet:"), content, pol, files)

	img := a.up.PushRandomImage(t, "fleet/app:v1", 2, 8192)
	d, _ := img.Digest()
	cosigntest.Sign(t, bin, a.up.Ref("fleet/app@"+d.String()), release.priv)
	got, err := crane.Pull(a.ref("fleet/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, img, got)

	a.up.Hits().Reset()
	got, err = crane.Pull(b.ref("fleet/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatalf("second replica: %v", err)
	}
	sameImage(t, img, got)
	if n := a.up.Hits().Total(); n != 0 {
		t.Errorf("the second replica made %d upstream requests for what the first had resolved, decided and stored", n)
	}
}

// TestRedisDownKeepsServing: losing Redis costs shared work, not pulls.
func TestRedisDownKeepsServing(t *testing.T) {
	addr := cachetest.StartRedis(t)
	kv := sharedKV(t, addr, "down:")
	e := newEnv(t, func(c *envConfig) { c.kv = kv })
	img := e.up.PushRandomImage(t, "rd/app:v1", 1, 4096)
	if _, err := crane.Pull(e.ref("rd/app:v1"), pullOpts()...); err != nil {
		t.Fatal(err)
	}
	admin := cache.RedisClient([]string{addr}, "", "", "", 0)
	_ = admin.ShutdownNoSave(context.Background()).Err()
	_ = admin.Close()

	got, err := crane.Pull(e.ref("rd/app:v1"), pullOpts()...)
	if err != nil {
		t.Fatalf("pull with Redis down: %v", err)
	}
	sameImage(t, img, got)
	other := e.up.PushRandomImage(t, "rd/other:v1", 1, 4096)
	got, err = crane.Pull(e.ref("rd/other:v1"), pullOpts()...)
	if err != nil {
		t.Fatalf("new image with Redis down: %v", err)
	}
	sameImage(t, other, got)
	_ = registrytest.KindBlob
	_ = http.MethodGet
}
