// Package imageref is the one reference grammar of the project: what a repository path, a tag and a registry
// host are (distribution's reference package, anchored), how a name given to Portcullis splits into an upstream
// prefix and a path, and Docker Hub's library/ rule. The routes, `portcullis check`, the upstream client and the
// allow/deny lists all use it, so they cannot disagree on a name. It does no I/O.
package imageref

import (
	"regexp"
	"strings"

	"github.com/distribution/reference"
)

// SplitName splits a repository name as a client gives it to Portcullis (the <name> of /v2/<name>/...) into the
// upstream it names by prefix and the path after it. The first of several components is a prefix when it looks
// like a registry host: it has a dot or a port or is localhost (the Docker rule) and is a host in the reference
// grammar. Otherwise prefix is empty, and the request's ns= or the default upstream decides.
func SplitName(name string) (prefix, path string) {
	first, rest, ok := strings.Cut(name, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") && domainRegexp.MatchString(first) {
		return first, rest
	}
	return "", name
}

// UpstreamRepository returns the repository the upstream named upstream knows path by. Docker Hub (docker.io)
// keeps official images under library/, so there a single component gets that prefix. The result must be a
// repository path in the reference grammar (components of lower-case letters and digits joined by ".", "_", "__"
// or runs of "-"; no host; at most 255 characters), else the error says why.
func UpstreamRepository(upstream, path string) (string, error) {
	repo := path
	if strings.EqualFold(upstream, "docker.io") && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	// The reference grammar parses a path only as part of a name whose first component may be a host. After a
	// host of our own, the path must come back whole: a first component only a host may be (with a port, upper
	// case, [IPv6]) is refused, as the spec's <name> grammar refuses it.
	if _, err := reference.WithName(placeholderHost + "/" + repo); err != nil {
		return "", err
	}
	if !IsRepository(repo) {
		return "", reference.ErrReferenceInvalidFormat
	}
	return repo, nil
}

// placeholderHost stands in front of a repository path while the reference grammar parses it; it never leaves
// UpstreamRepository.
const placeholderHost = "registry.invalid"

// The reference package exports its tag and host grammars unanchored, and parses neither alone: anchored here.
var (
	tagRegexp    = regexp.MustCompile(`^` + reference.TagRegexp.String() + `$`)
	domainRegexp = regexp.MustCompile(`^` + reference.DomainRegexp.String() + `$`)
)

// IsTag reports whether s is a tag in the distribution spec's grammar ([\w][\w.-]{0,127}).
func IsTag(s string) bool { return tagRegexp.MatchString(s) }

// IsRepository reports whether path is a repository path in the reference grammar (no host, at most 255
// characters), as UpstreamRepository checks it.
func IsRepository(path string) bool {
	named, err := reference.WithName(placeholderHost + "/" + path)
	return err == nil && reference.Path(named) == path
}
