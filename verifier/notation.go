package verifier

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/notaryproject/notation-core-go/revocation"
	revocationresult "github.com/notaryproject/notation-core-go/revocation/result"
	"github.com/notaryproject/notation-core-go/signature"
	_ "github.com/notaryproject/notation-core-go/signature/cose" // registers the COSE envelope
	_ "github.com/notaryproject/notation-core-go/signature/jws"  // registers the JWS envelope
	"github.com/notaryproject/notation-go"
	notationverifier "github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/policy"
)

const (
	// FormatNotation is the policy.SignatureResult.Format of a verified
	// Notation signature (a referrer, through the API or the fallback tag).
	FormatNotation = "notation"
	// ReasonNoNotationSignatures is the Reason for a Notation root when the
	// image has no Notation signature.
	ReasonNoNotationSignatures = "no Notation signatures found"

	// notationArtifactType is the artifactType (and config media type) of a
	// Notation signature manifest.
	notationArtifactType = "application/vnd.cncf.notary.signature"
	// notationPayloadType is the payload content type of a Notation envelope.
	notationPayloadType = "application/vnd.cncf.notary.payload.v1+json"
)

// parseNotation builds the notation-go verifier of one Notation root: a trust
// policy of its own (any registry scope, strict level with revocation
// skipped, so nothing is fetched), and an in-memory trust store holding the
// root's certificates under its name.
func parseNotation(name string, n *policy.Notation) (notation.Verifier, error) {
	store := memTrustStore{}
	var stores []string
	for _, s := range []struct {
		typ truststore.Type
		pem []byte
	}{{truststore.TypeCA, n.CAPEM}, {truststore.TypeSigningAuthority, n.SigningAuthorityPEM}, {truststore.TypeTSA, n.TSAPEM}} {
		if len(s.pem) == 0 {
			continue
		}
		certs, err := parseCertificates(s.pem)
		if err != nil {
			return nil, fmt.Errorf("notation %s trust store: %w", s.typ, err)
		}
		store[s.typ] = certs
		stores = append(stores, string(s.typ)+":"+name)
	}
	if store[truststore.TypeCA] == nil && store[truststore.TypeSigningAuthority] == nil {
		return nil, errors.New("notation root has no ca or signingAuthority certificates")
	}
	doc := &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:           name,
			RegistryScopes: []string{"*"},
			SignatureVerification: trustpolicy.SignatureVerification{
				VerificationLevel: trustpolicy.LevelStrict.Name,
				// Offline: an OCSP or CRL fetch would make a decision depend
				// on a third party's uptime; revocation is not configured.
				Override: map[trustpolicy.ValidationType]trustpolicy.ValidationAction{
					trustpolicy.TypeRevocation: trustpolicy.ActionSkip,
				},
				// With a tsa store, every signature carries a timestamp
				// from a trusted TSA (notation-go's default, made
				// explicit). Without one, notation-go does not look at a
				// timestamp and the certificate must be valid now: an
				// unverifiable timestamp never extends a certificate.
				VerifyTimestamp: trustpolicy.OptionAlways,
			},
			TrustStores:       stores,
			TrustedIdentities: n.Identities,
		}},
	}
	// notation-go checks the timestamping chain's revocation whatever the
	// level says, and an unknown status (a CRL or OCSP responder that cannot
	// be reached, as offline) fails the timestamp; public TSAs' certificates
	// all name one. Offline, revocation is not checked for either chain.
	v, err := notationverifier.NewWithOptions(doc, store, nil, notationverifier.VerifierOptions{
		RevocationCodeSigningValidator:  unchecked{},
		RevocationTimestampingValidator: unchecked{},
	})
	if err != nil {
		return nil, fmt.Errorf("notation: %w", err)
	}
	return v, nil
}

// parseCertificates parses PEM certificates; anything else is an error.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificates")
	}
	return certs, nil
}

// memTrustStore is a notation trust store held in memory: one named store
// per type, the root's (the name is the root's, checked by the trust policy).
type memTrustStore map[truststore.Type][]*x509.Certificate

var _ truststore.X509TrustStore = memTrustStore(nil)

func (m memTrustStore) GetCertificates(_ context.Context, t truststore.Type, _ string) ([]*x509.Certificate, error) {
	return m[t], nil
}

