package policy

import "github.com/portcullis/portcullis/internal/strictyaml"

// The types in this file are the policy file as written: plain data, decoded strictly and not
// yet checked. Compile turns them into a Policy. Strings stand for durations, dates and enums
// so that a bad value is reported by Compile with its field path; pointers tell a field left
// out from its zero value.

// document is a whole policy file.
type document struct {
	Trust     map[string]*trustDoc   `yaml:"trust"`
	Scanners  map[string]*scannerDoc `yaml:"scanners"`
	Allowlist []*allowDoc            `yaml:"allowlist"`
	Rules     []*ruleDoc             `yaml:"rules"`
	Default   *ruleDoc               `yaml:"default"`
}

// trustDoc is one named trust root: exactly one of its kinds (Key, KeyData, Keyless, Notation, Notary).
type trustDoc struct {
	Key        string       `yaml:"key"`
	KeyData    string       `yaml:"keyData"`
	Keyless    *keylessDoc  `yaml:"keyless"`
	Notation   *notationDoc `yaml:"notation"`
	Notary     *notaryDoc   `yaml:"notary"`
	IgnoreTlog *bool        `yaml:"ignoreTlog"`
	IgnoreSCT  *bool        `yaml:"ignoreSCT"`
}

// keylessDoc is a Fulcio certificate identity and the trusted root that vouches for it.
type keylessDoc struct {
	TrustedRoot   string `yaml:"trustedRoot"`
	Issuer        string `yaml:"issuer"`
	IssuerRegExp  string `yaml:"issuerRegExp"`
	Subject       string `yaml:"subject"`
	SubjectRegExp string `yaml:"subjectRegExp"`
}

// notationDoc is a Notation (Notary Project) trust store with the identities it trusts.
type notationDoc struct {
	TrustStore       string   `yaml:"trustStore"`
	SigningAuthority string   `yaml:"signingAuthority"`
	TSA              string   `yaml:"tsa"`
	Identities       []string `yaml:"identities"`
}

// scannerDoc is one scanner: a Harbor Pluggable Scanner API adapter or a Clair v4.
type scannerDoc struct {
	Kind    string `yaml:"kind"`
	URL     string `yaml:"url"`
	Timeout string `yaml:"timeout"`
	PullURL string `yaml:"pullURL"`
}

// allowDoc is one CVE allowlist entry.
type allowDoc struct {
	ID     string `yaml:"id"`
	Until  string `yaml:"until"`
	Reason string `yaml:"reason"`
}

// ruleDoc is one rule, or the default rule (which may not have Name or Match).
type ruleDoc struct {
	Name         string            `yaml:"name"`
	Match        *matchDoc         `yaml:"match"`
	Mode         string            `yaml:"mode"`
	SignedBy     *signersDoc       `yaml:"signedBy"`
	KeepLastGood bool              `yaml:"keepLastGood"`
	OnError      string            `yaml:"onError"`
	Attestations []*attestationDoc `yaml:"attestations"`
	Scan         *scanDoc          `yaml:"scan"`
	Rego         *regoDoc          `yaml:"rego"`
	RegoFile     string            `yaml:"regoFile"`
}

// matchDoc selects the repositories a rule applies to.
type matchDoc struct {
	Upstream   string `yaml:"upstream"`
	Repository string `yaml:"repository"`
}

// signersDoc names trust roots: exactly one of AnyOf and AllOf, not empty.
type signersDoc struct {
	AnyOf []string `yaml:"anyOf"`
	AllOf []string `yaml:"allOf"`
}

// attestationDoc requires one in-toto predicate type.
type attestationDoc struct {
	PredicateType string          `yaml:"predicateType"`
	SignedBy      *signersDoc     `yaml:"signedBy"`
	Conditions    []*conditionDoc `yaml:"conditions"`
}

// conditionDoc tests one value of the predicate: exactly one of Equals, Matches and In.
type conditionDoc struct {
	Path    string   `yaml:"path"`
	Equals  *string  `yaml:"equals"`
	Matches *string  `yaml:"matches"`
	In      []string `yaml:"in"`
}

// scanDoc is the vulnerability scan gate.
type scanDoc struct {
	MaxSeverity   string      `yaml:"maxSeverity"`
	IgnoreUnfixed bool        `yaml:"ignoreUnfixed"`
	MaxAge        string      `yaml:"maxAge"`
	SignedBy      *signersDoc `yaml:"signedBy"`
	Sources       []string    `yaml:"sources"`
	OnMissing     string      `yaml:"onMissing"`
	WaitTimeout   string      `yaml:"waitTimeout"`
	Scanner       string      `yaml:"scanner"`
	Allow         []*allowDoc `yaml:"allow"`
}

// decodeDocument strictly decodes one YAML document into doc: an unknown field, a duplicate
// key or a value of the wrong type is an *Error naming the file, line and field path. It
// records the line of every field path it sees in src. An empty document leaves doc as is.
func decodeDocument(data []byte, src *source, doc *document) error {
	return strictyaml.Decode(data, src.shared(), doc, strictyaml.Root("policy"))
}
