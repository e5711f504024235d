package policy

import (
	"encoding/pem"
	"strings"
)

// Notation is a Notation (Notary Project) trust root: X.509 certificates a signature's chain
// must end in, and the signer identities that count. The verifier checks signatures with
// notation-go at its strict level (integrity, authenticity, trusted identity, expiry, the
// timestamp countersignature when TSAPEM is set), offline: certificate revocation is not
// fetched.
type Notation struct {
	// CAPEM holds the PEM certificates of the "ca" trust store (roots of the signing chain);
	// SigningAuthorityPEM those of the "signingAuthority" store (for signing scheme
	// notary.x509.signingAuthority). At least one is set.
	CAPEM, SigningAuthorityPEM []byte
	// TSAPEM holds the PEM root certificates of the timestamp authorities trusted for the
	// timestamp countersignature. When set, every signature must carry a timestamp from one
	// of them, and the signing certificate must have been valid at its time (so it may have
	// expired since). nil means no timestamp is looked at and the signing certificate must be
	// valid now. Default nil.
	TSAPEM []byte
	// Identities lists the trusted identities as Notation's trust policy writes them:
	// "x509.subject: C=US, ST=WA, O=Acme, CN=acme", or "*" for any identity the trust store
	// vouches for. Not empty.
	Identities []string
}

// notation compiles a Notation root, reading its trust store files or directories.
func (c *compiler) notation(path string, nd *notationDoc) (*Notation, bool) {
	n := &Notation{Identities: nd.Identities}
	before := len(c.p.errs)
	if nd.TrustStore == "" && nd.SigningAuthority == "" {
		c.p.add(path, "needs trustStore (CA certificates) or signingAuthority")
	}
	read := func(field, name string) []byte {
		if name == "" {
			return nil
		}
		data, ok := c.file(join(path, field), name)
		if ok {
			c.checkCerts(join(path, field), data)
		}
		return data
	}
	n.CAPEM = read("trustStore", nd.TrustStore)
	n.SigningAuthorityPEM = read("signingAuthority", nd.SigningAuthority)
	n.TSAPEM = read("tsa", nd.TSA)
	if len(nd.Identities) == 0 {
		c.p.add(join(path, "identities"), `required: "x509.subject: ..." entries, or "*" for any`)
	}
	for i, id := range nd.Identities {
		if id != "*" && !strings.HasPrefix(id, "x509.subject:") {
			c.p.add(join(path, "identities"), `entry %d %q: want "x509.subject: <DN>" or "*"`, i, id)
		}
	}
	return n, len(c.p.errs) == before
}

// checkCerts checks that data holds PEM certificates and nothing else that PEM decodes to.
func (c *compiler) checkCerts(path string, data []byte) {
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			c.p.add(path, "PEM block is %q; want CERTIFICATE", block.Type)
			return
		}
		n++
	}
	if n == 0 {
		c.p.add(path, "no PEM certificate found")
	}
}