// unchecked is the revocation validator of an offline verifier: it fetches
// nothing and reports each certificate as one it cannot check (notation-go's
// "non-revokable", which it does not count against a signature), as when a
// certificate names no CRL or OCSP responder.
type unchecked struct{}

func (unchecked) ValidateContext(_ context.Context, opts revocation.ValidateContextOptions) ([]*revocationresult.CertRevocationResult, error) {
	res := make([]*revocationresult.CertRevocationResult, len(opts.CertChain))
	for i := range res {
		res[i] = &revocationresult.CertRevocationResult{Result: revocationresult.ResultNonRevokable}
	}
	return res, nil
}

// notationEnvelope is one Notation signature attached to the image.
type notationEnvelope struct {
	manifest  string // the signature manifest's digest, for reasons
	mediaType string // application/jose+json or application/cose
	blob      []byte
}

// notationSignatures reads the Notation signatures among the image's
// referrers (the API or the fallback tag, listed once for the session), at
// most maxReferrers of them, each envelope bounded by k and read through the
// session's Source, drawing on b. Signatures that break a bound or are
// malformed are returned as invalid; a registry failure is an error.
func (s *session) notationSignatures(k evidenceKind, b *budget) (found []notationEnvelope, invalid []error, err error) {
	isNotation := func(desc ocispec.Descriptor) bool { return desc.ArtifactType == notationArtifactType }
	return readReferrers(s, b, isNotation, "Notation signatures", func(desc ocispec.Descriptor) (notationEnvelope, error) {
		return s.notationEnvelope(desc, k, b)
	})
}

// notationEnvelope fetches the envelope in the signature manifest desc: one
// layer of an envelope media type, checked against k's bound and taken from
// b before it is read.
func (s *session) notationEnvelope(desc ocispec.Descriptor, k evidenceKind, b *budget) (notationEnvelope, error) {
	what := "Notation signature " + desc.Digest.String()
	c, err := s.referrerManifest(desc, what, b)
	if err != nil {
		return notationEnvelope{}, err
	}
	if c.IsIndex() || len(c.Layers) != 1 {
		return notationEnvelope{}, fmt.Errorf("%s: want one envelope layer, got %d", what, len(c.Layers))
	}
	layer := c.Layers[0]
	if !isNotationEnvelope(layer.MediaType) {
		return notationEnvelope{}, fmt.Errorf("%s: layer media type %q is not a Notation envelope", what, layer.MediaType)
	}
	if err := checkLayer(what, layer, k); err != nil {
		return notationEnvelope{}, err
	}
	if err := b.take(layer.Size, fmt.Sprintf("%s layer %s is %d bytes", what, layer.Digest, layer.Size)); err != nil {
		return notationEnvelope{}, err
	}
	raw, err := s.layer(what, layer)
	if err != nil {
		return notationEnvelope{}, err
	}
	return notationEnvelope{manifest: desc.Digest.String(), mediaType: layer.MediaType, blob: raw}, nil
}

func isNotationEnvelope(mt string) bool {
	return mt == "application/jose+json" || mt == "application/cose"
}

// verifyNotation reports whether any of envs verifies with the Notation root
// r as a signature of this image, and otherwise the reason to give.
func (s *session) verifyNotation(r *trustRoot, envs []notationEnvelope, invalid []error) policy.SignatureResult {
	if len(envs)+len(invalid) == 0 {
		return policy.SignatureResult{Reason: ReasonNoNotationSignatures}
	}
	var reasons []string
	for _, env := range envs {
		why := s.verifyEnvelope(r, env)
		if why == "" {
			return policy.SignatureResult{Verified: true, Format: FormatNotation}
		}
		reasons = append(reasons, why)
	}
	if len(reasons) > 0 {
		return policy.SignatureResult{Reason: reasons[0]}
	}
	return policy.SignatureResult{Reason: fmt.Sprintf("no signature verifies with %s: invalid signature: %s", r.describe(), short(invalid[0]))}
}

