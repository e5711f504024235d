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
// This package is where a scanner's severity label becomes a policy.Severity:
// each finding holds one of policy.SeverityUnknown, Low, Medium, High or
// Critical, whatever the case or vendor word the scanner used ("CRITICAL",
// "Critical"; "important" is high, "negligible", "info" and "none" count as
// low; anything unrecognised as unknown). A report's Source is a policy.Source. Identical findings reported twice (the
// same vulnerability, package, version and fix) are kept once.
package report
