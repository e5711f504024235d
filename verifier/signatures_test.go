package verifier_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

// checkResults compares per-root results; a want Reason is a prefix of the
// got one (the rest quotes cosign's error text).
func checkResults(t *testing.T, got, want map[string]policy.SignatureResult) {
	t.Helper()
	norm := make(map[string]policy.SignatureResult, len(got))
	for k, g := range got {
		if w, ok := want[k]; ok && w.Reason != "" && strings.HasPrefix(g.Reason, w.Reason) {
			g.Reason = w.Reason
		}
		norm[k] = g
	}
	if diff := cmp.Diff(want, norm); diff != "" {
		t.Errorf("results (-want +got):\n%s\ngot: %+v", diff, got)
	}
}

func verified(format string) policy.SignatureResult {
	return policy.SignatureResult{Verified: true, Format: format}
}

func failed(reason string) policy.SignatureResult {
	return policy.SignatureResult{Reason: reason}
}

func TestSignaturesClassicKey(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	reg := registrytest.New(t)
	release, other := newKeyPair(t), newKeyPair(t)

	signed := pushImage(t, reg, "team/app")
	cosigntest.Sign(t, bin, signed.ref, release.priv)
	unsigned := pushImage(t, reg, "team/app")
	otherSigned := pushImage(t, reg, "team/app")
	cosigntest.Sign(t, bin, otherSigned.ref, other.priv)
	both := pushImage(t, reg, "team/app")
	cosigntest.Sign(t, bin, both.ref, other.priv)
	cosigntest.Sign(t, bin, both.ref, release.priv)

	// A signature copied from another image's tag must not count: the
	// signed payload names the other digest.
	copied := pushImage(t, reg, "team/app")
	sigTag := func(img image) string {
		return "team/app:sha256-" + img.target.Digest.Encoded() + ".sig"
	}
	desc, err := remote.Head(parseRef(t, reg.Ref(sigTag(signed))))
	if err != nil {
		t.Fatal(err)
	}
	reg.Tag(t, sigTag(copied), desc.Digest)

	v := newVerifier(t, keyRoot(t, "release", release.pub), keyRoot(t, "other", other.pub))
	tests := []struct {
		name  string
		image image
		roots []string
		want  map[string]policy.SignatureResult
	}{
		{
			name: "signed with the trusted key", image: signed, roots: []string{"release"},
			want: map[string]policy.SignatureResult{"release": verified(verifier.FormatCosignTag)},
		},
		{
			name: "one root of two", image: signed, roots: []string{"release", "other"},
			want: map[string]policy.SignatureResult{
				"release": verified(verifier.FormatCosignTag),
				"other":   failed("no signature verifies with key other: "),
			},
		},
		{
			name: "unsigned", image: unsigned, roots: []string{"release", "other"},
			want: map[string]policy.SignatureResult{
				"release": failed(verifier.ReasonNoSignatures),
				"other":   failed(verifier.ReasonNoSignatures),
			},
		},
		{
			name: "wrong key", image: otherSigned, roots: []string{"release"},
			want: map[string]policy.SignatureResult{"release": failed("no signature verifies with key release: ")},
		},
		{
			name: "two signatures, two keys", image: both, roots: []string{"release", "other"},
			want: map[string]policy.SignatureResult{
				"release": verified(verifier.FormatCosignTag),
				"other":   verified(verifier.FormatCosignTag),
			},
		},
		{
			name: "signature copied from another image", image: copied, roots: []string{"release"},
			want: map[string]policy.SignatureResult{"release": failed("no signature verifies with key release: ")},
		},
		{
			name: "no roots asked", image: signed, roots: nil,
			want: map[string]policy.SignatureResult{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Signatures(t.Context(), tt.image.target, tt.roots)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			checkResults(t, got, tt.want)
		})
	}

	t.Run("unknown root", func(t *testing.T) {
		_, err := v.Signatures(t.Context(), signed.target, []string{"nope"})
		if !errors.Is(err, verifier.ErrUnknownRoot) {
			t.Fatalf("err = %v, want ErrUnknownRoot", err)
		}
	})
}

