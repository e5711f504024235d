package verifier_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/notationtest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

// acmeIdentity is the trusted identity of the test's Notation root.
const acmeIdentity = "x509.subject: C=US, ST=WA, O=Acme, CN=acme"

// notationRoot is a Notation trust root over ca's certificate trusting identities.
func notationRoot(name string, ca *notationtest.CA, identities ...string) policy.TrustRoot {
	return policy.TrustRoot{Name: name, Notation: &policy.Notation{CAPEM: ca.CertPEM, Identities: identities}}
}

// TestSignaturesNotation signs images with notation-go's signer, pushes the signatures as
// referrers (through the API on go-containerregistry's registry, through the fallback tag on
// Distribution, which has no API) and checks that only a signature of this image by a
// trusted identity under the trusted CA verifies, each failure with its own reason.
func TestSignaturesNotation(t *testing.T) {
	t.Parallel()
	ca, rogue := notationtest.NewCA(t, "Acme Root"), notationtest.NewCA(t, "Rogue Root")
	acme := ca.Leaf(t, notationtest.Subject("acme"), time.Time{}, time.Time{})
	mallory := ca.Leaf(t, notationtest.Subject("mallory"), time.Time{}, time.Time{})
	impostor := rogue.Leaf(t, notationtest.Subject("acme"), time.Time{}, time.Time{})
	// Certificates that expire seconds after they sign (notation-go refuses to sign with an
	// expired one); the checks below run once they have expired.
	var expiry time.Time

	registries := []struct {
		name      string
		opts      []registrytest.Option
		referrers bool
	}{
		{name: "referrers API", opts: []registrytest.Option{registrytest.WithGGCR()}, referrers: true},
		{name: "fallback tag", referrers: false},
	}
	type signed struct {
		name   string
		target verifier.Target
		want   policy.SignatureResult
	}
	var cases [][]signed
	for _, rt := range registries {
		reg := registrytest.New(t, rt.opts...)
		repo := notationtest.Repo(t, reg.Host(), "team/app", rt.referrers)
		push := func() (image, digest.Digest) {
			img := pushImage(t, reg, "team/app")
			return img, img.target.Digest
		}
		var cs []signed
		add := func(name string, img image, want policy.SignatureResult) {
			cs = append(cs, signed{name: rt.name + "/" + name, target: img.target, want: want})
		}

		img, d := push()
		notationtest.Sign(t, repo, acme, d, notationtest.JWS)
		add("trusted JWS", img, verified(verifier.FormatNotation))

		img, d = push()
		notationtest.Sign(t, repo, acme, d, notationtest.COSE)
		add("trusted COSE", img, verified(verifier.FormatNotation))

		img, _ = push()
		add("unsigned", img, failed(verifier.ReasonNoNotationSignatures))

		img, d = push()
		notationtest.Sign(t, repo, impostor, d, notationtest.JWS)
		add("untrusted CA", img, failed("certificate chain is not signed by a trusted certificate authority"))

		img, d = push()
		notationtest.Sign(t, repo, mallory, d, notationtest.COSE)
		add("identity not trusted", img, failed(`signing identity "CN=mallory,O=Acme,ST=WA,C=US" is not a trusted identity`))

		img, d = push()
		if l := ca.SignExpiring(t, repo, notationtest.Subject("acme"), d, notationtest.JWS); l.Cert.NotAfter.After(expiry) {
			expiry = l.Cert.NotAfter
		}
		add("expired certificate", img, failed("certificate expired or not yet valid"))

		// A valid signature of another image, pushed as a referrer of this one.
		img, d = push()
		_, other := push()
		env := notationtest.Envelope(t, acme, notationtest.Resolve(t, repo, other.String()), notationtest.JWS)
		notationtest.Push(t, repo, notationtest.JWS, env, notationtest.Resolve(t, repo, d.String()))
		add("signature of another digest", img, failed("it signs "+other.String()+", not this image"))

		img, d = push()
		subject := notationtest.Resolve(t, repo, d.String())
		env = notationtest.Tamper(t, notationtest.Envelope(t, acme, subject, notationtest.JWS))
		notationtest.Push(t, repo, notationtest.JWS, env, subject)
		add("tampered envelope", img, failed("tampered or malformed envelope"))

		cases = append(cases, cs)
	}
	time.Sleep(time.Until(expiry.Add(1100 * time.Millisecond)))

	v := newVerifier(t, notationRoot("acme", ca, acmeIdentity))
	for _, cs := range cases {
		for _, c := range cs {
			t.Run(c.name, func(t *testing.T) {
				got, err := v.Signatures(context.Background(), c.target, []string{"acme"})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("result: %+v", got["acme"])
				if !c.want.Verified {
					// Every reason names the root; the rest is the cause.
					if r := got["acme"].Reason; r != verifier.ReasonNoNotationSignatures && !strings.Contains(r, "notation root acme") {
						t.Errorf("reason %q does not name the root", r)
					}
					if r := got["acme"].Reason; strings.Contains(r, c.want.Reason) {
						got["acme"] = c.want
					}
				}
				checkResults(t, got, map[string]policy.SignatureResult{"acme": c.want})
			})
		}
	}
}

