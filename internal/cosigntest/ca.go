package cosigntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
)

// Fulcio's certificate extensions for the OIDC issuer: v1 holds the raw
// string, v2 a DER UTF8String (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md).
var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// CA is a Fulcio-like certificate authority made in the test: a self-signed
// ECDSA P-256 root that issues short-lived code-signing certificates carrying
// an identity (email or URI SAN) and an OIDC issuer extension.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	dir     string
}

// Leaf is a certificate issued by a CA and its key, as files for the cosign
// CLI.
type Leaf struct {
	CertPath  string // the leaf certificate, PEM
	ChainPath string // the CA certificate, PEM (the chain up to the root)
	KeyPath   string // the leaf's private key, cosign-encrypted with an empty password
	Subject   string // the SAN: an email address or a URI
	Issuer    string // the OIDC issuer extension
}

// TestCA returns a new certificate authority, valid from an hour ago for a
// day.
func TestCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("cosigntest: CA key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "cosigntest root", Organization: []string{"cosigntest"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("cosigntest: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("cosigntest: parse CA certificate: %v", err)
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		dir:     t.TempDir(),
	}
}

// Leaf issues a code-signing certificate for subject (an email address, or a
// URI such as https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main)
// with issuer in Fulcio's issuer extensions (1.3.6.1.4.1.57264.1.1 and .1.8),
// valid from a minute ago for an hour, and writes it, the chain and its key.
func (ca *CA) Leaf(t testing.TB, subject, issuer string) *Leaf {
	t.Helper()
	// cosign sign --key only reads cosign-encrypted keys; this makes one (and
	// its public key) in-process rather than round-tripping through the CLI.
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte{}, nil })
	if err != nil {
		t.Fatalf("cosigntest: leaf key: %v", err)
	}
	pub, err := parsePublicKeyPEM(keys.PublicBytes)
	if err != nil {
		t.Fatalf("cosigntest: leaf public key: %v", err)
	}
	issuerV2, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		t.Fatalf("cosigntest: issuer extension: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{
			{Id: oidIssuerV1, Value: []byte(issuer)},
			{Id: oidIssuerV2, Value: issuerV2},
		},
	}
	if strings.Contains(subject, "://") {
		u, err := url.Parse(subject)
		if err != nil {
			t.Fatalf("cosigntest: subject URI %q: %v", subject, err)
		}
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{subject}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatalf("cosigntest: leaf certificate: %v", err)
	}

	dir := t.TempDir()
	leaf := &Leaf{
		CertPath:  filepath.Join(dir, "leaf.pem"),
		ChainPath: filepath.Join(dir, "chain.pem"),
		KeyPath:   filepath.Join(dir, "leaf.key"),
		Subject:   subject,
		Issuer:    issuer,
	}
	writeFile(t, leaf.CertPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, leaf.ChainPath, ca.CertPEM)
	writeFile(t, leaf.KeyPath, keys.PrivateBytes)
	return leaf
}

// TrustedRoot returns a trusted_root.json (sigstore protobuf-specs
// TrustedRoot, media type ...trustedroot+json;version=0.1) that holds the CA
// as its only certificate authority and no transparency or CT logs, and
// writes it to TrustedRootPath.
func (ca *CA) TrustedRoot(t testing.TB) []byte {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{
			Root:                ca.Cert,
			ValidityPeriodStart: ca.Cert.NotBefore,
			URI:                 "https://fulcio.cosigntest.invalid",
		}}, nil, nil, nil)
	if err != nil {
		t.Fatalf("cosigntest: trusted root: %v", err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatalf("cosigntest: marshal trusted root: %v", err)
	}
	writeFile(t, ca.TrustedRootPath(), b)
	return b
}

// TrustedRootPath is where TrustedRoot writes trusted_root.json.
func (ca *CA) TrustedRootPath() string {
	return filepath.Join(ca.dir, "trusted_root.json")
}

// emptyTrustedRoot writes a trusted root with nothing in it, for key-signed
// bundles: it keeps cosign from fetching the public-good root from TUF.
func emptyTrustedRoot(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trusted_root.json")
	writeFile(t, path, []byte(`{"mediaType":"`+root.TrustedRootMediaType01+`"}`))
	return path
}

func parsePublicKeyPEM(b []byte) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, os.ErrInvalid
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("cosigntest: serial: %v", err)
	}
	return n
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("cosigntest: %v", err)
	}
}
