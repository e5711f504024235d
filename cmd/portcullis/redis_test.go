package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// serve reaches a Redis that takes only TLS with a client certificate and an ACL user, as the config says.
func TestServeRedisTLSAndACL(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{TLS: true, ClientCerts: true,
		Users: []string{"default off", "portcullis on >s3cret ~* &* +@all"}})
	keyFile := filepath.Join(t.TempDir(), "state.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := registrytest.New(t)
	up.PushRandomImage(t, "team/app:v1", 1, 1024)
	a, _, _ := startApp(t, up, &cachetest.SyncBuilder{}, func(cfg *configs.Config) {
		cfg.Cache.StateKeyFile = keyFile
		cfg.Cache.Redis = configs.Redis{Addrs: []string{srv.Addr}, Username: "portcullis", Password: "s3cret", KeyPrefix: "pc:",
			TLS: configs.RedisTLS{CAFile: srv.TLS.CAFile, CertFile: srv.TLS.ClientCert, KeyFile: srv.TLS.ClientKey}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := cfg.CheckFiles(); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := crane.Pull(a.addr.String()+"/team/app:v1", crane.Insecure); err != nil {
		t.Fatal(err)
	}
	// The tag's resolution is in Redis: the proxy wrote it there over TLS.
	client := cache.NewRedisClient(cache.RedisOptions{Addrs: []string{srv.Addr}, Username: "portcullis", Password: "s3cret",
		TLS: srv.TLS.ClientConfig()})
	defer client.Close()
	keys, err := client.Keys(context.Background(), "pc:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys in Redis: %q, %v; want the proxy's", keys, err)
	}
}

// `portcullis validate` of a fleet config without a state key says how to make one.
func TestValidateRedisNeedsStateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(path, []byte("cache:\n  redis:\n    addrs: [redis:6379]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"validate", "--config", path}, &out, &errb); code != 1 {
		t.Fatalf("exit %d; want 1 (stderr %q)", code, errb.String())
	}
	if !strings.Contains(errb.String(), "cache.stateKeyFile") || !strings.Contains(errb.String(), "head -c 32 /dev/urandom | base64 > state.key") {
		t.Errorf("stderr %q does not say how to make a state key", errb.String())
	}
}