// TestSignaturesKeyTypes signs with RSA and Ed25519 keys imported into cosign
// and verifies with their PEM public keys.
func TestSignaturesKeyTypes(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	reg := registrytest.New(t)
	tests := []struct {
		name string
		key  any
	}{
		{name: "rsa", key: must(rsa.GenerateKey(rand.Reader, 2048))},
		{name: "ed25519", key: func() any { _, k, _ := ed25519.GenerateKey(rand.Reader); return k }()},
		{name: "ecdsa-p384", key: must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			der, err := x509.MarshalPKCS8PrivateKey(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(dir, "key.pem")
			if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
			prefix := filepath.Join(dir, "imported")
			cosigntest.Run(t, bin, "import-key-pair", "--key", keyFile, "--output-key-prefix", prefix)

			img := pushImage(t, reg, "keys/"+tt.name)
			cosigntest.Sign(t, bin, img.ref, prefix+".key")
			v := newVerifier(t, keyRoot(t, tt.name, prefix+".pub"))
			got, err := v.Signatures(t.Context(), img.target, []string{tt.name})
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			checkResults(t, got, map[string]policy.SignatureResult{tt.name: verified(verifier.FormatCosignTag)})
		})
	}
}

func TestSignaturesKeyless(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	reg := registrytest.New(t)
	ca, otherCA := cosigntest.TestCA(t), cosigntest.TestCA(t)
	const issuer = "https://token.actions.githubusercontent.com"
	const subject = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"

	img := pushImage(t, reg, "acme/app")
	cosigntest.SignKeyless(t, bin, img.ref, ca.Leaf(t, subject, issuer))
	emailImg := pushImage(t, reg, "acme/app")
	cosigntest.SignKeyless(t, bin, emailImg.ref, ca.Leaf(t, "release@acme.example", "https://accounts.google.com"))

	trusted, otherTrusted := ca.TrustedRoot(t), otherCA.TrustedRoot(t)
	keyless := func(name string, trustedRoot []byte, k policy.Keyless) policy.TrustRoot {
		k.TrustedRootJSON = trustedRoot
		// The test CA has no CT or transparency log.
		return policy.TrustRoot{Name: name, Keyless: &k, IgnoreTlog: true, IgnoreSCT: true}
	}
	needsTlog := keyless("needs-tlog", trusted, policy.Keyless{Issuer: issuer, Subject: subject})
	needsTlog.IgnoreTlog = false
	needsSCT := keyless("needs-sct", trusted, policy.Keyless{Issuer: issuer, Subject: subject})
	needsSCT.IgnoreSCT = false
	v := newVerifier(t,
		keyless("exact", trusted, policy.Keyless{Issuer: issuer, Subject: subject}),
		keyless("regexp", trusted, policy.Keyless{IssuerRegExp: `^https://token\.actions\.`, SubjectRegExp: `^https://github\.com/acme/`}),
		keyless("email", trusted, policy.Keyless{Issuer: "https://accounts.google.com", Subject: "release@acme.example"}),
		keyless("wrong-subject", trusted, policy.Keyless{Issuer: issuer, SubjectRegExp: `^https://github\.com/evil/`}),
		keyless("wrong-issuer", trusted, policy.Keyless{Issuer: "https://gitlab.com", Subject: subject}),
		keyless("other-ca", otherTrusted, policy.Keyless{Issuer: issuer, Subject: subject}),
		needsTlog, needsSCT,
	)

	tests := []struct {
		name  string
		image image
		want  map[string]policy.SignatureResult
	}{
		{
			name:  "workflow identity",
			image: img,
			want: map[string]policy.SignatureResult{
				"exact":         verified(verifier.FormatCosignTag),
				"regexp":        verified(verifier.FormatCosignTag),
				"email":         failed("certificate identity " + subject + " (issuer " + issuer + ") does not match keyless root email"),
				"wrong-subject": failed("certificate identity " + subject + " (issuer " + issuer + ") does not match keyless root wrong-subject (want subject ~^https://github\\.com/evil/, issuer " + issuer + ")"),
				"wrong-issuer":  failed("certificate identity " + subject + " (issuer " + issuer + ") does not match keyless root wrong-issuer"),
				"other-ca":      failed("no signature verifies with keyless root other-ca: "),
				"needs-tlog":    failed("no signature verifies with keyless root needs-tlog: "),
				"needs-sct":     failed("no signature verifies with keyless root needs-sct: "),
			},
		},
		{
			name:  "email identity",
			image: emailImg,
			want: map[string]policy.SignatureResult{
				"exact":         failed("certificate identity release@acme.example (issuer https://accounts.google.com) does not match keyless root exact"),
				"regexp":        failed("certificate identity release@acme.example"),
				"email":         verified(verifier.FormatCosignTag),
				"wrong-subject": failed("certificate identity release@acme.example"),
				"wrong-issuer":  failed("certificate identity release@acme.example"),
				"other-ca":      failed("certificate identity release@acme.example"),
				"needs-tlog":    failed("certificate identity release@acme.example"),
				"needs-sct":     failed("certificate identity release@acme.example"),
			},
		},
	}
	roots := []string{"exact", "regexp", "email", "wrong-subject", "wrong-issuer", "other-ca", "needs-tlog", "needs-sct"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Signatures(t.Context(), tt.image.target, roots)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			checkResults(t, got, tt.want)
		})
	}
}

