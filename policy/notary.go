package policy

import (
	"encoding/pem"
	"fmt"
	"strings"
)

// Notary is a Docker Content Trust (Notary v1, TUF) collection: the signed targets of a
// notary server decide what a tag is and which digests are signed, the way Docker decides
// them with DOCKER_CONTENT_TRUST=1. The verifier fetches and checks the trust data; the
// policy only carries what the user pinned.
type Notary struct {
	// Server is the notary server's base URL, e.g. https://notary.docker.io.
	Server string
	// RootKeysPEM are the pinned root keys, each a PEM public key or a PEM certificate (its
	// public key counts). The collection's root metadata must carry a valid signature by one
	// of them; TOFU is never used.
	RootKeysPEM [][]byte
	// Delegations are the roles whose targets count, in order, e.g. ["targets/releases"];
	// empty means the top-level targets role (and its delegations), as Docker falls back to.
	Delegations []string
	// GUN is the collection name. "{upstream}" and "{repository}" in it are replaced by the
	// upstream's name and the repository. Default "{upstream}/{repository}" (Docker's name,
	// e.g. docker.io/library/alpine).
	GUN string
}

// DefaultNotaryGUN is the collection name of a notary root that does not set gun.
const DefaultNotaryGUN = "{upstream}/{repository}"

// CollectionFor returns the collection (GUN) n names for a repository of an upstream.
func (n *Notary) CollectionFor(upstream, repository string) string {
	return strings.NewReplacer("{upstream}", upstream, "{repository}", repository).Replace(n.GUN)
}

// notaryDoc is a notary (Docker Content Trust) trust root as written.
type notaryDoc struct {
	Server      string   `yaml:"server"`
	RootKeys    []string `yaml:"rootKeys"`
	RootKeyData []string `yaml:"rootKeyData"`
	Delegations []string `yaml:"delegations"`
	GUN         string   `yaml:"gun"`
}

// notaryRoot compiles a notary trust root, reading its root key files.
func (c *compiler) notaryRoot(path string, t TrustRoot, td *trustDoc) (TrustRoot, bool) {
	nd, before := td.Notary, len(c.p.errs)
	path = join(path, "notary")
	n := &Notary{Server: strings.TrimRight(nd.Server, "/"), GUN: nd.GUN}
	if td.IgnoreTlog != nil || td.IgnoreSCT != nil {
		c.p.add(path, "ignoreTlog and ignoreSCT apply to cosign roots only")
	}
	if nd.Server == "" {
		c.p.add(join(path, "server"), "required: the notary server's URL, e.g. https://notary.docker.io")
	} else {
		c.httpURL(join(path, "server"), nd.Server)
	}
	for i, f := range nd.RootKeys {
		p := fmt.Sprintf("%s.rootKeys[%d]", path, i)
		if data, ok := c.file(p, f); ok && c.checkRootKey(p, data) {
			n.RootKeysPEM = append(n.RootKeysPEM, data)
		}
	}
	for i, d := range nd.RootKeyData {
		p := fmt.Sprintf("%s.rootKeyData[%d]", path, i)
		if c.checkRootKey(p, []byte(d)) {
			n.RootKeysPEM = append(n.RootKeysPEM, []byte(d))
		}
	}
	if len(nd.RootKeys)+len(nd.RootKeyData) == 0 {
		c.p.add(path, "needs rootKeys (or rootKeyData): the collection's root public keys or certificates to pin")
	}
	for i, d := range nd.Delegations {
		if d != "targets" && !strings.HasPrefix(d, "targets/") || strings.HasSuffix(d, "/") {
			c.p.add(fmt.Sprintf("%s.delegations[%d]", path, i), "bad role %q: want targets or targets/<name>", d)
		}
		n.Delegations = append(n.Delegations, d)
	}
	if n.GUN == "" {
		n.GUN = DefaultNotaryGUN
	}
	t.Notary = n
	return t, len(c.p.errs) == before
}

// checkRootKey checks that data holds a PEM public key or certificate (the verifier parses it).
func (c *compiler) checkRootKey(path string, data []byte) bool {
	if block, _ := pem.Decode(data); block != nil && block.Type == "CERTIFICATE" {
		return true
	}
	return c.checkPEM(path, data)
}

// cosignOnly reports notary and Notation roots among the signers of what only cosign signs (attestations):
// Docker Content Trust signs tags, nothing else, and Portcullis verifies Notation signatures of images only. Left
// in, such a root would never sign the attestation and every image would be denied without saying why.
func (c *compiler) cosignOnly(path string, s Signers, what string) {
	for _, name := range s.Roots() {
		switch td := c.doc.Trust[name]; {
		case td == nil:
		case td.Notary != nil:
			c.p.add(path, "%s is a notary root: Docker Content Trust signs tags, not %s", name, what)
		case td.Notation != nil:
			c.p.add(path, "%s is a Notation root: Portcullis verifies Notation signatures of images, not of %s; sign %s with cosign", name, what, what)
		}
	}
}