// TestSignaturesNotationAndCosign checks one call with a cosign key root and a Notation root
// beside it, as a policy's allOf names them: each root is judged on its own signatures.
func TestSignaturesNotationAndCosign(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	reg := registrytest.New(t)
	repo := notationtest.Repo(t, reg.Host(), "team/app", false)
	ca := notationtest.NewCA(t, "Acme Root")
	acme := ca.Leaf(t, notationtest.Subject("acme"), time.Time{}, time.Time{})
	release := newKeyPair(t)

	both := pushImage(t, reg, "team/app")
	cosigntest.Sign(t, bin, both.ref, release.priv)
	notationtest.Sign(t, repo, acme, both.target.Digest, notationtest.JWS)
	cosignOnly := pushImage(t, reg, "team/app")
	cosigntest.Sign(t, bin, cosignOnly.ref, release.priv)
	notationOnly := pushImage(t, reg, "team/app")
	notationtest.Sign(t, repo, acme, notationOnly.target.Digest, notationtest.COSE)

	v := newVerifier(t, keyRoot(t, "release", release.pub), notationRoot("acme", ca, "*"))
	tests := []struct {
		name string
		img  image
		want map[string]policy.SignatureResult
	}{
		{name: "both", img: both, want: map[string]policy.SignatureResult{
			"release": verified(verifier.FormatCosignTag), "acme": verified(verifier.FormatNotation)}},
		{name: "cosign only", img: cosignOnly, want: map[string]policy.SignatureResult{
			"release": verified(verifier.FormatCosignTag), "acme": failed(verifier.ReasonNoNotationSignatures)}},
		{name: "notation only", img: notationOnly, want: map[string]policy.SignatureResult{
			"release": failed(verifier.ReasonNoSignatures), "acme": verified(verifier.FormatNotation)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Signatures(context.Background(), tt.img.target, []string{"release", "acme"})
			if err != nil {
				t.Fatal(err)
			}
			checkResults(t, got, tt.want)
		})
	}
}

// TestNewNotationRootErrors checks that Notation material notation-go cannot use is a
// *RootError at New.
func TestNewNotationRootErrors(t *testing.T) {
	ca := notationtest.NewCA(t, "Acme Root")
	tests := []struct {
		name string
		n    policy.Notation
	}{
		{name: "no certificates", n: policy.Notation{Identities: []string{"*"}}},
		{name: "not a certificate", n: policy.Notation{CAPEM: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), Identities: []string{"*"}}},
		{name: "bad identity", n: policy.Notation{CAPEM: ca.CertPEM, Identities: []string{"x509.subject: nonsense"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verifier.New(map[string]policy.TrustRoot{"n": {Name: "n", Notation: &tt.n}})
			var re *verifier.RootError
			if !errors.As(err, &re) || re.Root != "n" {
				t.Fatalf("New = %v, want a *RootError for n", err)
			}
		})
	}
}

// TestNotationBounds checks that a Notation envelope larger than the signature bound is not
// read: it is invalid evidence, and the reason says so.
func TestNotationBounds(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	repo := notationtest.Repo(t, reg.Host(), "team/app", false)
	ca := notationtest.NewCA(t, "Acme Root")
	img := pushImage(t, reg, "team/app")
	notationtest.Sign(t, repo, ca.Leaf(t, notationtest.Subject("acme"), time.Time{}, time.Time{}), img.target.Digest, notationtest.JWS)

	v, err := verifier.New(map[string]policy.TrustRoot{"acme": notationRoot("acme", ca, acmeIdentity)}, verifier.WithMaxSignatureSize(256))
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Signatures(context.Background(), img.target, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	want := "no signature verifies with notation root acme: invalid signature: Notation signature sha256:"
	if r := got["acme"]; r.Verified || !strings.HasPrefix(r.Reason, want) || !strings.Contains(r.Reason, "more than 256 bytes") {
		t.Errorf("result = %+v, want a refusal starting %q and naming the bound", r, want)
	}
}
