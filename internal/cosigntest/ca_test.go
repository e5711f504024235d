package cosigntest_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/portcullis/portcullis/internal/cosigntest"
)

func TestCA(t *testing.T) {
	ca := cosigntest.TestCA(t)
	tests := []struct {
		name, subject, issuer string
	}{
		{name: "email", subject: "dev@acme.example", issuer: "https://accounts.google.com"},
		{name: "uri", subject: "https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main", issuer: "https://token.actions.githubusercontent.com"},
	}
	tr, err := root.NewTrustedRootFromJSON(ca.TrustedRoot(t))
	if err != nil {
		t.Fatalf("trusted root: %v", err)
	}
	if n := len(tr.FulcioCertificateAuthorities()); n != 1 {
		t.Fatalf("trusted root has %d certificate authorities, want 1", n)
	}
	if _, err := os.Stat(ca.TrustedRootPath()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf := ca.Leaf(t, tt.subject, tt.issuer)
			raw, err := os.ReadFile(leaf.CertPath)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(raw)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.FulcioCertificateAuthorities()[0].Verify(cert, cert.NotBefore); err != nil {
				t.Errorf("leaf does not chain to the trusted root: %v", err)
			}
			ce := cosign.CertExtensions{Cert: cert}
			if got := ce.GetIssuer(); got != tt.issuer {
				t.Errorf("issuer extension = %q, want %q", got, tt.issuer)
			}
			sans := append(cert.EmailAddresses, func() []string {
				var s []string
				for _, u := range cert.URIs {
					s = append(s, u.String())
				}
				return s
			}()...)
			if len(sans) != 1 || sans[0] != tt.subject {
				t.Errorf("SANs = %q, want [%q]", sans, tt.subject)
			}
		})
	}
}
