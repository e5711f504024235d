package verifier_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

func pemPublicKey(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestNew(t *testing.T) {
	ec := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	rsaKey := must(rsa.GenerateKey(rand.Reader, 2048))
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := cosigntest.TestCA(t)
	trusted := ca.TrustedRoot(t)
	identity := func(k policy.Keyless) *policy.Keyless {
		k.TrustedRootJSON = trusted
		return &k
	}

	tests := []struct {
		name    string
		root    policy.TrustRoot
		wantErr bool
	}{
		{name: "ecdsa key", root: policy.TrustRoot{KeyPEM: pemPublicKey(t, &ec.PublicKey), IgnoreTlog: true}},
		{name: "rsa key", root: policy.TrustRoot{KeyPEM: pemPublicKey(t, &rsaKey.PublicKey), IgnoreTlog: true}},
		{name: "rsa pkcs1 key", root: policy.TrustRoot{
			KeyPEM:     pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}),
			IgnoreTlog: true,
		}},
		{name: "ed25519 key", root: policy.TrustRoot{KeyPEM: pemPublicKey(t, edPub), IgnoreTlog: true}},
		{name: "keyless", root: policy.TrustRoot{Keyless: identity(policy.Keyless{Issuer: "https://i", Subject: "a@b"})}},
		{name: "keyless regexps", root: policy.TrustRoot{Keyless: identity(policy.Keyless{IssuerRegExp: "^https://", SubjectRegExp: "@b$"})}},
		{name: "not PEM", root: policy.TrustRoot{KeyPEM: []byte("ssh-ed25519 AAAA"), IgnoreTlog: true}, wantErr: true},
		{name: "certificate instead of key", root: policy.TrustRoot{KeyPEM: ca.CertPEM, IgnoreTlog: true}, wantErr: true},
		{name: "key needing a tlog without a trusted root", root: policy.TrustRoot{KeyPEM: pemPublicKey(t, &ec.PublicKey)}, wantErr: true},
		{name: "neither key nor keyless", root: policy.TrustRoot{IgnoreTlog: true}, wantErr: true},
		{name: "keyless without trusted root", root: policy.TrustRoot{Keyless: &policy.Keyless{Issuer: "https://i", Subject: "a@b"}}, wantErr: true},
		{name: "bad trusted root", root: policy.TrustRoot{Keyless: &policy.Keyless{TrustedRootJSON: []byte(`{"mediaType":"nope"}`), Issuer: "https://i", Subject: "a@b"}}, wantErr: true},
		{name: "trusted root without CA", root: policy.TrustRoot{Keyless: &policy.Keyless{
			TrustedRootJSON: []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), Issuer: "https://i", Subject: "a@b",
		}}, wantErr: true},
		{name: "keyless without subject", root: policy.TrustRoot{Keyless: identity(policy.Keyless{Issuer: "https://i"})}, wantErr: true},
		{name: "keyless bad regexp", root: policy.TrustRoot{Keyless: identity(policy.Keyless{Issuer: "https://i", SubjectRegExp: "("})}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.root.Name = "r1"
			_, err := verifier.New(map[string]policy.TrustRoot{"r1": tt.root})
			if (err != nil) != tt.wantErr {
				t.Fatalf("New: err = %v, wantErr %v", err, tt.wantErr)
			}
			var rerr *verifier.RootError
			if tt.wantErr && (!errors.As(err, &rerr) || rerr.Root != "r1") {
				t.Errorf("err = %#v, want a *RootError naming r1", err)
			}
		})
	}

	t.Run("bad options", func(t *testing.T) {
		for name, o := range map[string]verifier.Option{
			"WithMaxReferrers(0)":        verifier.WithMaxReferrers(0),
			"WithMaxArtifactLayers(0)":   verifier.WithMaxArtifactLayers(0),
			"WithMaxSignatureSize(0)":    verifier.WithMaxSignatureSize(0),
			"WithMaxAttestationSize(-1)": verifier.WithMaxAttestationSize(-1),
		} {
			if _, err := verifier.New(nil, o); err == nil {
				t.Errorf("%s: no error", name)
			}
		}
	})
}

func TestTargetValidation(t *testing.T) {
	v, err := verifier.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := verifier.Target{Registry: "127.0.0.1:1", Repository: "a/b", Digest: digest.FromString("x")}
	tests := []struct {
		name   string
		target func(verifier.Target) verifier.Target
	}{
		{name: "no registry", target: func(t verifier.Target) verifier.Target { t.Registry = ""; return t }},
		{name: "no repository", target: func(t verifier.Target) verifier.Target { t.Repository = ""; return t }},
		{name: "bad digest", target: func(t verifier.Target) verifier.Target { t.Digest = "sha256:xyz"; return t }},
		{name: "sha512", target: func(t verifier.Target) verifier.Target { t.Digest = digest.SHA512.FromString("x"); return t }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Signatures(t.Context(), tt.target(good), nil)
			if err == nil || errors.Is(err, verifier.ErrUnavailable) {
				t.Errorf("err = %v, want a target error", err)
			}
		})
	}
}
