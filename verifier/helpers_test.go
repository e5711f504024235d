package verifier_test

import (
	"os"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

// image is one random image pushed to a test registry.
type image struct {
	ref    string // host/repo@sha256:..., what the cosign CLI signs
	target verifier.Target
}

// pushImage pushes a random one-layer image as repo:latest and returns it.
func pushImage(t *testing.T, reg *registrytest.Registry, repo string) image {
	t.Helper()
	img := reg.PushRandomImage(t, repo+":latest", 1, 256)
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Digest(h.String())
	return image{
		ref: reg.Ref(repo + "@" + d.String()),
		target: verifier.Target{
			Registry:   reg.Host(),
			Insecure:   true,
			Repository: repo,
			Digest:     d,
		},
	}
}

// keyRoot reads a cosign public key file into a key trust root.
func keyRoot(t *testing.T, name, pubPath string) policy.TrustRoot {
	t.Helper()
	pem, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	return policy.TrustRoot{Name: name, KeyPEM: pem, IgnoreTlog: true}
}

// newVerifier builds a Verifier from roots keyed by their names.
func newVerifier(t *testing.T, roots ...policy.TrustRoot) *verifier.Verifier {
	t.Helper()
	m := make(map[string]policy.TrustRoot, len(roots))
	for _, r := range roots {
		m[r.Name] = r
	}
	v, err := verifier.New(m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// keyPair is a cosign key pair made by the CLI.
type keyPair struct{ priv, pub string }

func newKeyPair(t *testing.T) keyPair {
	t.Helper()
	priv, pub := cosigntest.KeyPair(t)
	return keyPair{priv: priv, pub: pub}
}

// parseRef parses a reference to the plain-HTTP test registry.
func parseRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
