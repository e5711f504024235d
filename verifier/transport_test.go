package verifier_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"testing"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

// TestTransport checks that Target.Transport and Target.Insecure decide how
// the registry is reached: TLS unless Insecure, even on loopback, and
// credentials only through the caller's transport.
func TestTransport(t *testing.T) {
	t.Parallel()
	bin := cosigntest.Binary(t)
	key := newKeyPair(t)
	v := newVerifier(t, keyRoot(t, "release", key.pub))

	t.Run("TLS", func(t *testing.T) {
		reg := registrytest.New(t, registrytest.WithTLS())
		img := pushImage(t, reg, "team/app")
		cosigntest.Sign(t, bin, img.ref, key.priv)
		img.target.Insecure = false
		img.target.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: reg.CertPool()}}
		got, err := v.Signatures(t.Context(), img.target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		checkResults(t, got, map[string]policy.SignatureResult{"release": verified(verifier.FormatCosignTag)})
	})

	t.Run("no plain HTTP unless Insecure", func(t *testing.T) {
		reg := registrytest.New(t)
		img := pushImage(t, reg, "team/app")
		cosigntest.Sign(t, bin, img.ref, key.priv)
		img.target.Insecure = false
		reg.Hits().Reset()
		_, err := v.Signatures(t.Context(), img.target, []string{"release"})
		if !errors.Is(err, verifier.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable (HTTPS to a plain HTTP registry)", err)
		}
		if n := reg.Hits().Total(); n != 0 {
			t.Errorf("registry saw %d plain HTTP requests, want 0", n)
		}
	})

	t.Run("credentials from the transport", func(t *testing.T) {
		reg := registrytest.New(t, registrytest.WithBearerAuth("puller", "s3cret"))
		img := pushImage(t, reg, "team/app")
		if _, err := v.Signatures(t.Context(), img.target, []string{"release"}); !errors.Is(err, verifier.ErrUnavailable) {
			t.Fatalf("anonymous: err = %v, want ErrUnavailable", err)
		}
		img.target.Transport = basicAuth{user: "puller", pass: "s3cret", next: http.DefaultTransport}
		got, err := v.Signatures(t.Context(), img.target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		checkResults(t, got, map[string]policy.SignatureResult{"release": failed(verifier.ReasonNoSignatures)})
	})
}

// basicAuth adds basic credentials to requests that carry none, as a
// caller's authenticating transport would for the token endpoint.
type basicAuth struct {
	user, pass string
	next       http.RoundTripper
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.SetBasicAuth(b.user, b.pass)
	}
	return b.next.RoundTrip(r)
}
