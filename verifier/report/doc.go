// Package report turns vulnerability reports into policy facts: it parses the
// formats scanners and CI systems emit (Trivy JSON, SARIF 2.1.0 as Trivy and
// Grype write it, CycloneDX 1.4-1.6 vulnerabilities, the Harbor Pluggable
// Scanner report, cosign's vulnerability attestation predicate) into a
// *policy.ScanReport, OpenVEX documents into dated policy.VEXStatements about
// one image, and reads which image a report says it is about (ImageDigests).
//
// Parsing is all it does. It never fetches, never verifies signatures (the
// caller hands it the payload of an attestation it has already verified), never
// decides and never caches. Input is untrusted: malformed or hostile bytes give
// an error wrapping ErrMalformed or ErrUnsupported, never a panic, and a report
// that names more than MaxFindings findings is refused rather than truncated,
// so that a truncation can never hide a finding from the policy.
//
// Severities are normalised to the lower-case names package policy ranks:
// unknown, low, medium, high, critical ("negligible", "info" and "none" count as
// low; anything unrecognised as unknown). Identical findings reported twice (the
// same vulnerability, package, version and fix) are kept once.
package report
