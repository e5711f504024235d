package policy

import (
	"encoding/json"
	"time"
)

// Facts are what the verifier found about one image. The verifier decides nothing; a
// Rule's Evaluate turns Facts into a Decision.
type Facts struct {
	// Now is the time of the decision, for report ages and allowlist expiry.
	Now time.Time
	// Image names the image in messages: "upstream/repository@digest".
	Image string
	// Signatures holds the image signature check per trust root name; a root the rule
	// needs that is missing here counts as "not checked".
	Signatures map[string]SignatureResult
	// Attestations lists the verified attestations only.
	Attestations []Attestation
	// InvalidAttestations says why attestation evidence on the image was refused unread or
	// unparsed, e.g. "attestation artifact sha256-<hex>.att layer sha256:<hex> is 33554432
	// bytes, more than 16 MiB". What it held is unknown, so a missing attestation (or scan
	// report from attestations) names it: it may have been the one looked for.
	InvalidAttestations []string
	// Scan is the scan report found; nil when none was.
	Scan *ScanReport
	// ScanError says why there is no report, when known ("scanner timed out").
	ScanError string
}

// SignatureResult is whether an image was signed by one trust root.
type SignatureResult struct {
	// Verified is true when a signature verified with the root.
	Verified bool
	// Reason says why not, e.g. "no signatures found" or "signature does not verify with
	// key release".
	Reason string
	// Format is how the verified signature was stored: "cosign-tag" or "bundle".
	Format string
}

// Attestation is one verified in-toto attestation.
type Attestation struct {
	// PredicateType is the statement's predicate type.
	PredicateType string
	// SignedBy lists the trust root names that verified the attestation.
	SignedBy []string
	// Predicate is the statement's predicate, JSON.
	Predicate json.RawMessage
}

// ScanReport is one vulnerability report for the image.
type ScanReport struct {
	// Source is where the report came from: SourceAttestation, SourceScanner or SourceCI. A
	// report from a source the rule does not list fails the scan gate.
	Source Source
	// Scanner and ScannerVersion name the tool, e.g. "Trivy" "0.58.1".
	Scanner, ScannerVersion string
	// DBTime is the vulnerability database's time; ScanTime is when the scan ran.
	DBTime, ScanTime time.Time
	// Findings lists the vulnerabilities found.
	Findings []Finding
	// VEX holds the VEX statements about the image: the report's own (a CycloneDX analysis) and those gathered
	// with it (verified OpenVEX attestations, documents CI posted). A finding does not count when the latest
	// statement that covers it says not_affected or fixed; see VEXStatement.
	VEX []VEXStatement
}

// Finding is one vulnerability in one package.
type Finding struct {
	// ID is the vulnerability id, e.g. CVE-2024-3094.
	ID string
	// Severity is one of the Severity constants; parsers map a scanner's label to one
	// (package verifier/report: "CRITICAL" and "Critical" become SeverityCritical). A value
	// that is none of them (compared case-insensitively) counts as SeverityUnknown.
	Severity Severity
	// Package, InstalledVersion and FixedVersion describe the affected package;
	// FixedVersion is "" when there is no fix.
	Package, InstalledVersion, FixedVersion string
}

// Decision is a rule's verdict on an image.
type Decision struct {
	// Allowed is false only in enforce mode; warn and audit always allow.
	Allowed bool
	// Mode is the deciding rule's mode.
	Mode Mode
	// Rule is the deciding rule's name ("default" for the default rule).
	Rule string
	// Failures lists each failed requirement as one short clause, e.g. "not signed by
	// release (no signatures found)". Empty when every requirement held.
	Failures []string
	// Notes records what passed and what was waived, e.g. "signed by release" or
	// "allowlist entry CVE-2023-1 expired 2026-01-01".
	Notes []string
	// Message is one line a person can act on, e.g. `portcullis:
	// ghcr.io/acme/app@sha256:ab12… denied by rule "acme": not signed by release (no
	// signatures found)`.
	Message string
}

// Failed reports whether a requirement failed, whatever the mode: true for a denial and
// for a warn- or audit-mode admission that would have been denied.
func (d Decision) Failed() bool { return len(d.Failures) > 0 }
