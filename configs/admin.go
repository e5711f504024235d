package configs

import (
	"crypto/x509"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

// MinAdminTokenLength is the shortest token admin.tokens accepts. Tokens are kept only as SHA-256 hashes, which
// is safe for random secrets only: 16 characters is the floor, `openssl rand -hex 32` (64) the advice. The single
// admin.token of earlier versions is not held to it (a start-up warning says so) so that no existing setup breaks.
const MinAdminTokenLength = 16

// AdminToken is one named admin token: a principal's name and role and where its secret is read from.
type AdminToken struct {
	// Name is the principal's name, the actor of the audit records its changes write: letters, digits, '.', '_',
	// '-', '@', at most 64. Required; unique, and not "admin" when admin.token or admin.tokenFile is set.
	Name string `yaml:"name"`
	// Role is read (lists, audit, explain, preview) or write (everything). Required.
	Role string `yaml:"role"`
	// TokenFile is a file holding the token (trailing newline ignored). One of TokenFile and TokenEnv. Default "".
	TokenFile string `yaml:"tokenFile,omitempty"`
	// TokenEnv is the environment variable holding the token. One of TokenFile and TokenEnv. Default "".
	TokenEnv string `yaml:"tokenEnv,omitempty"`
}

// AdminTLS makes the admin listener serve HTTPS and, with a client CA, take verified client certificates as
// credentials.
type AdminTLS struct {
	// Cert is the PEM certificate chain file. Default "" (plain HTTP).
	Cert string `yaml:"cert,omitempty"`
	// Key is the PEM private key file; with Cert. Default "".
	Key string `yaml:"key,omitempty"`
	// ClientCA is a PEM bundle of the CAs whose client certificates authenticate (mutual TLS); needs Cert and
	// Key. A certificate that does not chain to it fails the TLS handshake; a request without one may still use
	// a token. Default "" (no client certificates).
	ClientCA string `yaml:"clientCA,omitempty"`
	// ClientRole is the role of a verified client certificate that Clients does not name: it authenticates as
	// its subject common name with this role. read, write or none (refused). Default read.
	ClientRole string `yaml:"clientRole,omitempty"`
	// Clients map certificates, by subject common name, to a principal name and role. Default none.
	Clients []AdminClient `yaml:"clients,omitempty"`
}

// Enabled reports whether the admin listener serves TLS.
func (t AdminTLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

// AdminClient maps a client certificate to a principal.
type AdminClient struct {
	// CommonName is the certificate subject's common name (CN). Required; unique.
	CommonName string `yaml:"commonName"`
	// Name is the principal's name in the audit log. Default: CommonName.
	Name string `yaml:"name,omitempty"`
	// Role is read or write. Required.
	Role string `yaml:"role"`
}

// PrincipalName is the name the certificate authenticates as: Name, else CommonName.
func (c AdminClient) PrincipalName() string {
	if c.Name != "" {
		return c.Name
	}
	return c.CommonName
}

// AdminCredential is an admin token with its secret read, for the admin API to hash.
type AdminCredential struct {
	Name  string
	Role  string
	Token string
	// Field is where the token came from: "admin.token", "admin.tokenFile" or "admin.tokens[i]".
	Field string
}

// Legacy reports whether the credential is the single token of earlier versions (admin.token, admin.tokenFile
// or PORTCULLIS_ADMIN_TOKEN), which is not held to MinAdminTokenLength.
func (c AdminCredential) Legacy() bool { return !strings.HasPrefix(c.Field, "admin.tokens[") }

// principalName is what a principal's name may be (the admin API checks the same): it travels into logs and
// audit records as it stands.
var principalName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// envVarName is a portable environment variable name.
var envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// legacyAdminName is the principal the single admin.token authenticates as.
const legacyAdminName = "admin"

// validateAdmin checks the admin section's meaning.
func (c *Config) validateAdmin(p *strictyaml.Problems) {
	a := c.Admin
	t := a.TLS
	if (t.Cert == "") != (t.Key == "") {
		p.Add("admin.tls", "cert and key must be given together")
	}
	if t.ClientCA != "" && !t.Enabled() {
		p.Add("admin.tls.clientCA", "needs admin.tls.cert and admin.tls.key: client certificates are verified only over TLS")
	}
	if !a.Enabled() {
		if t.Enabled() || len(t.Clients) > 0 || t.ClientRole != "" {
			p.Add("admin.tls", "set, but the admin API has no credential (admin.tokens, admin.token, admin.tokenFile or admin.tls.clientCA), so it is off")
		}
		return
	}
	checkAddr(p, "admin.listen", a.Listen, false)
	if !strings.HasSuffix(a.Listen, ":0") && (a.Listen == c.Listen || a.Listen == c.OpsListen) {
		p.Add("admin.listen", "must be its own listener, not %s", a.Listen)
	}
	if a.Token != "" && a.TokenFile != "" {
		p.Add("admin.tokenFile", "set token or tokenFile, not both")
	}
	names := map[string]string{}
	if a.Token != "" || a.TokenFile != "" {
		names[legacyAdminName] = "the single admin.token (or tokenFile, or PORTCULLIS_ADMIN_TOKEN)"
	}
	for i, tok := range a.Tokens {
		at := fmt.Sprintf("admin.tokens[%d]", i)
		switch {
		case tok.Name == "":
			p.Add(at+".name", "is required")
		case !principalName.MatchString(tok.Name):
			p.Add(at+".name", "%q: want letters, digits, '.', '_', '-' or '@', at most 64, starting with a letter or digit", tok.Name)
		case names[tok.Name] != "":
			p.Add(at+".name", "%q is already the name of %s", tok.Name, names[tok.Name])
		default:
			names[tok.Name] = at
		}
		checkRole(p, at+".role", tok.Role)
		switch {
		case tok.TokenFile == "" && tok.TokenEnv == "":
			p.Add(at, "needs tokenFile or tokenEnv")
		case tok.TokenFile != "" && tok.TokenEnv != "":
			p.Add(at+".tokenEnv", "set tokenFile or tokenEnv, not both")
		case tok.TokenEnv != "" && !envVarName.MatchString(tok.TokenEnv):
			p.Add(at+".tokenEnv", "%q is not an environment variable name", tok.TokenEnv)
		}
	}
	switch t.ClientRole {
	case "", "read", "write", "none":
	default:
		p.Add("admin.tls.clientRole", "must be read, write or none, not %q", t.ClientRole)
	}
	if len(t.Clients) > 0 && t.ClientCA == "" {
		p.Add("admin.tls.clients", "needs admin.tls.clientCA: without it no client certificate is asked for")
	}
	cns := map[string]int{}
	for i, cl := range t.Clients {
		at := fmt.Sprintf("admin.tls.clients[%d]", i)
		if cl.CommonName == "" {
			p.Add(at+".commonName", "is required")
		} else if j, dup := cns[cl.CommonName]; dup {
			p.Add(at+".commonName", "%q is already mapped by admin.tls.clients[%d]", cl.CommonName, j)
		} else {
			cns[cl.CommonName] = i
		}
		if n := cl.PrincipalName(); n != "" && !principalName.MatchString(n) {
			field := ".name"
			if cl.Name == "" {
				field = ".commonName"
			}
			p.Add(at+field, "%q is not a valid principal name (letters, digits, '.', '_', '-' or '@', at most 64); set name", n)
		}
		checkRole(p, at+".role", cl.Role)
	}
}

// checkRole checks a role field: read or write.
func checkRole(p *strictyaml.Problems, path, role string) {
	if role != "read" && role != "write" {
		p.Add(path, "must be read or write, not %q", role)
	}
}

// checkAdminFiles checks the admin TLS files and reads every admin token (CheckFiles).
func (c *Config) checkAdminFiles(p *strictyaml.Problems) {
	t := c.Admin.TLS
	exists(p, "admin.tls.cert", t.Cert)
	exists(p, "admin.tls.key", t.Key)
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		switch {
		case err != nil:
			p.Add("admin.tls.clientCA", "%v", err)
		case !x509.NewCertPool().AppendCertsFromPEM(pem):
			p.Add("admin.tls.clientCA", "%s holds no PEM certificate", t.ClientCA)
		}
	}
	c.adminCredentials(p)
}

// AdminCredentials returns every admin token with its secret read: the single admin.token (or tokenFile) as a
// write token named "admin", then admin.tokens in order. A tokenEnv is read by ApplyEnv (Load calls it), so a
// configuration built in code calls ApplyEnv after setting admin.tokens. A token file that cannot be read or is
// empty, a variable that is unset, a named token shorter than MinAdminTokenLength, or one token under two names is
// an *Error naming the field.
func (c *Config) AdminCredentials() ([]AdminCredential, error) {
	p := &strictyaml.Problems{Source: c.src}
	creds := c.adminCredentials(p)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return creds, nil
}

func (c *Config) adminCredentials(p *strictyaml.Problems) []AdminCredential {
	a := c.Admin
	var creds []AdminCredential
	switch {
	case a.TokenFile != "":
		if tok, ok := readTokenFile(p, "admin.tokenFile", a.TokenFile); ok {
			creds = append(creds, AdminCredential{Name: legacyAdminName, Role: "write", Token: tok, Field: "admin.tokenFile"})
		}
	case a.Token != "":
		creds = append(creds, AdminCredential{Name: legacyAdminName, Role: "write", Token: a.Token, Field: "admin.token"})
	}
	for i, t := range a.Tokens {
		at := fmt.Sprintf("admin.tokens[%d]", i)
		var tok string
		switch {
		case t.TokenFile != "":
			v, ok := readTokenFile(p, at+".tokenFile", t.TokenFile)
			if !ok {
				continue
			}
			tok = v
		case t.TokenEnv != "":
			tok = c.adminEnv[t.TokenEnv]
			if tok == "" {
				p.Add(at+".tokenEnv", "%s is not set or empty", t.TokenEnv)
				continue
			}
		default:
			continue // Validate says so
		}
		if len(tok) < MinAdminTokenLength {
			p.Add(at, "the token is %d characters, want at least %d (a random secret, e.g. openssl rand -hex 32)", len(tok), MinAdminTokenLength)
			continue
		}
		creds = append(creds, AdminCredential{Name: t.Name, Role: t.Role, Token: tok, Field: at})
	}
	for i := range creds {
		for j := range i {
			if creds[i].Token == creds[j].Token {
				p.Add(creds[i].Field, "holds the same token as %s; each name needs its own token, or the audit log cannot tell them apart", creds[j].Field)
			}
		}
	}
	return creds
}

// readTokenFile reads a token file, its trailing newline dropped; a missing or empty file is a problem at path.
func readTokenFile(p *strictyaml.Problems, path, file string) (string, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		p.Add(path, "%v", err)
		return "", false
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if tok == "" {
		p.Add(path, "%s is empty", file)
		return "", false
	}
	return tok, true
}