// TestSignaturesBundle covers the sigstore bundle that cosign 3 writes by
// default: under the sha256-<hex> fallback tag on CNCF Distribution (no
// referrers API) and as a referrer on a registry with the API; signed with a
// key and with a certificate from the test CA.
func TestSignaturesBundle(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary3(t)
	release, other := newKeyPair(t), newKeyPair(t)
	ca := cosigntest.TestCA(t)
	const issuer, subject = "https://accounts.example", "ci@acme.example"
	trusted := ca.TrustedRoot(t)
	keyless := func(name, subject string) policy.TrustRoot {
		k := &policy.Keyless{TrustedRootJSON: trusted, Issuer: issuer, Subject: subject}
		return policy.TrustRoot{Name: name, Keyless: k, IgnoreTlog: true, IgnoreSCT: true}
	}
	v := newVerifier(t, keyRoot(t, "release", release.pub), keyRoot(t, "other", other.pub),
		keyless("ci", subject), keyless("evil-ci", "evil@acme.example"))
	roots := []string{"release", "other", "ci", "evil-ci"}

	tests := []struct {
		name string
		opts []registrytest.Option
	}{
		{name: "fallback tag on distribution"},
		{name: "referrers API", opts: []registrytest.Option{registrytest.WithGGCR()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := registrytest.New(t, tt.opts...)
			keyed := pushImage(t, reg, "team/bundled")
			cosigntest.SignBundle(t, bin, keyed.ref, release.priv)
			certified := pushImage(t, reg, "team/bundled")
			cosigntest.SignKeylessBundle(t, bin, certified.ref, ca, ca.Leaf(t, subject, issuer))

			got, err := v.Signatures(t.Context(), keyed.target, roots)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			checkResults(t, got, map[string]policy.SignatureResult{
				"release": verified(verifier.FormatBundle),
				"other":   failed("no signature verifies with key other: "),
				"ci":      failed("no signature verifies with keyless root ci: no signing certificate"),
				"evil-ci": failed("no signature verifies with keyless root evil-ci: no signing certificate"),
			})

			got, err = v.Signatures(t.Context(), certified.target, roots)
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			checkResults(t, got, map[string]policy.SignatureResult{
				"release": failed("no signature verifies with key release: "),
				"other":   failed("no signature verifies with key other: "),
				"ci":      verified(verifier.FormatBundle),
				"evil-ci": failed("certificate identity ci@acme.example (issuer https://accounts.example) does not match keyless root evil-ci"),
			})
		})
	}
}

func TestSignaturesRegistryFailure(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	key := newKeyPair(t)
	tests := []struct {
		name string
		// break makes reg fail after the image was signed.
		breakIt func(reg *registrytest.Registry, status *atomic.Int32)
	}{
		{name: "down", breakIt: func(reg *registrytest.Registry, _ *atomic.Int32) { reg.Close() }},
		{name: "5xx", breakIt: func(_ *registrytest.Registry, status *atomic.Int32) { status.Store(http.StatusServiceUnavailable) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := new(atomic.Int32)
			reg := registrytest.New(t, registrytest.WithMiddleware(failWith(status)))
			img := pushImage(t, reg, "team/app")
			cosigntest.Sign(t, bin, img.ref, key.priv)
			v := newVerifier(t, keyRoot(t, "release", key.pub))
			tt.breakIt(reg, status)

			ctx := context.WithoutCancel(t.Context())
			if got, err := v.Signatures(ctx, img.target, []string{"release"}); !errors.Is(err, verifier.ErrUnavailable) {
				t.Errorf("Signatures = %v, %v; want ErrUnavailable", got, err)
			}
			if got, err := v.Attestations(ctx, img.target, []string{"release"}); !errors.Is(err, verifier.ErrUnavailable) {
				t.Errorf("Attestations = %v, %v; want ErrUnavailable", got, err)
			}
		})
	}
}

// failWith answers every request with *status once it is not zero.
func failWith(status *atomic.Int32) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code := int(status.Load()); code != 0 {
				http.Error(w, "injected failure", code)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
