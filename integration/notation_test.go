package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/containerdtest"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/notationtest"
)

const mixedPolicy = `trust:
  release: {key: release.pub}
  acme-notation:
    notation:
      trustStore: notation-ca.pem
      identities: ["x509.subject: C=US, ST=WA, O=Acme, CN=acme"]
rules:
  - name: mixed
    match: {repository: "mixed/**"}
    signedBy: {allOf: [release, acme-notation]}
`

// TestMixedCosignAndNotation runs a policy that wants both a cosign key signature and a Notation signature by a
// trusted identity (allOf), end to end: images signed by the cosign CLI and by notation-go's signer on a CNCF
// Distribution upstream (no referrers API: Notation's fallback tag), pulled through Portcullis with crane and with
// containerd's ctr. Only the image with both signatures is served; each other one is refused naming the missing
// root; and notation-go, as a client, verifies the served image's Notation signature through Portcullis.
func TestMixedCosignAndNotation(t *testing.T) {
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	ca := notationtest.NewCA(t, "Acme Root")
	acme := ca.Leaf(t, notationtest.Subject("acme"), time.Time{}, time.Time{})
	mallory := ca.Leaf(t, notationtest.Subject("mallory"), time.Time{}, time.Time{})
	e := newEnv(t, withPolicy(mixedPolicy, map[string][]byte{"release.pub": release.pubPEM(t), "notation-ca.pem": ca.CertPEM}))

	sign := func(repo string, cosign bool, leaf *notationtest.Leaf, envelope string) {
		img := e.up.PushRandomImage(t, repo+":v1", 2, 2048)
		d, _ := img.Digest()
		if cosign {
			cosigntest.Sign(t, bin, e.up.Ref(repo+"@"+d.String()), release.priv)
		}
		if leaf != nil {
			notationtest.Sign(t, notationtest.Repo(t, e.up.Host(), repo, false), leaf, digest.Digest(d.String()), envelope)
		}
	}
	sign("mixed/both", true, acme, notationtest.JWS)
	sign("mixed/cose", true, acme, notationtest.COSE)
	sign("mixed/cosign-only", true, nil, "")
	sign("mixed/notation-only", false, acme, notationtest.JWS)
	sign("mixed/wrong-identity", true, mallory, notationtest.JWS)

	t.Run("crane", func(t *testing.T) {
		for _, repo := range []string{"mixed/both", "mixed/cose"} {
			if _, err := crane.Pull(e.ref(repo+":v1"), pullOpts()...); err != nil {
				t.Errorf("%s: %v", repo, err)
			}
		}
		tests := []struct{ repo, want string }{
			{"mixed/cosign-only", "not signed by acme-notation (no Notation signatures found)"},
			{"mixed/notation-only", "not signed by release (no signatures found)"},
			{"mixed/wrong-identity", `signing identity "CN=mallory,O=Acme,ST=WA,C=US" is not a trusted identity`},
		}
		for _, tt := range tests {
			_, err := crane.Pull(e.ref(tt.repo+":v1"), pullOpts()...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: crane pull = %v, want a denial containing %q", tt.repo, err, tt.want)
			}
		}
	})

	t.Run("notation verify through Portcullis", func(t *testing.T) {
		d, err := crane.Digest(e.ref("mixed/both:v1"), pullOpts()...)
		if err != nil {
			t.Fatal(err)
		}
		// As the notation CLI does: the referrers API first (Portcullis serves it for an admitted image).
		repo := notationtest.Repo(t, e.host(), "mixed/both", true)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := notationtest.Verify(ctx, repo, ca, e.host()+"/mixed/both@"+d, "x509.subject: C=US, ST=WA, O=Acme, CN=acme"); err != nil {
			t.Errorf("notation verify through Portcullis: %v", err)
		}
	})

	t.Run("ctr", func(t *testing.T) {
		dm := containerdtest.Start(t)
		hosts := containerdtest.WriteHostsDir(t, e.up.Host(), e.srv.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := dm.Pull(ctx, e.up.Ref("mixed/both:v1"), hosts, ""); err != nil {
			t.Fatalf("ctr pull of the doubly signed image: %v\n%s", err, out)
		}
		out, err := dm.Pull(ctx, e.up.Ref("mixed/cosign-only:v1"), hosts, "")
		if err == nil {
			t.Fatalf("ctr pulled an image without its Notation signature:\n%s", out)
		}
		mustContain(t, "ctr output", out, "403 portcullis: ", `denied by rule "mixed"`, "not signed by acme-notation")
	})
}
