package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

func TestRegistryURL(t *testing.T) {
	named := func() (string, error) { return "portcullis-0", nil }
	unnamed := func() (string, error) { return "", errors.New("no host name") }
	tests := []struct {
		name     string
		listen   string
		tls      bool
		hostname func() (string, error)
		want     string
	}{
		{"loopback", "127.0.0.1:5000", false, named, "http://127.0.0.1:5000"},
		{"a host name", "portcullis.registry.svc:5000", false, named, "http://portcullis.registry.svc:5000"},
		{"TLS listener", "portcullis.registry.svc:5443", true, named, "https://portcullis.registry.svc:5443"},
		{"port only: the host's name", ":5000", false, named, "http://portcullis-0:5000"},
		{"IPv4 wildcard", "0.0.0.0:5000", false, named, "http://portcullis-0:5000"},
		{"IPv6 wildcard, TLS", "[::]:5443", true, named, "https://portcullis-0:5443"},
		{"wildcard, no host name", ":5000", false, unnamed, "http://localhost:5000"},
		{"IPv6 loopback", "[::1]:5000", false, named, "http://[::1]:5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &configs.Config{Listen: tt.listen}
			if tt.tls {
				cfg.TLS = configs.TLS{Cert: "tls.crt", Key: "tls.key"}
			}
			if got := registryURL(cfg, tt.hostname); got != tt.want {
				t.Errorf("registryURL = %q, want %q", got, tt.want)
			}
		})
	}
}

// A gated serve keeps the signature artifacts it reads in a pack in the data directory, not as files of their own
// in the content store.
func TestServeKeepsArtifactsInAPack(t *testing.T) {
	up := registrytest.New(t)
	bin := cosigntest.Binary(t)
	priv, pub := cosigntest.KeyPair(t)
	img := up.PushRandomImage(t, "acme/app:v1", 1, 512)
	d, _ := img.Digest()
	cosigntest.Sign(t, bin, up.Ref("acme/app@"+d.String()), priv)
	sig, err := crane.Pull(up.Ref("acme/app:sha256-"+d.Hex+".sig"), crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := sig.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("signature layers: %d, %v", len(layers), err)
	}
	layer, _ := layers[0].Digest()
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := io.ReadAll(rc)
	rc.Close()

	pol := filepath.Join(t.TempDir(), "policy.yaml")
	_ = os.WriteFile(pol, []byte("trust:\n  release: {key: "+pub+"}\ndefault:\n  signedBy: {anyOf: [release]}\n"), 0o600)
	var dataDir string
	a, _, _ := startApp(t, up, io.Discard, func(cfg *configs.Config) { cfg.Policy, dataDir = pol, cfg.DataDir })
	if _, err := crane.Digest(a.addr.String()+"/acme/app:v1", crane.Insecure); err != nil {
		t.Fatalf("pull of the signed image: %v", err)
	}

	// The artifact is stored after the decision, off its path.
	packs := filepath.Join(dataDir, "artifacts", "pack-*")
	var packed bool
	for deadline := time.Now().Add(10 * time.Second); !packed && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		files, _ := filepath.Glob(packs)
		for _, f := range files {
			b, _ := os.ReadFile(f)
			packed = packed || bytes.Contains(b, payload)
		}
	}
	if !packed {
		t.Fatalf("the signature payload is not in %s", packs)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "content", "small", "sha256", layer.Hex[:2], layer.Hex)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the signature layer is in the content store too: %v", err)
	}
}
