package policy

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Mode says what a rule does with a failed requirement.
type Mode string

const (
	// ModeEnforce denies an image that fails a requirement. The default.
	ModeEnforce Mode = "enforce"
	// ModeWarn admits it, and the proxy adds a Warning header and logs the would-be denial.
	ModeWarn Mode = "warn"
	// ModeAudit admits it, and the proxy only logs and counts the would-be denial.
	ModeAudit Mode = "audit"
)

// OnError says what an error while gathering facts means for a rule.
type OnError string

const (
	// OnErrorDeny denies (fail closed). The default.
	OnErrorDeny OnError = "deny"
	// OnErrorAllow admits, saying so in the decision.
	OnErrorAllow OnError = "allow"
)

// OnMissing says what the scan gate does when no scan report is found.
type OnMissing string

const (
	// OnMissingDeny fails the scan gate. The default.
	OnMissingDeny OnMissing = "deny"
	// OnMissingAllow passes the scan gate with a note.
	OnMissingAllow OnMissing = "allow"
	// OnMissingScanAndWait asks the rule's scanner for a report and waits up to WaitTimeout
	// for it; the orchestrator does the asking and waiting, and Evaluate, given no report,
	// fails the gate as OnMissingDeny does.
	OnMissingScanAndWait OnMissing = "scan-and-wait"
)

// Source is where a scan report came from.
type Source string

const (
	// SourceAttestation is a signed vulnerability attestation attached to the image.
	SourceAttestation Source = "attestation"
	// SourceScanner is a report from a Harbor Pluggable Scanner API adapter.
	SourceScanner Source = "scanner"
	// SourceCI is a report posted by CI (Trivy JSON, SARIF, CycloneDX).
	SourceCI Source = "ci"
)

// allSources is the default of ScanRequirement.Sources, in preference order.
var allSources = []Source{SourceAttestation, SourceScanner, SourceCI}

// Severity is a vulnerability severity, lower-case, ordered none < unknown < low < medium <
// high < critical (Harbor's order).
type Severity string

