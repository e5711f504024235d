package policy

import (
	"encoding/json"
	"encoding/pem"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// defaultScannerTimeout bounds one on-demand scan when the policy does not say.
const defaultScannerTimeout = 5 * time.Minute

// trustRoot compiles one trust root, reading the files it names.
func (c *compiler) trustRoot(path, name string, td *trustDoc) (TrustRoot, bool) {
	t := TrustRoot{Name: name}
	if !nameRE.MatchString(name) {
		c.p.add(path, "bad name %q: use letters, digits, '.', '_' and '-'", name)
	}
	if td == nil {
		c.p.add(path, "empty trust root: give one of "+trustKinds)
		return t, false
	}
	n := 0
	// One entry per kind of root; a new kind adds its field here and a case below.
	for _, set := range []bool{td.Key != "", td.KeyData != "", td.Keyless != nil, td.Notation != nil, td.Notary != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		c.p.add(path, "needs one of "+trustKinds)
		return t, false
	case n > 1:
		c.p.add(path, "give only one of "+trustKinds)
		return t, false
	case td.Notary != nil:
		return c.notaryRoot(path, t, td)
	}
	ok := true
	switch {
	case td.Key != "":
		data, read := c.file(join(path, "key"), td.Key)
		ok = read && c.checkPEM(join(path, "key"), data)
		t.KeyPEM = data
	case td.KeyData != "":
		t.KeyPEM = []byte(td.KeyData)
		ok = c.checkPEM(join(path, "keyData"), t.KeyPEM)
	case td.Notation != nil:
		t.Notation, ok = c.notation(join(path, "notation"), td.Notation)
		if td.IgnoreTlog != nil || td.IgnoreSCT != nil {
			c.p.add(path, "ignoreTlog and ignoreSCT apply to cosign roots only")
			ok = false
		}
		return t, ok
	default:
		t.Keyless, ok = c.keyless(join(path, "keyless"), td.Keyless)
	}
	// Offline key signing leaves no transparency-log entry, so key roots skip the proof
	// unless told otherwise; keyless certificates are short-lived and need it.
	t.IgnoreTlog = t.Keyless == nil
	if td.IgnoreTlog != nil {
		t.IgnoreTlog = *td.IgnoreTlog
	}
	if td.IgnoreSCT != nil {
		if t.Keyless == nil {
			c.p.add(join(path, "ignoreSCT"), "applies to keyless roots only")
			ok = false
		}
		t.IgnoreSCT = *td.IgnoreSCT
	}
	return t, ok
}

// trustKinds lists the kinds of trust root, for messages.
const trustKinds = "key, keyData, keyless, notation, notary"

// checkPEM checks that data holds a PEM public key (it is parsed by the verifier).
func (c *compiler) checkPEM(path string, data []byte) bool {
	block, _ := pem.Decode(data)
	switch {
	case block == nil:
		c.p.add(path, "no PEM block found; want a PEM public key (-----BEGIN PUBLIC KEY-----)")
	case strings.Contains(block.Type, "PRIVATE"):
		c.p.add(path, "is a private key (%s); give the public key", block.Type)
	case !strings.HasSuffix(block.Type, "PUBLIC KEY"):
		c.p.add(path, "PEM block is %q; want a PUBLIC KEY", block.Type)
	default:
		return true
	}
	return false
}

// keyless compiles a certificate identity and reads its trusted root.
func (c *compiler) keyless(path string, kd *keylessDoc) (*Keyless, bool) {
	k := &Keyless{
		Issuer:        kd.Issuer,
		IssuerRegExp:  kd.IssuerRegExp,
		Subject:       kd.Subject,
		SubjectRegExp: kd.SubjectRegExp,
	}
	before := len(c.p.errs)
	if kd.TrustedRoot == "" {
		c.p.add(join(path, "trustedRoot"), "required: the Sigstore trusted_root.json to verify certificates with")
	} else if data, ok := c.file(join(path, "trustedRoot"), kd.TrustedRoot); ok {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			c.p.add(join(path, "trustedRoot"), "%s is not a JSON object: %v", kd.TrustedRoot, err)
		}
		k.TrustedRootJSON = data
	}
	c.identity(path, "issuer", kd.Issuer, kd.IssuerRegExp)
	c.identity(path, "subject", kd.Subject, kd.SubjectRegExp)
	return k, len(c.p.errs) == before
}

// identity checks one exact-or-regexp pair: exactly one given, the regexp compiling.
func (c *compiler) identity(path, field, exact, re string) {
	switch {
	case exact != "" && re != "":
		c.p.add(join(path, field), "give one of %s and %sRegExp, not both", field, field)
	case exact == "" && re == "":
		c.p.add(path, "needs %s or %sRegExp", field, field)
	case re != "":
		if _, err := regexp.Compile(re); err != nil {
			c.p.add(join(path, field+"RegExp"), "bad regexp: %s", reErr(err))
		}
	}
}

// scanner compiles one scanner.
func (c *compiler) scanner(path, name string, sd *scannerDoc) (Scanner, bool) {
	s := Scanner{Name: name, Timeout: defaultScannerTimeout}
	before := len(c.p.errs)
	if !nameRE.MatchString(name) {
		c.p.add(path, "bad name %q: use letters, digits, '.', '_' and '-'", name)
	}
	if sd == nil {
		c.p.add(path, "empty scanner: url is required")
		return s, false
	}
	s.URL, s.PullURL = sd.URL, sd.PullURL
	switch sd.Kind {
	case "", "harbor":
	case string(ScannerClair):
		s.Kind = ScannerClair
	default:
		c.p.add(join(path, "kind"), "must be harbor or clair, not %q", sd.Kind)
	}
	if sd.URL == "" {
		c.p.add(join(path, "url"), "required")
	} else {
		c.httpURL(join(path, "url"), sd.URL)
	}
	if sd.PullURL != "" {
		c.httpURL(join(path, "pullURL"), sd.PullURL)
	}
	if sd.Timeout != "" {
		if d, ok := c.duration(join(path, "timeout"), sd.Timeout); ok {
			if d == 0 {
				c.p.add(join(path, "timeout"), "must be positive")
			}
			s.Timeout = d
		}
	}
	return s, len(c.p.errs) == before
}

// httpURL checks an absolute http or https URL.
func (c *compiler) httpURL(path, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		c.p.add(path, "bad URL %q", s)
	case u.Scheme != "http" && u.Scheme != "https":
		c.p.add(path, "bad URL %q: want http:// or https://", s)
	case u.Host == "":
		c.p.add(path, "bad URL %q: no host", s)
	}
}

// duration parses a duration field, reporting a bad one.
func (c *compiler) duration(path, s string) (time.Duration, bool) {
	d, err := parseDuration(s)
	if err != nil {
		c.p.add(path, "%v", err)
		return 0, false
	}
	return d, true
}
