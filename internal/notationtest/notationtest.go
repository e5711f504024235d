package notationtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/notaryproject/tspclient-go"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// Envelope media types, the values of SignatureMediaType.
const (
	JWS  = "application/jose+json"
	COSE = "application/cose"
)

// CA is a self-signed root certificate authority (ECDSA P-256) for Notation's "ca" trust
// store.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// Leaf is a code-signing certificate issued by a CA, with its key and the chain a Notation
// signature carries (leaf first, root last).
type Leaf struct {
	Cert  *x509.Certificate
	Key   *ecdsa.PrivateKey
	Chain []*x509.Certificate
}

// NewCA returns a root CA named cn, valid from an hour ago for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Test"}, CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("notationtest: CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf issues a code-signing certificate for subject, valid from notBefore to notAfter (both
// zero: from an hour ago for a day).
func (ca *CA) Leaf(t testing.TB, subject pkix.Name, notBefore, notAfter time.Time) *Leaf {
	t.Helper()
	if notBefore.IsZero() && notAfter.IsZero() {
		notBefore, notAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("notationtest: leaf: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{cert, ca.Cert}}
}

// Subject is the subject of the test leaves, as Notation's trusted identities name it:
// "x509.subject: C=US, ST=WA, O=Acme, CN=<cn>".
func Subject(cn string) pkix.Name {
	return pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"Acme"}, CommonName: cn}
}

// Repo opens host/repo on a plain-HTTP test registry the way `notation sign` does. With
// referrers false it never uses the referrers API and keeps the referrers fallback tag
// (sha256-<hex>) up to date, as on registries without the API.
func Repo(t testing.TB, host, repo string, referrers bool) registry.Repository {
	t.Helper()
	r, err := remote.NewRepository(host + "/" + repo)
	if err != nil {
		t.Fatalf("notationtest: repository: %v", err)
	}
	r.PlainHTTP = true
	if !referrers {
		if err := r.SetReferrersCapability(false); err != nil {
			t.Fatal(err)
		}
	}
	return registry.NewRepository(r)
}

// Sign signs the manifest d in repo with leaf, as `notation sign --signature-format`
// mediaType does, and pushes the signature as a referrer of d.
func Sign(t testing.TB, repo registry.Repository, leaf *Leaf, d digest.Digest, mediaType string) {
	t.Helper()
	if err := TrySign(repo, leaf, d, mediaType); err != nil {
		t.Fatalf("notationtest: %v", err)
	}
}

// TrySign is Sign returning its error: notation-go refuses to sign with a certificate that is
// not valid at signing time.
func TrySign(repo registry.Repository, leaf *Leaf, d digest.Digest, mediaType string) error {
	return TrySignTimestamped(repo, leaf, d, mediaType, nil)
}

// SignTimestamped is Sign with an RFC 3161 timestamp countersignature from tsa, as `notation
// sign --timestamp-url <tsa.URL> --timestamp-root-cert <tsa root>` makes it.
func SignTimestamped(t testing.TB, repo registry.Repository, leaf *Leaf, d digest.Digest, mediaType string, tsa *TSA) {
	t.Helper()
	if err := TrySignTimestamped(repo, leaf, d, mediaType, tsa); err != nil {
		t.Fatalf("notationtest: %v", err)
	}
}

// TrySignTimestamped is SignTimestamped returning its error; a nil tsa signs without a
// timestamp.
func TrySignTimestamped(repo registry.Repository, leaf *Leaf, d digest.Digest, mediaType string, tsa *TSA) error {
	s, err := signer.NewGenericSigner(leaf.Key, leaf.Chain)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	opts := notation.SignerSignOptions{SignatureMediaType: mediaType}
	if tsa != nil {
		if opts.Timestamper, err = tspclient.NewHTTPTimestamper(nil, tsa.URL); err != nil {
			return fmt.Errorf("timestamper: %w", err)
		}
		opts.TSARootCAs = tsa.RootPool()
	}
	if _, err := notation.Sign(context.Background(), s, repo, notation.SignOptions{
		SignerSignOptions: opts,
		ArtifactReference: d.String(),
	}); err != nil {
		return fmt.Errorf("sign %s: %w", d, err)
	}
	return nil
}

