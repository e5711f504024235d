package verifier

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"

	"github.com/portcullis/portcullis/policy"
)

// AttestationResult is what Attestations found on one image.
type AttestationResult struct {
	// Verified lists the attestations that verified with at least one of the
	// named roots.
	Verified []policy.Attestation
	// Invalid says why each piece of attestation evidence that was refused
	// counts for nothing: it broke a bound or the evidence budget, was
	// malformed, or did not match its descriptor, e.g. "attestation artifact
	// sha256-<hex>.att layer sha256:<hex> is 33554432 bytes, more than 16 MiB".
	// What it held is unknown, so it may have been any attestation the policy
	// finds missing. Evidence that is well formed but does not verify is not
	// here.
	Invalid []string
}

// Attestations returns the in-toto attestations on the image that verify
// with at least one of the named roots, each with the roots (of those named)
// that verified it, in the order given, and the reasons evidence was refused
// as invalid. Both the classic .att tag (DSSE) and attestation bundles
// (referrers or the fallback tag) are read; a bundle with cosign's signature
// predicate type is a signature, not an attestation. Attestations that verify
// with no root are left out. The error is non-nil only when the evidence
// could not be read (ErrUnavailable) or a root is unknown. It is Verify asking
// for attestations only.
func (v *Verifier) Attestations(ctx context.Context, t Target, roots []string) (AttestationResult, error) {
	f, err := v.Verify(ctx, t, Query{Attestations: roots})
	return f.Attestations, err
}

// attestations is the attestations part of a Verify: the classic tag, then
// the bundles.
func (v *Verifier) attestations(s *session, rs []*trustRoot) (AttestationResult, error) {
	k, b := v.attestationKind(), newBudget("attestations", v.budget)
	rs, _ = notationRoots(rs) // Notation signs images, not in-toto attestations
	if len(rs) == 0 {
		return AttestationResult{}, nil
	}
	atts, invalid, err := s.classic(k, b)
	if err != nil {
		return AttestationResult{}, err
	}
	var out []policy.Attestation
	for _, att := range atts {
		st, err := envelopeStatement(att)
		if err != nil {
			// Not an in-toto DSSE envelope: it cannot be any attestation.
			d, _ := att.Digest()
			invalid = append(invalid, fmt.Errorf("attestation artifact %s layer %s: %w", s.tag("att"), d, err))
			continue
		}
		var signedBy []string
		for _, r := range rs {
			if _, err := cosign.VerifyBlobAttestation(s.ctx, att, s.hash, r.attestations); err == nil {
				signedBy = append(signedBy, r.name)
			}
		}
		if len(signedBy) > 0 {
			out = append(out, attestation(st, signedBy))
		}
	}

	bundles, binvalid, err := s.bundles(k, b)
	if err != nil {
		return AttestationResult{}, err
	}
	invalid = append(invalid, binvalid...)
	for _, b := range bundles {
		if b.statement.PredicateType == cosignSignPredicate {
			continue
		}
		var signedBy []string
		for _, r := range rs {
			if err := verifyBundle(s.ctx, r.attestations, b, s.hash); err == nil {
				signedBy = append(signedBy, r.name)
			}
		}
		if len(signedBy) > 0 {
			out = append(out, attestation(b.statement, signedBy))
		}
	}
	res := AttestationResult{Verified: out}
	for _, err := range invalid {
		// Layers of one artifact may all name one blob: say it once.
		if r := short(err); !slices.Contains(res.Invalid, r) {
			res.Invalid = append(res.Invalid, r)
		}
	}
	return res, nil
}

// attestation is the policy fact for a verified statement.
func attestation(st statement, signedBy []string) policy.Attestation {
	return policy.Attestation{
		PredicateType: st.PredicateType,
		SignedBy:      signedBy,
		Predicate:     st.Predicate,
	}
}

// envelopeStatement returns the in-toto statement inside a classic
// attestation layer, whose payload is a DSSE envelope (JSON, base64 payload).
func envelopeStatement(att oci.Signature) (statement, error) {
	raw, err := att.Payload()
	if err != nil {
		return statement{}, err
	}
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return statement{}, fmt.Errorf("DSSE envelope: %w", err)
	}
	if env.PayloadType != intotoPayloadType {
		return statement{}, errors.New("DSSE payload is not an in-toto statement")
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return statement{}, fmt.Errorf("DSSE payload: %w", err)
	}
	return parseStatement(payload)
}