// Severities, lowest first.
const (
	SeverityNone     Severity = "none"
	SeverityUnknown  Severity = "unknown"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// severities lists the severities a finding can have, highest first.
var severities = []Severity{SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow, SeverityUnknown}

// rank orders severities; a finding's severity that is not one of the known names (compared
// case-insensitively) ranks as unknown.
func (s Severity) rank() int {
	switch Severity(strings.ToLower(string(s))) {
	case SeverityNone:
		return 0
	case SeverityLow:
		return 2
	case SeverityMedium:
		return 3
	case SeverityHigh:
		return 4
	case SeverityCritical:
		return 5
	}
	return 1
}

// Compare orders s and t as the scan gate ranks them: -1 when s ranks below t, 0 when they
// rank alike, +1 when s ranks above. A name that is none of the Severity constants (compared
// case-insensitively) ranks as SeverityUnknown.
func (s Severity) Compare(t Severity) int { return cmp.Compare(s.rank(), t.rank()) }

// normalize returns the known severity s names, or unknown.
func (s Severity) normalize() Severity {
	l := Severity(strings.ToLower(string(s)))
	if l == SeverityNone || l.rank() != 1 {
		return l
	}
	return SeverityUnknown
}

// TrustRoot is a named root of trust for signatures: a public key, a keyless (Fulcio)
// identity with the trusted root that vouches for it, a Notation trust store with its
// trusted identities, or a Docker Content Trust collection. Exactly one of KeyPEM, Keyless, Notation and Notary
// is set. It carries the bytes from the policy
// (and the files it names), not parsed crypto; the verifier parses them.
type TrustRoot struct {
	// Name is the root's name in the policy's trust section.
	Name string
	// KeyPEM is the PEM public key for key roots; nil for keyless roots.
	KeyPEM []byte
	// Keyless is the certificate identity for keyless roots; nil for key roots.
	Keyless *Keyless
	// Notation is the trust store and identities of a Notation root; nil for cosign roots. Left
	// out of the policy hash when nil, so that policies without one keep their hash.
	Notation *Notation `json:",omitempty"`
	// IgnoreTlog means no transparency-log proof is required. Default true for key roots
	// (offline key signing has none), false for keyless roots.
	IgnoreTlog bool
	// IgnoreSCT means the certificate need not carry a signed certificate timestamp (keyless
	// only). Default false.
	IgnoreSCT bool
	// Notary is the Docker Content Trust (Notary v1) collection for notary roots; nil for
	// cosign roots. Left out of the policy hash when nil, so cosign-only hashes do not change.
	Notary *Notary `json:",omitempty"`
}

// Keyless is a Fulcio certificate identity: exactly one of Issuer and IssuerRegExp, and
// exactly one of Subject and SubjectRegExp, are set. Regular expressions are Go (RE2)
// syntax, unanchored, and known to compile.
type Keyless struct {
	// TrustedRootJSON is the Sigstore trusted root (trusted_root.json) bytes.
	TrustedRootJSON []byte
	// Issuer is the exact OIDC issuer.
	Issuer string
	// IssuerRegExp matches the OIDC issuer.
	IssuerRegExp string
	// Subject is the exact certificate subject (SAN: e-mail or URI).
	Subject string
	// SubjectRegExp matches the certificate subject.
	SubjectRegExp string
}

// clone returns a deep copy of t, so that callers cannot change the policy's bytes.
func (t TrustRoot) clone() TrustRoot {
	t.KeyPEM = slices.Clone(t.KeyPEM)
	if t.Keyless != nil {
		k := *t.Keyless
		k.TrustedRootJSON = slices.Clone(k.TrustedRootJSON)
		t.Keyless = &k
	}
	if t.Notation != nil {
		n := *t.Notation
		n.CAPEM = slices.Clone(n.CAPEM)
		n.SigningAuthorityPEM = slices.Clone(n.SigningAuthorityPEM)
		n.TSAPEM = slices.Clone(n.TSAPEM)
		n.Identities = slices.Clone(n.Identities)
		t.Notation = &n
	}
	if t.Notary != nil {
		n := *t.Notary
		n.RootKeysPEM = make([][]byte, len(t.Notary.RootKeysPEM))
		for i, k := range t.Notary.RootKeysPEM {
			n.RootKeysPEM[i] = slices.Clone(k)
		}
		n.Delegations = slices.Clone(n.Delegations)
		t.Notary = &n
	}
	return t
}

// ScannerKind is the API a scanner speaks.
type ScannerKind string

const (
	// ScannerHarbor is the Harbor Pluggable Scanner API (harbor-scanner-trivy and others). The
	// default, which Scanner.Kind holds as "" (a policy without kind: keeps its hash).
	ScannerHarbor ScannerKind = ""
	// ScannerClair is Clair v4's indexer and matcher API, with its notifier's webhook.
	ScannerClair ScannerKind = "clair"
)

// Scanner is a scanner that scans on demand: a Harbor Pluggable Scanner API adapter or a Clair v4.
type Scanner struct {
	// Name is the scanner's name in the policy's scanners section.
	Name string
	// Kind is the API it speaks. Default ScannerHarbor ("").
	Kind ScannerKind `json:",omitempty"`
	// URL is the adapter's (or Clair's) base URL (http or https).
	URL string
	// PullURL is the registry URL the scanner pulls the image from; "" means the proxy's own
	// registry listener. Default "".
	PullURL string
	// Timeout bounds one scan, from request to report. Default 5m.
	Timeout time.Duration
}

// Signers names trust roots a signature must come from: any one of AnyOf, or every one of
// AllOf. At most one of the two is non-empty; both empty means no signature is required.
type Signers struct {
	AnyOf []string
	AllOf []string
}

// IsZero reports whether s requires nothing.
func (s Signers) IsZero() bool { return len(s.AnyOf) == 0 && len(s.AllOf) == 0 }

// Roots lists the trust root names s mentions, in policy order.
func (s Signers) Roots() []string { return slices.Concat(s.AnyOf, s.AllOf) }

// String formats s for messages: "release", "release or github-ci", "release and github-ci".
func (s Signers) String() string {
	if len(s.AllOf) > 0 {
		return strings.Join(s.AllOf, " and ")
	}
	return strings.Join(s.AnyOf, " or ")
}

// satisfiedBy reports whether the roots in ok (those that verified) satisfy s.
func (s Signers) satisfiedBy(ok func(root string) bool) bool {
	if len(s.AllOf) > 0 {
		for _, r := range s.AllOf {
			if !ok(r) {
				return false
			}
		}
		return true
	}
	for _, r := range s.AnyOf {
		if ok(r) {
			return true
		}
	}
	return len(s.AnyOf) == 0
}

func (s Signers) clone() Signers {
	return Signers{AnyOf: slices.Clone(s.AnyOf), AllOf: slices.Clone(s.AllOf)}
}

// Requirements is the evidence a rule needs, for the verifier to gather before Evaluate.
type Requirements struct {
	// SignedBy names the roots to check the image's signatures against; zero when the rule
	// requires no image signature.
	SignedBy Signers
	// Attestations lists the required in-toto predicate types, in policy order.
	Attestations []AttestationRequirement
	// Scan is the scan gate; nil when the rule has none.
	Scan *ScanRequirement
}

// Roots lists every trust root name the requirements mention, each once, sorted.
func (r Requirements) Roots() []string {
	all := r.SignedBy.Roots()
	for _, a := range r.Attestations {
		all = append(all, a.SignedBy.Roots()...)
	}
	if r.Scan != nil {
		all = append(all, r.Scan.SignedBy.Roots()...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// AttestationRequirement asks for a verified attestation of one predicate type.
type AttestationRequirement struct {
	// PredicateType is the in-toto predicate type, compared exactly.
	PredicateType string
	// SignedBy names the roots whose signatures on the attestation count. Default: the
	// rule's SignedBy.
	SignedBy Signers
}

// ScanRequirement is a rule's scan gate, as the verifier and orchestrator need it.
type ScanRequirement struct {
	// MaxSeverity is the highest severity admitted; findings above it deny.
	MaxSeverity Severity
	// IgnoreUnfixed means findings with no fixed version do not count. Default false.
	IgnoreUnfixed bool
	// MaxAge is the oldest a report may be (by its scan time); 0 means no limit. Default 0.
	MaxAge time.Duration
	// SignedBy names the roots whose vulnerability attestations count (source attestation).
	// Default: the rule's SignedBy.
	SignedBy Signers
	// Sources lists the report sources that count, in preference order. Default attestation,
	// scanner, ci; attestation is left out when SignedBy is zero.
	Sources []Source
	// OnMissing is what having no report means. Default deny.
	OnMissing OnMissing
	// WaitTimeout bounds the wait for scan-and-wait. Default 2m.
	WaitTimeout time.Duration
	// Scanner names the policy's scanner that scans on demand; "" when none. Required for
	// scan-and-wait.
	Scanner string
}
