package proxy

import (
	"context"

	"github.com/opencontainers/go-digest"
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

// Decision is an admission verdict. A denial always carries a reason a person can act on.
type Decision struct {
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
}

// BlobGate is an Admitter that also guards blobs: a blob is served only if it belongs to an admitted manifest of
// that repository. An Admitter without it lets every blob through (no policy).
type BlobGate interface {
	AllowBlob(ctx context.Context, upstream, repository string, dgst digest.Digest) (bool, error)
}

// LastGood is an Admitter that remembers the last admitted digest of each tag, for keepLastGood rules.
type LastGood interface {
	LastGood(ctx context.Context, upstream, repository, tag string) (digest.Digest, bool)
}

// Admitted is an Admitter that can tell whether a manifest is admitted now, without deciding: the proxy lists an
// image's referrers only then. Listing admits nothing; each referrer is decided on its own manifest when fetched.
type Admitted interface {
	Admitted(ctx context.Context, upstream, repository string, dgst digest.Digest) (bool, error)
}

// Admitter decides whether a manifest may be served. Its error means it could not decide; the proxy then denies
// (fail closed).
type Admitter interface {
	Admit(ctx context.Context, s Subject) (Decision, error)
}

// AllowAll admits every image: the behaviour with no policy configured.
type AllowAll struct{}

// Admit allows s.
func (AllowAll) Admit(context.Context, Subject) (Decision, error) {
	return Decision{Allowed: true, Reason: "no policy configured"}, nil
}

var _ Admitter = AllowAll{}
