package verifier

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/notaryproject/notation-go"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/portcullis/portcullis/policy"
)

// trustRoot is a policy.TrustRoot parsed once: the key or the trusted root
// and identity, and the cosign check options built from them.
type trustRoot struct {
	name     string
	keyless  bool
	identity cosign.Identity // keyless only
	issuerRE *regexp.Regexp  // keyless only, nil for an exact issuer
	subjRE   *regexp.Regexp  // keyless only, nil for an exact subject

	// notation verifies Notation signatures; set for Notation roots only,
	// which have no cosign check options.
	notation notation.Verifier

	// signatures checks classic signature tags and signature bundles;
	// attestations checks classic attestation tags and attestation bundles.
	// They differ only in the claim verifier.
	signatures, attestations *cosign.CheckOpts
}

// parseRoot turns a policy root into a trustRoot, or says what is wrong with
// its material.
func parseRoot(name string, tr policy.TrustRoot) (*trustRoot, error) {
	r := &trustRoot{name: name}
	if tr.Notation != nil {
		nv, err := parseNotation(name, tr.Notation)
		if err != nil {
			return nil, err
		}
		r.notation = nv
		return r, nil
	}
	co := &cosign.CheckOpts{
		IgnoreTlog: tr.IgnoreTlog,
		IgnoreSCT:  tr.IgnoreSCT,
		// Never look anything up online: a signature without its proof fails.
		Offline:    true,
		MaxWorkers: 1,
	}
	var material root.TrustedMaterial
	if tr.Keyless != nil && len(tr.Keyless.TrustedRootJSON) > 0 {
		trusted, err := root.NewTrustedRootFromJSON(tr.Keyless.TrustedRootJSON)
		if err != nil {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
		material = trusted
	}

	switch {
	case len(tr.KeyPEM) > 0:
		v, err := loadKey(tr.KeyPEM)
		if err != nil {
			return nil, err
		}
		co.SigVerifier = v
		co.IgnoreSCT = true // no certificate, no SCT
		if material == nil {
			if !tr.IgnoreTlog {
				return nil, errors.New("a transparency log proof is required but there is no trusted root to check it against")
			}
			// pkg/cosign wants trusted material even for a bare key (bundles
			// are verified by sigstore-go); an empty root vouches for nothing.
			material, _ = root.NewTrustedRoot(root.TrustedRootMediaType01, nil, nil, nil, nil)
		}
	case tr.Keyless != nil:
		if material == nil {
			return nil, errors.New("keyless root has no trusted root")
		}
		if len(material.FulcioCertificateAuthorities()) == 0 {
			return nil, errors.New("trusted root has no certificate authority")
		}
		k := tr.Keyless
		if (k.Issuer == "") == (k.IssuerRegExp == "") {
			return nil, errors.New("keyless root needs exactly one of issuer and issuerRegExp")
		}
		if (k.Subject == "") == (k.SubjectRegExp == "") {
			return nil, errors.New("keyless root needs exactly one of subject and subjectRegExp")
		}
		var err error
		if r.issuerRE, err = compileOptional(k.IssuerRegExp); err != nil {
			return nil, fmt.Errorf("issuerRegExp: %w", err)
		}
		if r.subjRE, err = compileOptional(k.SubjectRegExp); err != nil {
			return nil, fmt.Errorf("subjectRegExp: %w", err)
		}
		r.keyless = true
		r.identity = cosign.Identity{
			Issuer: k.Issuer, IssuerRegExp: k.IssuerRegExp,
			Subject: k.Subject, SubjectRegExp: k.SubjectRegExp,
		}
		co.Identities = []cosign.Identity{r.identity}
	default:
		return nil, errors.New("neither a key nor a keyless identity")
	}
	co.TrustedMaterial = material

	sigs, atts := *co, *co
	// The claim verifiers tie the signed payload to this image digest, so a
	// signature copied from another image does not count.
	sigs.ClaimVerifier = cosign.SimpleClaimVerifier
	atts.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
	r.signatures, r.attestations = &sigs, &atts
	return r, nil
}

// loadKey parses a PEM public key (PKIX or PKCS#1): ECDSA, RSA PKCS#1 v1.5
// or Ed25519. cosign signs with the key's default algorithm (SHA-384 for
// P-384, SHA-512 for P-521, Ed25519ph for Ed25519) while `cosign verify --key`
// assumes SHA-256 and pure Ed25519; a signature made either way verifies.
func loadKey(pemBytes []byte) (signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	def, err := signature.LoadDefaultVerifier(pub, options.WithED25519ph())
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	sha256, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return sha256, nil // the default is SHA-256 already
		}
	case *rsa.PublicKey:
		return sha256, nil
	}
	return eitherVerifier{def, sha256}, nil
}

// eitherVerifier accepts a signature that any of its verifiers (all for one
// public key) accepts.
type eitherVerifier []signature.Verifier

func (e eitherVerifier) PublicKey(opts ...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return e[0].PublicKey(opts...)
}

func (e eitherVerifier) VerifySignature(sig, msg io.Reader, opts ...signature.VerifyOption) error {
	s, err := io.ReadAll(sig)
	if err != nil {
		return err
	}
	var m []byte
	if msg != nil {
		if m, err = io.ReadAll(msg); err != nil {
			return err
		}
	}
	var first error
	for _, v := range e {
		var r io.Reader
		if msg != nil {
			r = bytes.NewReader(m)
		}
		err := v.VerifySignature(bytes.NewReader(s), r, opts...)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func compileOptional(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	return regexp.Compile(expr)
}

// describe names the root in reasons: "key release", "keyless root github-ci"
// or "notation root acme".
func (r *trustRoot) describe() string {
	if r.notation != nil {
		return "notation root " + r.name
	}
	if r.keyless {
		return "keyless root " + r.name
	}
	return "key " + r.name
}

// identityMismatch returns why cert's identity is not the root's, or "" when
// it matches (or the root is a key). It mirrors cosign's CheckCertificatePolicy
// to give a readable reason; cosign's own check is what decides.
func (r *trustRoot) identityMismatch(cert *x509.Certificate) string {
	if !r.keyless || cert == nil {
		return ""
	}
	ce := cosign.CertExtensions{Cert: cert}
	issuer := ce.GetIssuer()
	sans := cryptoutils.GetSubjectAlternateNames(cert)
	issuerOK := match(issuer, r.identity.Issuer, r.issuerRE)
	subjectOK := false
	for _, san := range sans {
		if match(san, r.identity.Subject, r.subjRE) {
			subjectOK = true
			break
		}
	}
	if issuerOK && subjectOK {
		return ""
	}
	return fmt.Sprintf("certificate identity %s (issuer %s) does not match %s (want %s)",
		strings.Join(sans, ", "), issuer, r.describe(), r.wantIdentity())
}

func (r *trustRoot) wantIdentity() string {
	subject, issuer := r.identity.Subject, r.identity.Issuer
	if r.subjRE != nil {
		subject = "~" + r.identity.SubjectRegExp
	}
	if r.issuerRE != nil {
		issuer = "~" + r.identity.IssuerRegExp
	}
	return fmt.Sprintf("subject %s, issuer %s", subject, issuer)
}

func match(s, exact string, re *regexp.Regexp) bool {
	if re != nil {
		return re.MatchString(s)
	}
	return s == exact
}