// verifyEnvelope checks one envelope with notation-go and returns "" when it
// verifies and signs this image, or why not. notation-go compares the
// payload's target descriptor with the one it is given; the image's media
// type and size are not known here, so the payload's own descriptor is given
// once its digest, which covers both, is checked to be the image's.
func (s *session) verifyEnvelope(r *trustRoot, env notationEnvelope) string {
	prefix := fmt.Sprintf("Notation signature %s does not verify with %s: ", env.manifest, r.describe())
	target, err := notationTarget(env)
	if err != nil {
		return prefix + "tampered or malformed envelope: " + short(err)
	}
	outcome, err := r.notation.Verify(s.ctx, target, env.blob, notation.VerifierVerifyOptions{
		ArtifactReference:  s.ref,
		SignatureMediaType: env.mediaType,
	})
	if err == nil {
		if target.Digest.String() != s.hash.String() {
			return prefix + fmt.Sprintf("it signs %s, not this image", target.Digest)
		}
		return ""
	}
	return prefix + notationFailure(outcome, err)
}

// notationTarget returns the target descriptor an envelope's payload claims,
// unverified (Verify checks it).
func notationTarget(env notationEnvelope) (ocispec.Descriptor, error) {
	e, err := signature.ParseEnvelope(env.mediaType, env.blob)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	content, err := e.Content()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if content.Payload.ContentType != notationPayloadType {
		return ocispec.Descriptor{}, fmt.Errorf("payload content type %q", content.Payload.ContentType)
	}
	var p struct {
		TargetArtifact ocispec.Descriptor `json:"targetArtifact"`
	}
	if err := json.Unmarshal(content.Payload.Content, &p); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("payload: %w", err)
	}
	if err := p.TargetArtifact.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("payload target: %w", err)
	}
	return p.TargetArtifact, nil
}

// notationFailure names the check that failed, so that each cause reads
// differently: the envelope's integrity, the chain's trust, the identity,
// the certificate's or the signature's validity period.
func notationFailure(outcome *notation.VerificationOutcome, err error) string {
	if outcome != nil {
		for _, res := range outcome.VerificationResults {
			if res == nil || res.Error == nil {
				continue
			}
			msg := short(res.Error)
			switch res.Type {
			case trustpolicy.TypeIntegrity:
				return "tampered or malformed envelope: " + msg
			case trustpolicy.TypeAuthenticity:
				var ae *signature.SignatureAuthenticityError
				if errors.As(res.Error, &ae) {
					return "certificate chain is not signed by a trusted certificate authority"
				}
				if strings.Contains(msg, "trusted identit") {
					return "signing identity " + signerSubject(outcome) + " is not a trusted identity"
				}
				return "authenticity: " + msg
			case trustpolicy.TypeExpiry:
				return "signature expired: " + msg
			case trustpolicy.TypeAuthenticTimestamp:
				return timestampFailure(msg)
			}
			return string(res.Type) + ": " + msg
		}
	}
	return short(err)
}

// timestampFailure tells notation-go's authentic-timestamp failures apart
// (its errors are plain strings): the certificate not valid now (no tsa
// store) or at the timestamp, no timestamp where the root's tsa store wants
// one, or a timestamp that does not verify with the root's TSAs.
func timestampFailure(msg string) string {
	switch {
	case strings.Contains(msg, "verification time is"):
		return "certificate expired or not yet valid: " + msg
	case strings.Contains(msg, "timestamp can be"):
		return "certificate expired or not yet valid at the timestamp: " + msg
	case strings.Contains(msg, "no timestamp countersignature"):
		return "no timestamp countersignature, which the root's tsa store requires"
	case strings.Contains(msg, "failed to verify the timestamp countersignature"):
		return "timestamp countersignature is not signed by a trusted timestamp authority: " + msg
	}
	return "timestamp countersignature: " + msg
}

// signerSubject is the signing certificate's subject, for reasons.
func signerSubject(outcome *notation.VerificationOutcome) string {
	if outcome.EnvelopeContent == nil || len(outcome.EnvelopeContent.SignerInfo.CertificateChain) == 0 {
		return "(none)"
	}
	return `"` + outcome.EnvelopeContent.SignerInfo.CertificateChain[0].Subject.String() + `"`
}

// notationRoots splits rs into the cosign roots and the Notation roots.
func notationRoots(rs []*trustRoot) (cosignRoots, notationRoots []*trustRoot) {
	for _, r := range rs {
		if r.notation != nil {
			notationRoots = append(notationRoots, r)
		} else {
			cosignRoots = append(cosignRoots, r)
		}
	}
	return cosignRoots, notationRoots
}
