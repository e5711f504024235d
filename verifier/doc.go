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
// caller's Source (the proxy's own registry client: its token cache,
// connection pool and scheme, so no ping and no scheme probe) or a client
// built for the call on the caller's transport.
//
// One Verify is one look at an image for one decision: the .sig and .att
// tags and the referrers index are asked at once, and what both signatures
// and attestations need (the referrers index, each bundle) is read once.
//
// Anyone who can push to the upstream can shape the evidence, so what is read
// is bounded before it is fetched: at most 32 layers per signature or
// attestation manifest, 1 MiB per signature layer, 16 MiB per attestation
// layer, 4 MiB per manifest or referrers index, 32 bundle referrers, and
// 64 MiB of evidence read in all for the signatures, and as much for the
// attestations, of one image in one look (see the With... options); every
// body is read through a cap, whatever its descriptor claims, and every
// layer is checked against its descriptor's size and digest.
//
// A verdict is a value (policy.SignatureResult, AttestationResult); evidence
// that breaks a bound, is malformed or does not match its descriptor is
// invalid and counts for nothing (a signature's Reason and an
// AttestationResult's Invalid say why). An error
// means the evidence could not be read (registry unreachable, 5xx, bad auth),
// and the caller must fail closed. The package must never decide admission,
// never cache beyond one look (a decorating Source may), and never import the
// proxy.
package verifier
