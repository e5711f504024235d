// Package manifest is the one reader of a manifest's contents: what an image manifest, an index or an artifact
// manifest refers to (config, layers or blobs, child manifests, subject), and whether it is shaped like an
// artifact that rides along with an image (a signature, an attestation, an SBOM, a bundle) rather than
// something a runtime can run.
//
// The gate, the scanner credential and the verifier all walk manifests through Parse, so that what one admits
// and what another serves cannot drift apart. It does no I/O and must never decide on trust: shape is not a
// signature.
package manifest
