package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

func TestCheck(t *testing.T) {
	up := registrytest.New(t)
	bin := cosigntest.Binary(t)
	priv, pub := cosigntest.KeyPair(t)
	signed := up.PushRandomImage(t, "acme/app:signed", 1, 512)
	sd, _ := signed.Digest()
	cosigntest.Sign(t, bin, up.Ref("acme/app@"+sd.String()), priv)
	up.PushRandomImage(t, "acme/app:unsigned", 1, 512)

	dir := t.TempDir()
	pubPEM, _ := os.ReadFile(pub)
	_ = os.WriteFile(filepath.Join(dir, "release.pub"), pubPEM, 0o600)
	pol := filepath.Join(dir, "policy.yaml")
	_ = os.WriteFile(pol, []byte("trust:\n  release: {key: release.pub}\ndefault:\n  signedBy: {anyOf: [release]}\n"), 0o600)
	base := []string{"check", "--upstream", up.Host() + "=" + up.URL().String(), "--policy", pol}

	tests := []struct {
		name     string
		image    string
		wantCode int
		want     []string
	}{
		{"signed by tag", up.Host() + "/acme/app:signed", 0, []string{"decision:  ALLOWED", "signature by release: verified (cosign-tag)", sd.String()}},
		{"signed on the default upstream", "acme/app@" + sd.String(), 0, []string{"ALLOWED"}},
		{"unsigned", "acme/app:unsigned", 1, []string{"decision:  DENIED", "signature by release: not verified (no signatures found)", "failed:    not signed by release"}},
		{"unknown tag", "acme/app:nope", 1, []string{"resolve"}},
		{"unknown upstream", "ghcr.io/acme/app:v1", 1, []string{"not configured"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append(base, tc.image), &out, &errb)
			all := out.String() + errb.String()
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.wantCode, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes a few seconds")
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"demo"}, &out, &errb); code != 0 {
		t.Fatalf("demo exit %d:\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"SERVED", "DENIED", "not signed by release", "-> 403", "not part of any image admitted"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("demo output lacks %q:\n%s", w, out.String())
		}
	}
}
