package proxy

import (
	"context"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
)

// The proxy consumes admission through these interfaces. *admission.Gate implements all of them; without a
// policy the proxy admits everything (allowAll) and guards no blob.

// Admitter decides whether a manifest may be served. Its error means it could not decide; the proxy then denies
// (fail closed), except admission.ErrOverloaded, which asks the client to retry.
type Admitter interface {
	Admit(ctx context.Context, s admission.Subject) (admission.Verdict, error)
}

// BlobGate is an Admitter that also guards blobs: a blob is served only if it belongs to an admitted manifest of
// that repository. An Admitter without it lets every blob through (no policy).
type BlobGate interface {
	AllowBlob(ctx context.Context, upstream, repository string, dgst digest.Digest) (bool, error)
}

// PriorGrants is a BlobGate that, for a blob it refuses, can name the manifests that granted it under the policies
// in force before the current one (a reload between a client's manifest and its blobs), each as a chain to decide
// again in order (an index before its child, an image before its signature). The proxy decides them again under the
// policy in force (Admit) and asks AllowBlob once more: the blob is served only if the policy in force admits one.
type PriorGrants interface {
	PriorGrants(ctx context.Context, upstream, repository string, dgst digest.Digest) ([][]admission.PriorManifest, error)
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

// ScannerAccess lets a scanner holding a short-lived credential pull the one image it was asked to scan before
// that image is admitted (scan-and-wait). *admission.ScanCredentials implements it.
type ScannerAccess interface {
	// AllowManifest reports whether tok grants the manifest dgst (body already verified); the error means the
	// credential is live but does not grant it, and says why.
	AllowManifest(ctx context.Context, tok, upstream, repo string, dgst digest.Digest, body []byte) (bool, error)
	// AllowBlob reports whether tok grants the blob dgst.
	AllowBlob(ctx context.Context, tok, upstream, repo string, dgst digest.Digest) bool
}

// TagTrust is an Admitter that takes some tags from signed trust data rather than from the registry: under a
// Docker Content Trust rule a tag is the digest the notary collection signs for it, whatever the registry's tag
// says (the registry is not trusted). *admission.Gate implements it.
type TagTrust interface {
	// TrustedTag says what trust data makes of the tag; Applies false leaves it to the registry. Its error
	// means the trust data could not be read; the proxy then denies.
	TrustedTag(ctx context.Context, upstream, repository, tag string) (admission.TrustedTag, error)
}

var (
	_ TagTrust      = (*admission.Gate)(nil)
	_ Admitter      = (*admission.Gate)(nil)
	_ BlobGate      = (*admission.Gate)(nil)
	_ PriorGrants   = (*admission.Gate)(nil)
	_ LastGood      = (*admission.Gate)(nil)
	_ Admitted      = (*admission.Gate)(nil)
	_ ScannerAccess = (*admission.ScanCredentials)(nil)
	_ Admitter      = allowAll{}
)

// allowAll admits every image: the behaviour with no policy configured.
type allowAll struct{}

func (allowAll) Admit(context.Context, admission.Subject) (admission.Verdict, error) {
	return admission.Verdict{Allowed: true, Reason: "no policy configured"}, nil
}
