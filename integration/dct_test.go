package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/notarytest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/verifier/dct"
)

// TestDockerContentTrust pulls through Portcullis under a Docker Content Trust rule: a real notary-server, trust
// data signed with the real notary client library, a real upstream registry, crane as the client.
func TestDockerContentTrust(t *testing.T) {
	srv := notarytest.Start(t)
	// The collections are named per root (gun), so they can be signed before the upstream's address is known.
	app := srv.Init(t, "hub.test/dct/app")
	rogue := srv.Init(t, "hub.test/dct/rogue") // its root key is not pinned
	old := srv.Init(t, "hub.test/dct/old")
	files := map[string][]byte{"app.pub": app.RootKeyPEM, "old.pub": old.RootKeyPEM}
	pol := `trust:
  hub-dct:
    notary:
      server: ` + srv.URL + `
      rootKeys: [app.pub, old.pub]
      gun: "hub.test/{repository}"
default:
  mode: enforce
  signedBy: {anyOf: [hub-dct]}
`
	e := newEnv(t, withPolicy(pol, files), withNotary(dct.WithTransport(srv.Transport)), withProxy(tagTTL(1)))
	push := func(repoTag string) (digest.Digest, int64) { return pushTarget(t, e.up, repoTag) }
	signed, size := push("dct/app:v1")
	app.Sign(t, "", "v1", signed, size)
	push("dct/app:v2") // in the registry, never signed
	d, n := push("dct/rogue:v1")
	rogue.Sign(t, "", "v1", d, n)
	d, n = push("dct/old:v1")
	old.SignExpiring(t, "", "v1", d, n, time.Now().Add(2*time.Second))

	pullDigest := func(t *testing.T, ref string) digest.Digest {
		t.Helper()
		if _, err := crane.Pull(e.ref(ref), pullOpts()...); err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		got, err := crane.Digest(e.ref(ref), pullOpts()...)
		if err != nil {
			t.Fatal(err)
		}
		return digest.Digest(got)
	}

	t.Run("signed tag", func(t *testing.T) {
		if got := pullDigest(t, "dct/app:v1"); got != signed {
			t.Errorf("dct/app:v1 = %s, want the signed %s", got, signed)
		}
	})
	// Anyone who can push to the registry can move the tag; the trust data still says what v1 is.
	unsigned, _ := push("dct/app:v1")
	waitTagTTL()
	t.Run("tag moved in the registry", func(t *testing.T) {
		if got := pullDigest(t, "dct/app:v1"); got != signed {
			t.Errorf("after the registry's tag moved to %s, dct/app:v1 = %s, want the signed %s", unsigned, got, signed)
		}
	})
	time.Sleep(2 * time.Second) // let dct/old's trust data expire
	tests := []struct {
		name, path string
		want       []string
	}{
		{"unsigned digest", "/v2/dct/app/manifests/" + unsigned.String(), []string{"not signed by hub-dct", unsigned.String() + " is not a signed target in the trust data of hub.test/dct/app"}},
		{"unsigned tag", "/v2/dct/app/manifests/v2", []string{`dct/app:v2 denied by rule "default"`, "tag v2 is not signed in the trust data of hub.test/dct/app (role targets)"}},
		{"unknown root key", "/v2/dct/rogue/manifests/v1", []string{"none of which trust root hub-dct pins"}},
		{"expired trust data", "/v2/dct/old/manifests/v1", []string{"targets expired at"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mustContain(t, "denial", denial(t, e, tc.path), tc.want...)
		})
	}

	// A notary server that is down: trust data read before still decides until it expires; none is invented.
	srv.Stop()
	t.Run("server down, cached", func(t *testing.T) {
		if got := pullDigest(t, "dct/app:v1"); got != signed {
			t.Errorf("dct/app:v1 = %s, want the signed %s", got, signed)
		}
	})
	t.Run("server down, not cached", func(t *testing.T) {
		push("dct/new:v1")
		msg := denial(t, e, "/v2/dct/new/manifests/v1")
		mustContain(t, "denial", msg, "could not decide", "notary server unreachable")
		if strings.Contains(msg, "sha256:") {
			t.Errorf("denial %q names a digest: the registry's tag must not be consulted", msg)
		}
	})
}

// pushTarget pushes a small random image as repoTag and returns its digest and manifest size: what a Docker
// Content Trust target names.
func pushTarget(t *testing.T, up *registrytest.Registry, repoTag string) (digest.Digest, int64) {
	t.Helper()
	img := up.PushRandomImage(t, repoTag, 1, 512)
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	return digest.Digest(d.String()), int64(len(raw))
}
