// Package policy owns Portcullis policy documents: their YAML schema, strict parsing,
// compiling to an immutable *Policy with a content hash, matching a repository to a rule,
// and evaluating the facts the verifier gathered into a Decision.
//
// The flow is Load (or Parse) -> Policy.Match(upstream, repository) -> Rule.Requirements
// (what evidence the verifier must gather) -> Rule.Evaluate(Facts) -> Decision. Evaluate is
// a pure function: same rule, same facts, same decision.
//
// This package must never do network I/O, talk to Redis or import HTTP or Sigstore code; a
// test (TestNoIO) keeps it so. Its only I/O is Load reading the policy file and the key and
// trusted-root files it names. It does not parse keys or trusted roots either: it keeps their
// bytes (TrustRoots) for the verifier, and its hash covers them, so a changed key changes
// Policy.Hash and with it every cached decision's key.
//
// # Document
//
//	trust:                      # named trust roots, referred to by rules
//	  release: {key: keys/release.pub}     # PEM public key file, relative to the policy file
//	  ci: {keyData: "-----BEGIN PUBLIC KEY-----\n..."}  # inline PEM
//	  github-ci:
//	    keyless:
//	      trustedRoot: trusted_root.json   # required: Sigstore trusted root, relative path
//	      issuer: https://token.actions.githubusercontent.com   # or issuerRegExp
//	      subjectRegExp: '^https://github.com/acme/'            # or subject
//	    ignoreTlog: false       # no transparency-log proof needed; default false for keyless
//	                            # roots, true for key roots (offline key signing has none)
//	    ignoreSCT: false        # keyless only: no SCT needed in the certificate; default false
//	scanners:                   # Harbor Pluggable Scanner API adapters
//	  trivy: {url: http://harbor-scanner-trivy:8080, timeout: 5m, pullURL: ""}  # timeout default 5m
//	allowlist:                  # CVEs accepted by every rule's scan gate
//	  - {id: CVE-2023-0001, until: 2026-12-31, reason: "..."}
//	rules:
//	  - name: acme              # required, unique; "default" is reserved
//	    match: {upstream: ghcr.io, repository: "acme/**"}   # defaults "*" and "**"
//	    mode: enforce           # enforce | warn | audit; default enforce
//	    signedBy: {anyOf: [release, github-ci]}   # or allOf; absent: no signature needed
//	    keepLastGood: false     # default false
//	    onError: deny           # deny | allow: what an error while deciding means; default deny
//	    attestations:
//	      - predicateType: https://slsa.dev/provenance/v1
//	        signedBy: {anyOf: [github-ci]}        # default: the rule's signedBy
//	        conditions:                           # all must hold on the predicate JSON
//	          - {path: builder.id, equals: "https://github.com/acme/builder"}  # or matches, in
//	    scan:
//	      maxSeverity: medium   # required: none|low|medium|high|critical; findings above deny
//	      ignoreUnfixed: false  # default false
//	      maxAge: 7d            # oldest report by scan time; default none (no limit)
//	      signedBy: {anyOf: [scanner]}   # whose vulnerability attestations count; default
//	                                     # the rule's signedBy
//	      sources: [attestation, scanner, ci]    # default all three (attestation only when
//	                                             # there is a signedBy)
//	      onMissing: deny       # deny | allow | scan-and-wait; default deny
//	      waitTimeout: 2m       # scan-and-wait only; default 2m
//	      scanner: trivy        # names a scanners entry; required for scan-and-wait
//	      allow:
//	        - {id: CVE-2024-3094, until: 2026-12-31, reason: "not reachable"}
//	default:                    # rule for repositories no rule matches (no name, no match)
//	  mode: enforce
//	  signedBy: {anyOf: [release]}
//
// A document with no default section gets {mode: enforce} with no requirements, which admits
// every image no rule matches. An empty document therefore admits everything.
//
// Durations are strings: "30s", "5m", "24h", "7d". An allowlist's until is a date
// (YYYY-MM-DD, through the end of that day in UTC) or an RFC 3339 time; absent means the
// entry never expires; reason is required. Condition paths are dotted keys into the
// predicate with list indexes as [N] ("materials[0].uri"); the value must be a string,
// number or boolean and is compared by its text. Regular expressions (issuerRegExp,
// subjectRegExp, matches) are Go RE2 syntax and unanchored: write ^ and $ to anchor them.
//
// # Matching
//
// In match patterns, * matches within one path segment (no "/"), ** as a whole segment
// matches zero or more segments ("acme/**" matches acme, acme/app and acme/team/app), and ?
// matches one character. The most specific rule wins: a rule with an exact upstream beats
// one whose upstream is a glob; then the rule whose repository pattern has more literal
// (non-wildcard) characters; then the one that comes first in the file. See Policy.Match.
//
// # Evaluation
//
// Every requirement is checked and every failure reported, each as one clause in
// Decision.Failures ("not signed by release (no signatures found)", "attestation
// https://slsa.dev/provenance/v1 missing", "scan: 2 critical, 1 high above medium (...)").
// A missing attestation, or a missing report where attestations count, quotes the first
// piece of attestation evidence the verifier refused (Facts.InvalidAttestations): "...
// missing (invalid evidence: attestation artifact sha256-….att has 33 layers, more than
// 32)". In enforce mode any failure denies; warn and audit modes admit and say what would have
// been denied. The scan gate counts findings above maxSeverity unless the latest VEX
// statement that covers the finding (its vulnerability, and its package when the statement
// names packages) says not_affected or fixed, an unexpired allowlist entry (the rule's or the
// policy-wide one) names them, or ignoreUnfixed is set and there is no fix; an expired entry
// adds a note. With no report,
// onMissing: allow admits with a note, while deny and scan-and-wait fail the gate (for
// scan-and-wait the orchestrator asks the scanner and waits before calling Evaluate).
//
// # Errors
//
// Parse and Load report every problem they find, each an *Error formatted
// "FILE:LINE: field.path: message", for example
//
//	policy.yaml:14: rules[0].signedBy.anyOf[1]: unknown trust root "relase" (known: github-ci, release)
package policy
