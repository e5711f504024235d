package verifier

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"

	"github.com/portcullis/portcullis/policy"
)

// Attestations returns the in-toto attestations on the image that verify
// with at least one of the named roots, each with the roots (of those named)
// that verified it, in the order given. Both the classic .att tag (DSSE) and
// attestation bundles (referrers or the fallback tag) are read; a bundle with
// cosign's signature predicate type is a signature, not an attestation.
// Attestations that verify with no root are left out. The error is non-nil
// only when the evidence could not be read (ErrUnavailable) or a root is
// unknown.
func (v *Verifier) Attestations(ctx context.Context, t Target, roots []string) ([]policy.Attestation, error) {
	rs, err := v.lookup(roots)
	if err != nil {
		return nil, err
	}
	s, err := v.open(ctx, t)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, nil
	}
	atts, _, err := s.classic(v.attestationKind())
	if err != nil {
		return nil, err
	}
	bundles, _, err := s.bundles(v.attestationKind())
	if err != nil {
		return nil, err
	}

	var out []policy.Attestation
	for _, att := range atts {
		st, err := envelopeStatement(att)
		if err != nil {
			continue // not an in-toto DSSE envelope: nothing to report
		}
		var signedBy []string
		for _, r := range rs {
			if _, err := cosign.VerifyBlobAttestation(ctx, att, s.hash, r.attestations); err == nil {
				signedBy = append(signedBy, r.name)
			}
		}
		if len(signedBy) > 0 {
			out = append(out, attestation(st, signedBy))
		}
	}
	for _, b := range bundles {
		if b.statement.PredicateType == cosignSignPredicate {
			continue
		}
		var signedBy []string
		for _, r := range rs {
			if err := verifyBundle(ctx, r.attestations, b, s.hash); err == nil {
				signedBy = append(signedBy, r.name)
			}
		}
		if len(signedBy) > 0 {
			out = append(out, attestation(b.statement, signedBy))
		}
	}
	return out, nil
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
