package verifier

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/portcullis/portcullis/policy"
)

// Signature formats reported in policy.SignatureResult.Format.
const (
	FormatCosignTag = "cosign-tag" // sha256-<hex>.sig
	FormatBundle    = "bundle"     // sigstore bundle referrer
)

// ReasonNoSignatures is the Reason when the image has no signature at all.
const ReasonNoSignatures = "no signatures found"

// maxReasonLen caps the error text quoted in a reason: room for a reason of
// the verifier's own, which may name an artifact and a layer by digest.
const maxReasonLen = 300

// Signatures checks the image's cosign signatures, classic (.sig tag) and
// bundles (referrers or the fallback tag), against each named cosign root,
// and its Notation signatures (referrers or the fallback tag, JWS or COSE)
// against each named Notation root, and
// returns one result per root: Verified, and otherwise a Reason such as
// "no signatures found", "no signature verifies with key release: ..." or
// "certificate identity ... does not match keyless root ci ...". Evidence
// that breaks a bound or is malformed counts for nothing, and is what the
// Reason quotes when nothing else failed ("no signature verifies with key
// release: invalid signature: signature artifact sha256-<hex>.sig has 64
// layers, more than 32"); a signature in the other format may still verify.
// Combining roots (anyOf, allOf) is the policy's business. The error is
// non-nil only when the evidence could not be read (ErrUnavailable) or a root
// is unknown. It is Verify asking for signatures only.
func (v *Verifier) Signatures(ctx context.Context, t Target, roots []string) (map[string]policy.SignatureResult, error) {
	f, err := v.Verify(ctx, t, Query{Signatures: roots})
	return f.Signatures, err
}

// signatures is the signatures part of a Verify: the classic tag first, and
// only if some root is not satisfied by it the bundles, whose listing the
// session started already.
func (v *Verifier) signatures(s *session, rs []*trustRoot) (map[string]policy.SignatureResult, error) {
	k, b := v.signatureKind(), newBudget("signatures", v.budget)
	out := make(map[string]policy.SignatureResult, len(rs))
	rs, nrs := notationRoots(rs)
	if len(nrs) > 0 {
		// Notation signatures are referrers too: read from the same listing,
		// through the same Source and memo, drawing on the same budget.
		envs, invalid, err := s.notationSignatures(k, b)
		if err != nil {
			return nil, err
		}
		for _, r := range nrs {
			out[r.name] = s.verifyNotation(r, envs, invalid)
		}
	}
	if len(rs) == 0 {
		return out, nil
	}
	sigs, invalid, err := s.classic(k, b)
	if err != nil {
		return nil, err
	}
	failures := make(map[string][]failure, len(rs))
	pending := 0
	for _, r := range rs {
		if ok, fails := verifyClassic(s.ctx, r.signatures, sigs, s.hash); ok {
			out[r.name] = policy.SignatureResult{Verified: true, Format: FormatCosignTag}
		} else {
			failures[r.name] = fails
			pending++
		}
	}
	if pending == 0 {
		return out, nil
	}

	// Only now read bundles: most images carry one format, and a root
	// already satisfied needs no more requests.
	bundles, binvalid, err := s.bundles(k, b)
	if err != nil {
		return nil, err
	}
	invalid = append(invalid, binvalid...)
	var signing []bundleEvidence
	for _, b := range bundles {
		if b.statement.PredicateType == cosignSignPredicate {
			signing = append(signing, b)
		}
	}
	for _, r := range rs {
		if _, done := out[r.name]; done {
			continue
		}
		ok, fails := verifyBundles(s.ctx, r.signatures, signing, s.hash)
		if ok {
			out[r.name] = policy.SignatureResult{Verified: true, Format: FormatBundle}
			continue
		}
		fails = append(failures[r.name], fails...)
		if len(sigs)+len(signing)+len(invalid) == 0 {
			out[r.name] = policy.SignatureResult{Reason: ReasonNoSignatures}
			continue
		}
		out[r.name] = policy.SignatureResult{Reason: r.reason("signature", fails, invalid)}
	}
	return out, nil
}

// failure is why one piece of evidence did not verify with one root.
type failure struct {
	err  error
	cert *x509.Certificate // the signing certificate, if the evidence had one
}

// verifyClassic reports whether any of the classic signatures sigs verifies
// with co for image h (including the claim that it signs h), and why each
// one that does not failed.
func verifyClassic(ctx context.Context, co *cosign.CheckOpts, sigs []oci.Signature, h v1.Hash) (bool, []failure) {
	var fails []failure
	for _, sig := range sigs {
		_, err := cosign.VerifyImageSignature(ctx, sig, h, co)
		if err == nil {
			return true, nil
		}
		cert, _ := sig.Cert()
		fails = append(fails, failure{err: err, cert: cert})
	}
	return false, fails
}

// verifyBundles reports whether any of bundles verifies with co for image h
// (signature, certificate chain and identity, required proofs, and an in-toto
// subject equal to h), and why each one that does not failed.
func verifyBundles(ctx context.Context, co *cosign.CheckOpts, bundles []bundleEvidence, h v1.Hash) (bool, []failure) {
	var fails []failure
	for _, b := range bundles {
		if err := verifyBundle(ctx, co, b, h); err != nil {
			var cert *x509.Certificate
			if vc, verr := b.bundle.VerificationContent(); verr == nil && vc != nil {
				cert = vc.Certificate()
			}
			fails = append(fails, failure{err: err, cert: cert})
			continue
		}
		return true, nil
	}
	return false, fails
}

// verifyBundle checks one bundle with sigstore-go through cosign, bound to
// the image digest h.
func verifyBundle(ctx context.Context, co *cosign.CheckOpts, b bundleEvidence, h v1.Hash) error {
	sum, err := hex.DecodeString(h.Hex)
	if err != nil {
		return err
	}
	_, err = cosign.VerifyNewBundle(ctx, co, verify.WithArtifactDigest(h.Algorithm, sum), b.bundle)
	return err
}

// reason explains why no evidence of kind ("signature", "attestation")
// verified with r. An identity mismatch is the most useful thing to say about
// a keyless root; otherwise the first failure is quoted.
func (r *trustRoot) reason(kind string, fails []failure, invalid []error) string {
	if r.keyless {
		var mismatch string
		for _, f := range fails {
			if f.cert == nil {
				continue
			}
			m := r.identityMismatch(f.cert)
			if m == "" {
				// The identity matches; the chain or a proof is what failed.
				return fmt.Sprintf("no %s verifies with %s: %s", kind, r.describe(), short(f.err))
			}
			if mismatch == "" {
				mismatch = m
			}
		}
		if mismatch != "" {
			return mismatch
		}
		if len(fails) > 0 {
			return fmt.Sprintf("no %s verifies with %s: %s", kind, r.describe(), "no signing certificate")
		}
	}
	switch {
	case len(fails) > 0:
		return fmt.Sprintf("no %s verifies with %s: %s", kind, r.describe(), short(fails[0].err))
	case len(invalid) > 0:
		return fmt.Sprintf("no %s verifies with %s: invalid %s: %s", kind, r.describe(), kind, short(invalid[0]))
	}
	return fmt.Sprintf("no %s verifies with %s", kind, r.describe())
}

// short returns the first line of err's text, capped: cosign joins the
// failures of several signatures with newlines.
func short(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen] + "..."
	}
	return s
}
