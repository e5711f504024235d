// Package verifier gathers cosign evidence about an image in an upstream
// registry: whether its signatures verify against named trust roots, which
// in-toto attestations on it verify and with whose roots. It produces facts
// for package policy and decides nothing.
//
// Three storage formats are understood, all through sigstore/cosign v2's
// pkg/cosign verifiers:
//   - cosign's classic tags: a simple-signing payload under sha256-<hex>.sig
//     and DSSE attestations under sha256-<hex>.att;
//   - sigstore bundles (the "new bundle format" of cosign 2.x and the default
//     of cosign 3.x) attached as OCI 1.1 referrers, found through the
//     referrers API or, on registries without it (CNCF Distribution), the
//     sha256-<hex> fallback tag. A bundle whose in-toto predicate type is
//     https://sigstore.dev/cosign/sign/v1 is a signature; any other is an
//     attestation.
//
// A trust root is a PEM public key (ECDSA, RSA or Ed25519) or a keyless
// identity: a certificate chaining to a certificate authority in an offline
// trusted_root.json with an OIDC issuer and subject (exact or regexp).
// Transparency-log and SCT proofs are checked against that trusted root unless
// the root waives them. Verification never goes online: no TUF, no Rekor
// lookups; the only network traffic is to the image's registry, through the
// caller's transport.
//
// Anyone who can push to the upstream can shape the evidence, so what is read
// is bounded before it is fetched: at most 32 layers per signature or
// attestation manifest, 1 MiB per signature layer, 16 MiB per attestation
// layer, 4 MiB per manifest or referrers index, 32 bundle referrers, and
// 64 MiB of evidence read in all by one Signatures or Attestations call (see
// the With... options); every body is read through a cap, whatever its
// descriptor claims.
//
// A verdict is a value (policy.SignatureResult, AttestationResult); evidence
// that breaks a bound, is malformed or does not match its descriptor is
// invalid and counts for nothing (a signature's Reason and an
// AttestationResult's Invalid say why). An error
// means the evidence could not be read (registry unreachable, 5xx, bad auth),
// and the caller must fail closed. The package must never decide admission,
// never cache, and never import the proxy.
package verifier
