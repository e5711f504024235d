package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// defaultRuleName is the name of the rule for repositories no named rule matches.
const defaultRuleName = "default"

// nameRE is what trust root, scanner and rule names may look like: they appear in messages,
// logs and metrics.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// compiler turns a decoded document into a Policy, collecting every problem it finds.
type compiler struct {
	p        *problems
	doc      *document
	dir      string
	readFile func(string) ([]byte, error)
	global   []allowEntry
	modules  ModuleCompiler      // nil: a rule with a Rego module is an error
	idents   map[string]Identity // each trust root's identity, for the modules' input
}

func compile(doc *document, src *source, readFile func(string) ([]byte, error), o options) (*Policy, error) {
	c := &compiler{
		p:        &problems{src: src},
		doc:      doc,
		dir:      filepath.Dir(src.file),
		readFile: readFile,
		modules:  o.modules,
	}
	pol := &Policy{roots: map[string]TrustRoot{}, scanners: map[string]Scanner{}}
	for _, name := range sortedKeys(doc.Trust) {
		if t, ok := c.trustRoot(join("trust", name), name, doc.Trust[name]); ok {
			pol.roots[name] = t
		}
	}
	for _, name := range sortedKeys(doc.Scanners) {
		if s, ok := c.scanner(join("scanners", name), name, doc.Scanners[name]); ok {
			pol.scanners[name] = s
		}
	}
	c.global = c.allowlist("allowlist", doc.Allowlist)
	c.idents = identities(pol.roots)

	first := map[string]string{} // rule name -> path where it was first defined
	for i, rd := range doc.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		if rd == nil {
			c.p.add(path, "empty rule")
			continue
		}
		r := c.rule(path, rd, false)
		r.index = i
		switch {
		case rd.Name == "":
			c.p.add(join(path, "name"), "required")
		case rd.Name == defaultRuleName:
			c.p.add(join(path, "name"), "%q is reserved for the default section", rd.Name)
		case !nameRE.MatchString(rd.Name):
			c.p.add(join(path, "name"), "bad name %q: use letters, digits, '.', '_' and '-'", rd.Name)
		case first[rd.Name] != "":
			c.p.add(join(path, "name"), "duplicate rule name %q (first at line %d)", rd.Name, c.p.src.lines[first[rd.Name]])
		default:
			first[rd.Name] = join(path, "name")
		}
		pol.rules = append(pol.rules, r)
	}
	if doc.Default != nil {
		if doc.Default.Name != "" {
			c.p.add("default.name", "not allowed: the default rule is named %q", defaultRuleName)
		}
		if doc.Default.Match != nil {
			c.p.add("default.match", "not allowed: the default rule applies to every repository no rule matches")
		}
		pol.def = c.rule("default", doc.Default, true)
	} else {
		// No default section: what no rule matches is denied, never silently admitted.
		pol.def = c.rule("default", &ruleDoc{}, true)
		pol.def.unmatched = true
	}
	pol.def.index = -1
	if err := c.p.err(); err != nil {
		return nil, err
	}
	pol.hash = hashPolicy(pol)
	return pol, nil
}

// rule compiles one rule document; for the default rule, name and match are left out.
func (c *compiler) rule(path string, rd *ruleDoc, isDefault bool) *Rule {
	r := &Rule{name: rd.Name, keepLastGood: rd.KeepLastGood, global: c.global}
	if isDefault {
		r.name = defaultRuleName
	} else {
		m := rd.Match
		if m == nil {
			m = &matchDoc{}
		}
		r.upstream = c.pattern(join(path, "match.upstream"), strings.ToLower(m.Upstream), "*", ".-:_")
		if strings.Contains(m.Upstream, "/") {
			c.p.add(join(path, "match.upstream"), "bad pattern %q: an upstream is a host[:port], without \"/\"", m.Upstream)
		}
		r.repository = c.pattern(join(path, "match.repository"), m.Repository, "**", "._-")
	}

	switch Mode(rd.Mode) {
	case "":
		r.mode = ModeEnforce
	case ModeEnforce, ModeWarn, ModeAudit:
		r.mode = Mode(rd.Mode)
	default:
		c.p.add(join(path, "mode"), "must be enforce, warn or audit, not %q", rd.Mode)
	}
	switch OnError(rd.OnError) {
	case "":
		r.onError = OnErrorDeny
	case OnErrorDeny, OnErrorAllow:
		r.onError = OnError(rd.OnError)
	default:
		c.p.add(join(path, "onError"), "must be deny or allow, not %q", rd.OnError)
	}
	if rd.SignedBy != nil {
		r.signedBy = c.signers(join(path, "signedBy"), rd.SignedBy)
	}
	for i, ad := range rd.Attestations {
		if a := c.attestation(fmt.Sprintf("%s.attestations[%d]", path, i), ad, r.signedBy); a != nil {
			r.attestations = append(r.attestations, a)
		}
	}
	if rd.Scan != nil {
		r.scan = c.scan(join(path, "scan"), rd.Scan, r.signedBy)
	}
	if r.module = c.module(path, r.name, rd); r.module != nil {
		r.identities = c.idents
	}
	return r
}

