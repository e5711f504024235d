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
	// Ref names the image field by field, for a Rego module's input.image; the admission gate fills it. Zero in
	// facts built elsewhere, leaving input.image empty.
	Ref ImageRef
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
	// Checks lists each requirement of the rule, in the order Evaluate checks them (signature,
	// attestations in policy order, scan gate, Rego module), with whether it held and the evidence that
	// decided it: what `portcullis check` and the admin API's explain and preview show. Failures
	// and Notes say the same in one line each. Empty when the rule requires nothing.
	Checks []Check
}

// Check is one requirement of a rule and how the image fared against it.
type Check struct {
	// Requirement names it: "signature", "attestation <predicate type>", "scan", "rego" (the
	// rule's Rego module: its deny messages, or why it could not decide), "evidence" (the facts
	// could not be gathered: ErrorDecision) or "rule" (no rule matches and the policy has no
	// default).
	Requirement string
	// Passed is true when the requirement held. A scan gate with no report passes under
	// onMissing: allow; an "evidence" check never passes (onError: allow admits despite it).
	Passed bool
	// Detail is the line that decided it: its failures, or its notes when it passed, joined
	// with "; ".
	Detail string
	// Signatures holds, for the signature requirement, each root the rule names, in policy
	// order, with its result ("not checked" when the verifier gave none).
	Signatures []RootSignature
	// Scan holds the scan gate's evidence; nil for other requirements.
	Scan *ScanCheck
}

// RootSignature is one trust root's signature result on the image.
type RootSignature struct {
	// Root is the trust root's name in the policy.
	Root string
	SignatureResult
}

// ScanCheck is the evidence behind a scan gate check.
type ScanCheck struct {
	// MaxSeverity is the highest severity the gate admits.
	MaxSeverity Severity
	// MaxAge is the oldest a report may be; 0 means no limit.
	MaxAge time.Duration
	// Report describes the report the gate read; nil when there was none. Its Findings and VEX
	// are left out (BySeverity, Counted and Waived say what they came to).
	Report *ScanReport
	// BySeverity counts the report's distinct findings (a vulnerability in a package reported
	// twice counts once) by severity, whether they count or not.
	BySeverity map[Severity]int
	// Counted are the findings above MaxSeverity that fail the gate.
	Counted []Finding
	// Waived are the findings above MaxSeverity that do not count, and why.
	Waived []Waiver
}

// Waiver says why a finding above the maximum severity does not count.
type Waiver struct {
	Finding Finding
	// By is what waived it: "vex" (the latest covering statement says not_affected or fixed),
	// "allowlist" (an entry in force names it) or "unfixed" (no fix, and ignoreUnfixed).
	By string
	// Detail names the statement (status, time, note) or the entry (id, until, reason).
	Detail string
}

// Failed reports whether a requirement failed, whatever the mode: true for a denial and
// for a warn- or audit-mode admission that would have been denied.
func (d Decision) Failed() bool { return len(d.Failures) > 0 }
