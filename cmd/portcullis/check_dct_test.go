package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/notarytest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// TestCheckDockerContentTrust runs check under a Docker Content Trust rule (a real notary-server, trust data signed
// with the real notary client library) and shows that it decides what a pull decides: a tag is the digest its
// trust data signs even after the registry's tag moved, and a tag the trust data does not sign is denied before
// anything is fetched, with the pull's reason.
func TestCheckDockerContentTrust(t *testing.T) {
	srv := notarytest.StartPlain(t) // check reaches notary servers with the system's TLS roots
	app := srv.Init(t, "hub.test/acme/app")
	up := registrytest.New(t)
	push := func(repoTag string) (digest.Digest, int64) {
		img := up.PushRandomImage(t, repoTag, 1, 512)
		d, _ := img.Digest()
		raw, _ := img.RawManifest()
		return digest.Digest(d.String()), int64(len(raw))
	}
	signed, size := push("acme/app:v1")
	app.Sign(t, "", "v1", signed, size)
	moved, _ := push("acme/app:v1") // the registry's tag moves; the trust data still says what v1 is
	push("acme/app:v2")             // in the registry, never signed

	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "app.pub"), app.RootKeyPEM, 0o600)
	pol := filepath.Join(dir, "policy.yaml")
	_ = os.WriteFile(pol, []byte("trust:\n  hub-dct:\n    notary: {server: "+srv.URL+", rootKeys: [app.pub], gun: 'hub.test/{repository}'}\n"+
		"default:\n  signedBy: {anyOf: [hub-dct]}\n"), 0o600)
	base := []string{"check", "--upstream", up.Host() + "=" + up.URL().String(), "--policy", pol}

	tests := []struct {
		name, image string
		wantCode    int
		want        []string
	}{
		{"tag moved in the registry", "acme/app:v1", 0, []string{"decision:  ALLOWED", "@" + signed.String(), "tag:       v1", "signature by hub-dct: verified"}},
		{"the moved tag's digest", "acme/app@" + moved.String(), 1, []string{"decision:  DENIED", moved.String() + " is not a signed target in the trust data of hub.test/acme/app"}},
		{"unsigned tag", "acme/app:v2", 1, []string{"decision:  DENIED", `denied by rule "default": not signed by hub-dct (tag v2 is not signed in the trust data of hub.test/acme/app (role targets))`,
			"before anything is fetched"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := runCLI(t, append(base, tc.image), tc.wantCode, tc.want...)
			if strings.Contains(all, moved.String()) && tc.image == "acme/app:v1" {
				t.Errorf("check of the tag names the registry's digest %s:\n%s", moved, all)
			}
		})
	}
}