// SignExpiring signs d with a new leaf of ca for subject that expires moments after it signs,
// and returns the leaf: a signature whose certificate has expired once the caller waits past
// leaf.Cert.NotAfter. The validity window starts at 2s and doubles while a loaded machine
// makes the signing miss it.
func (ca *CA) SignExpiring(t testing.TB, repo registry.Repository, subject pkix.Name, d digest.Digest, mediaType string) *Leaf {
	t.Helper()
	return ca.SignExpiringTimestamped(t, repo, subject, d, mediaType, nil)
}

// SignExpiringTimestamped is SignExpiring with a timestamp countersignature from tsa (none
// when nil), made while the leaf was valid: the window also doubles while the token's time,
// give or take its accuracy, falls outside it (the signature of such a try stays attached to d,
// beside the one returned for).
func (ca *CA) SignExpiringTimestamped(t testing.TB, repo registry.Repository, subject pkix.Name, d digest.Digest, mediaType string, tsa *TSA) *Leaf {
	t.Helper()
	for window := 2 * time.Second; ; window *= 2 {
		leaf := ca.Leaf(t, subject, time.Now().Add(-time.Hour), time.Now().Add(window))
		err := TrySignTimestamped(repo, leaf, d, mediaType, tsa)
		if err == nil && (tsa == nil || !tsa.Last().Add(TSAAccuracy).After(leaf.Cert.NotAfter)) {
			return leaf
		}
		if window > time.Minute {
			t.Fatalf("notationtest: signing within %s: %v", window, err)
		}
	}
}

// Envelope signs target (the descriptor of another manifest, or one made up) with leaf and
// returns the envelope, for tests that push what `notation sign` would not.
func Envelope(t testing.TB, leaf *Leaf, target ocispec.Descriptor, mediaType string) []byte {
	t.Helper()
	s, err := signer.NewGenericSigner(leaf.Key, leaf.Chain)
	if err != nil {
		t.Fatal(err)
	}
	env, _, err := s.Sign(context.Background(), target, notation.SignerSignOptions{SignatureMediaType: mediaType})
	if err != nil {
		t.Fatalf("notationtest: sign: %v", err)
	}
	return env
}

// Push pushes env as a Notation signature whose subject is the manifest subject.
func Push(t testing.TB, repo registry.Repository, mediaType string, env []byte, subject ocispec.Descriptor) {
	t.Helper()
	if _, _, err := repo.PushSignature(context.Background(), mediaType, env, subject, nil); err != nil {
		t.Fatalf("notationtest: push signature: %v", err)
	}
}

// Resolve returns the descriptor of reference (a tag or digest) in repo.
func Resolve(t testing.TB, repo registry.Repository, reference string) ocispec.Descriptor {
	t.Helper()
	d, err := repo.Resolve(context.Background(), reference)
	if err != nil {
		t.Fatalf("notationtest: resolve %s: %v", reference, err)
	}
	return d
}

// Tamper returns a JWS envelope whose signature value has one bit flipped: well formed, but
// its integrity check fails.
func Tamper(t testing.TB, jws []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(jws, &m); err != nil {
		t.Fatalf("notationtest: tamper: %v", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(m["signature"].(string))
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)/2] ^= 1
	m["signature"] = base64.RawURLEncoding.EncodeToString(sig)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// Verify runs `notation verify` on reference (host/repo@digest) as a client does, through repo:
// it lists the signatures as referrers, fetches them, and verifies one with notation-go against
// ca and identities, offline. It returns notation-go's error.
func Verify(ctx context.Context, repo registry.Repository, ca *CA, reference string, identities ...string) error {
	doc := &trustpolicy.Document{Version: "1.0", TrustPolicies: []trustpolicy.TrustPolicy{{
		Name: "test", RegistryScopes: []string{"*"},
		SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: trustpolicy.LevelStrict.Name,
			Override: map[trustpolicy.ValidationType]trustpolicy.ValidationAction{trustpolicy.TypeRevocation: trustpolicy.ActionSkip}},
		TrustStores: []string{"ca:test"}, TrustedIdentities: identities,
	}}}
	v, err := verifier.New(doc, caStore{ca.Cert}, nil)
	if err != nil {
		return err
	}
	_, _, err = notation.Verify(ctx, v, repo, notation.VerifyOptions{ArtifactReference: reference, MaxSignatureAttempts: 10})
	return err
}

// caStore is a trust store of one CA certificate.
type caStore []*x509.Certificate

func (s caStore) GetCertificates(context.Context, truststore.Type, string) ([]*x509.Certificate, error) {
	return s, nil
}