// pattern compiles a match glob, def when s is empty. A bad pattern is reported and replaced
// by one that matches nothing, so that compiling can go on.
func (c *compiler) pattern(path, s, def, allowed string) *glob {
	if s == "" {
		s = def
	}
	g, err := compileGlob(s, allowed)
	if err != nil {
		c.p.add(path, "%v", err)
		return &glob{pattern: s, exact: true}
	}
	return g
}

// signers compiles anyOf/allOf: exactly one, not empty, naming defined trust roots once each.
func (c *compiler) signers(path string, sd *signersDoc) Signers {
	switch {
	case len(sd.AnyOf) > 0 && len(sd.AllOf) > 0:
		c.p.add(path, "give one of anyOf and allOf, not both")
		return Signers{}
	case len(sd.AnyOf) == 0 && len(sd.AllOf) == 0:
		c.p.add(path, "needs anyOf or allOf with at least one trust root")
		return Signers{}
	}
	field, names := "anyOf", sd.AnyOf
	if len(sd.AllOf) > 0 {
		field, names = "allOf", sd.AllOf
	}
	seen := map[string]bool{}
	for i, name := range names {
		ip := fmt.Sprintf("%s.%s[%d]", path, field, i)
		if _, ok := c.doc.Trust[name]; !ok {
			c.p.add(ip, "unknown trust root %q (%s)", name, known("trust", sortedKeys(c.doc.Trust)))
		} else if seen[name] {
			c.p.add(ip, "trust root %q listed twice", name)
		}
		seen[name] = true
	}
	if field == "allOf" {
		return Signers{AllOf: names}
	}
	return Signers{AnyOf: names}
}

// known formats the defined names for an "unknown name" message.
func known(section string, names []string) string {
	if len(names) == 0 {
		return "the " + section + " section defines none"
	}
	return "known: " + strings.Join(names, ", ")
}

// attestation compiles one required attestation; ruleSigners is the fallback signedBy.
func (c *compiler) attestation(path string, ad *attestationDoc, ruleSigners Signers) *attestationRule {
	if ad == nil {
		c.p.add(path, "empty attestation requirement")
		return nil
	}
	a := &attestationRule{predicateType: ad.PredicateType, signedBy: ruleSigners}
	if strings.TrimSpace(ad.PredicateType) == "" {
		c.p.add(join(path, "predicateType"), "required")
	}
	switch {
	case ad.SignedBy != nil:
		a.signedBy = c.signers(join(path, "signedBy"), ad.SignedBy)
	case ruleSigners.IsZero():
		c.p.add(join(path, "signedBy"), "required (the rule has no signedBy to fall back on)")
	}
	c.cosignOnly(join(path, "signedBy"), a.signedBy, "attestations")
	for i, cd := range ad.Conditions {
		if cond := compileCondition(c.p, fmt.Sprintf("%s.conditions[%d]", path, i), cd); cond != nil {
			a.conditions = append(a.conditions, cond)
		}
	}
	return a
}

// file reads a file the policy names, relative to the policy file's directory.
func (c *compiler) file(path, name string) ([]byte, bool) {
	if c.readFile == nil {
		c.p.add(path, "cannot read %q: no file reader (use Load, or give Parse a readFile)", name)
		return nil, false
	}
	full := name
	if !filepath.IsAbs(full) {
		full = filepath.Join(c.dir, name)
	}
	data, err := c.readFile(full)
	if err != nil {
		c.p.add(path, "%v", err)
		return nil, false
	}
	return data, true
}
