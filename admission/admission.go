package admission

import (
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// Subject is what an admission decision is about: one manifest, by digest, in one upstream repository.
type Subject struct {
	// Upstream is the configured upstream name, e.g. docker.io.
	Upstream string
	// Repository is the upstream-relative repository, e.g. library/alpine.
	Repository string
	// Tag is the tag the client asked for, empty for a pull by digest.
	Tag string
	// Digest is the manifest's verified digest.
	Digest digest.Digest
	// MediaType is the manifest's media type.
	MediaType string
	// Manifest is the manifest's bytes, already verified against Digest.
	Manifest []byte
}

// ref names s field by field for the policy (a Rego module's input.image).
func (s Subject) ref() policy.ImageRef {
	return policy.ImageRef{Upstream: s.Upstream, Repository: s.Repository, Tag: s.Tag, Digest: s.Digest, MediaType: s.MediaType}
}

// Verdict is what the proxy acts on: serve the manifest or refuse it, and the line a person reads. It is made
// from a policy.Decision (the rule's pure evaluation of the facts) or from an admission through an admitted image
// (a parent index, a subject), and is what the decision cache stores. A denial always carries a reason a person
// can act on.
type Verdict struct {
	// Allowed is true when the manifest may be served.
	Allowed bool
	// Reason says why, in one line; for a denial it names the gate and what failed.
	Reason string
	// Warnings are sent as Warning: 299 headers on an allowed manifest (warn mode).
	Warnings []string
	// Rule and Mode name the deciding policy rule, for logs and metrics; empty without a policy.
	Rule, Mode string
	// KeepLastGood asks the proxy, on a denial of a tag, to serve the tag's last admitted digest instead.
	KeepLastGood bool
	// Evaluation is the rule's evaluation this verdict was made from, when Admit evaluated the manifest now (for
	// `portcullis check` to show the evidence); nil when the verdict came from the decision cache or from an
	// admission through another manifest. It is never cached, and callers that share one evaluation share it:
	// read only.
	Evaluation *Evaluation `json:"-"`
}

// Evaluation is one evaluation of a rule on a manifest: the rule's decision and the facts it was made on.
type Evaluation struct {
	// Decision is the rule's pure evaluation of Facts, or, when Err is set, its onError decision.
	Decision policy.Decision
	// Facts are the evidence gathered: signatures by root, verified attestations, the scan report. Partial when
	// Err is set.
	Facts policy.Facts
	// Err is why the evidence could not be gathered; the rule's onError turned it into Decision.
	Err error
}
