package policy

import (
	"errors"
	"strings"
	"testing"
)

// trustHeader defines trust roots and a scanner on lines 1-5, for error tests to refer to.
const trustHeader = `trust:
  release: {key: keys/release.pub}
  ci: {key: keys/scanner.pub}
scanners:
  trivy: {url: http://trivy:8080}
`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // exact error text
	}{
		// Decoding.
		{"syntax", "rules: [\n", `p.yaml:1: invalid YAML: did not find expected node content`},
		{"two documents", "rules: []\n---\nrules: []\n", `p.yaml:2: more than one YAML document`},
		{"unknown top-level field", "rule: []\n", `p.yaml:1: unknown field "rule" in policy (did you mean "rules"?)`},
		{"unknown field in rule", "rules:\n  - name: a\n    sigendBy: {anyOf: [x]}\n", `p.yaml:3: unknown field "sigendBy" in rules[0] (did you mean "signedBy"?)`},
		{"unknown field in trust root", "trust:\n  r:\n    keyles: {}\n", `p.yaml:3: unknown field "keyles" in trust.r (did you mean "keyless"?)`},
		{"case suggests spelling", "default:\n  scan: {maxseverity: high}\n", `p.yaml:2: unknown field "maxseverity" in default.scan (did you mean "maxSeverity"?)`},
		{"duplicate key", "rules:\n  - name: a\n    name: b\n", `p.yaml:3: rules[0].name: duplicate key (first at line 2)`},
		{"duplicate trust root", "trust:\n  a: {key: k}\n  a: {key: k}\n", `p.yaml:3: trust.a: duplicate key (first at line 2)`},
		{"list for mapping", "default:\n  signedBy: [release]\n", `p.yaml:2: default.signedBy: expected a mapping, got a list`},
		{"scalar for list", "default:\n  signedBy: {anyOf: release}\n", `p.yaml:2: default.signedBy.anyOf: expected a list, got "release"`},
		{"string for bool", "default:\n  keepLastGood: yes\n", `p.yaml:2: default.keepLastGood: expected true or false, got "yes"`},
		{"mapping for string", "rules:\n  - name: {a: b}\n", `p.yaml:2: rules[0].name: expected a string, got a mapping`},
		{"empty rule", "rules:\n  - null\n", `p.yaml:2: rules[0]: empty rule`},

		// Trust roots.
		{"empty trust root", "trust:\n  r:\n", `p.yaml:2: trust.r: empty trust root: give one of key, keyData, keyless, notation, notary`},
		{"no key material", "trust:\n  r: {ignoreTlog: true}\n", `p.yaml:2: trust.r: needs one of key, keyData, keyless, notation, notary`},
		{"key and notation", "trust:\n  r:\n    key: keys/release.pub\n    notation: {trustStore: cert.pem, identities: ['*']}\n", `p.yaml:2: trust.r: give only one of key, keyData, keyless, notation, notary`},
		{"notation without store", "trust:\n  r:\n    notation: {identities: ['*']}\n", `p.yaml:3: trust.r.notation: needs trustStore (CA certificates) or signingAuthority`},
		{"notation without identities", "trust:\n  r:\n    notation: {trustStore: cert.pem}\n", `p.yaml:3: trust.r.notation.identities: required: "x509.subject: ..." entries, or "*" for any`},
		{"notation bad identity", "trust:\n  r:\n    notation: {trustStore: cert.pem, identities: ['CN=acme']}\n", `p.yaml:3: trust.r.notation.identities: entry 0 "CN=acme": want "x509.subject: <DN>" or "*"`},
		{"notation store is a key", "trust:\n  r:\n    notation: {trustStore: keys/release.pub, identities: ['*']}\n", `p.yaml:3: trust.r.notation.trustStore: PEM block is "PUBLIC KEY"; want CERTIFICATE`},
		{"notation tsa is a key", "trust:\n  r:\n    notation: {trustStore: cert.pem, tsa: keys/release.pub, identities: ['*']}\n", `p.yaml:3: trust.r.notation.tsa: PEM block is "PUBLIC KEY"; want CERTIFICATE`},
		{"notation tsa missing", "trust:\n  r:\n    notation: {trustStore: cert.pem, tsa: nope.pem, identities: ['*']}\n", `p.yaml:3: trust.r.notation.tsa: open nope.pem: file does not exist`},
		{"notation store missing", "trust:\n  r:\n    notation: {trustStore: nope.pem, identities: ['*']}\n", `p.yaml:3: trust.r.notation.trustStore: open nope.pem: file does not exist`},
		{"notation with ignoreTlog", "trust:\n  r:\n    notation: {trustStore: cert.pem, identities: ['*']}\n    ignoreTlog: true\n", `p.yaml:2: trust.r: ignoreTlog and ignoreSCT apply to cosign roots only`},
		{"unknown scanner kind", "scanners:\n  s: {kind: anchore, url: http://s}\n", `p.yaml:2: scanners.s.kind: must be harbor or clair, not "anchore"`},
		{"key and keyless", "trust:\n  r:\n    key: keys/release.pub\n    keyless: {trustedRoot: trusted_root.json, issuer: i, subject: s}\n", `p.yaml:2: trust.r: give only one of key, keyData, keyless, notation, notary`},
		{"key and keyData", "trust:\n  r: {key: keys/release.pub, keyData: x}\n", `p.yaml:2: trust.r: give only one of key, keyData, keyless, notation, notary`},
		{"notation and notary", "trust:\n  r:\n    notary: {server: https://n, rootKeys: [keys/release.pub]}\n    notation: {trustStore: cert.pem, identities: ['*']}\n", `p.yaml:2: trust.r: give only one of key, keyData, keyless, notation, notary`},
		{"bad root name", "trust:\n  \"my root\": {key: keys/release.pub}\n", `p.yaml:2: trust.my root: bad name "my root": use letters, digits, '.', '_' and '-'`},
		{"missing key file", "trust:\n  r:\n    key: keys/nope.pub\n", `p.yaml:3: trust.r.key: open keys/nope.pub: file does not exist`},
		{"private key", "trust:\n  r: {key: private.pem}\n", `p.yaml:2: trust.r.key: is a private key (EC PRIVATE KEY); give the public key`},
		{"certificate", "trust:\n  r: {key: cert.pem}\n", `p.yaml:2: trust.r.key: PEM block is "CERTIFICATE"; want a PUBLIC KEY`},
		{"keyData not PEM", "trust:\n  r:\n    keyData: hello\n", `p.yaml:3: trust.r.keyData: no PEM block found; want a PEM public key (-----BEGIN PUBLIC KEY-----)`},
		{"ignoreSCT on key", "trust:\n  r:\n    key: keys/release.pub\n    ignoreSCT: true\n", `p.yaml:4: trust.r.ignoreSCT: applies to keyless roots only`},
		{"keyless without trustedRoot", "trust:\n  r:\n    keyless:\n      issuer: i\n      subject: s\n", `p.yaml:3: trust.r.keyless.trustedRoot: required: the Sigstore trusted_root.json to verify certificates with`},
		{"keyless without issuer", "trust:\n  r:\n    keyless:\n      trustedRoot: trusted_root.json\n      subject: s\n", `p.yaml:3: trust.r.keyless: needs issuer or issuerRegExp`},
		{"keyless without subject", "trust:\n  r:\n    keyless:\n      trustedRoot: trusted_root.json\n      issuer: i\n", `p.yaml:3: trust.r.keyless: needs subject or subjectRegExp`},
		{"issuer and issuerRegExp", "trust:\n  r:\n    keyless:\n      trustedRoot: trusted_root.json\n      issuer: i\n      issuerRegExp: i\n      subject: s\n", `p.yaml:5: trust.r.keyless.issuer: give one of issuer and issuerRegExp, not both`},
		{"bad subjectRegExp", "trust:\n  r:\n    keyless:\n      trustedRoot: trusted_root.json\n      issuer: i\n      subjectRegExp: '(acme'\n", "p.yaml:6: trust.r.keyless.subjectRegExp: bad regexp: missing closing ): `(acme`"},
		{"trustedRoot not JSON", "trust:\n  r:\n    keyless:\n      trustedRoot: keys/release.pub\n      issuer: i\n      subject: s\n", `p.yaml:4: trust.r.keyless.trustedRoot: keys/release.pub is not a JSON object: invalid character '-' in numeric literal`},
		{"missing trustedRoot file", "trust:\n  r:\n    keyless: {trustedRoot: /etc/tr.json, issuer: i, subject: s}\n", `p.yaml:3: trust.r.keyless.trustedRoot: open /etc/tr.json: file does not exist`},

		{"notary and key", "trust:\n  r:\n    key: keys/release.pub\n    notary: {server: https://n, rootKeys: [keys/release.pub]}\n", `p.yaml:2: trust.r: give only one of key, keyData, keyless, notation, notary`},
		{"notary without server", "trust:\n  r:\n    notary: {rootKeys: [keys/release.pub]}\n", `p.yaml:3: trust.r.notary.server: required: the notary server's URL, e.g. https://notary.docker.io`},
		{"notary bad server", "trust:\n  r:\n    notary: {server: notary:4443, rootKeys: [keys/release.pub]}\n", `p.yaml:3: trust.r.notary.server: bad URL "notary:4443": want http:// or https://`},
		{"notary without root keys", "trust:\n  r:\n    notary: {server: https://n}\n", `p.yaml:3: trust.r.notary: needs rootKeys (or rootKeyData): the collection's root public keys or certificates to pin`},
		{"notary private root key", "trust:\n  r:\n    notary: {server: https://n, rootKeys: [private.pem]}\n", `p.yaml:3: trust.r.notary.rootKeys[0]: is a private key (EC PRIVATE KEY); give the public key`},
		{"notary missing root key", "trust:\n  r:\n    notary: {server: https://n, rootKeys: [keys/release.pub, nope.pub]}\n", `p.yaml:3: trust.r.notary.rootKeys[1]: open nope.pub: file does not exist`},
		{"notary bad delegation", "trust:\n  r:\n    notary: {server: https://n, rootKeys: [cert.pem], delegations: [releases]}\n", `p.yaml:3: trust.r.notary.delegations[0]: bad role "releases": want targets or targets/<name>`},
		{"notary with ignoreTlog", "trust:\n  r:\n    notary: {server: https://n, rootKeys: [cert.pem]}\n    ignoreTlog: true\n", `p.yaml:3: trust.r.notary: ignoreTlog and ignoreSCT apply to cosign roots only`},

		{"notation root signing attestations", "trust:\n  n: {notation: {trustStore: cert.pem, identities: ['*']}}\ndefault:\n  signedBy: {anyOf: [n]}\n  attestations:\n    - predicateType: p\n", `p.yaml:6: default.attestations[0].signedBy: n is a Notation root: Portcullis verifies Notation signatures of images, not of attestations; sign attestations with cosign`},
		{"notary root signing attestations", "trust:\n  dct: {notary: {server: https://n, rootKeys: [cert.pem]}}\ndefault:\n  signedBy: {anyOf: [dct]}\n  attestations:\n    - predicateType: p\n", `p.yaml:6: default.attestations[0].signedBy: dct is a notary root: Docker Content Trust signs tags, not attestations`},

		// Scanners.
		{"scanner without url", "scanners:\n  trivy: {timeout: 1m}\n", `p.yaml:2: scanners.trivy.url: required`},
		{"scanner bad url", "scanners:\n  trivy:\n    url: trivy:8080\n", `p.yaml:3: scanners.trivy.url: bad URL "trivy:8080": want http:// or https://`},
		{"scanner bad timeout", "scanners:\n  trivy:\n    url: http://t\n    timeout: 10\n", `p.yaml:4: scanners.trivy.timeout: invalid duration "10" (want e.g. 30s, 5m, 24h, 7d)`},
		{"scanner zero timeout", "scanners:\n  trivy:\n    url: http://t\n    timeout: 0s\n", `p.yaml:4: scanners.trivy.timeout: must be positive`},

		// Rules.
		{"rule without name", "rules:\n  - mode: warn\n", `p.yaml:2: rules[0].name: required`},
		{"reserved name", "rules:\n  - name: default\n", `p.yaml:2: rules[0].name: "default" is reserved for the default section`},
		{"duplicate rule names", "rules:\n  - name: a\n  - name: b\n  - name: a\n", `p.yaml:4: rules[2].name: duplicate rule name "a" (first at line 2)`},
		{"default with name", "default:\n  name: d\n", `p.yaml:2: default.name: not allowed: the default rule is named "default"`},
		{"default with match", "default:\n  match: {repository: x}\n", `p.yaml:2: default.match: not allowed: the default rule applies to every repository no rule matches`},
		{"bad mode", "rules:\n  - name: a\n    mode: enforcing\n", `p.yaml:3: rules[0].mode: must be enforce, warn or audit, not "enforcing"`},
		{"bad onError", "default:\n  onError: ignore\n", `p.yaml:2: default.onError: must be deny or allow, not "ignore"`},
		{"bad glob", "rules:\n  - name: a\n    match:\n      repository: acme/x**\n", `p.yaml:4: rules[0].match.repository: bad pattern "acme/x**": ** must be a whole path segment`},
		{"upper-case glob", "rules:\n  - name: a\n    match: {repository: Acme/*}\n", `p.yaml:3: rules[0].match.repository: bad pattern "Acme/*": names are lower-case`},
		{"glob empty segment", "rules:\n  - name: a\n    match: {repository: acme//x}\n", `p.yaml:3: rules[0].match.repository: bad pattern "acme//x": empty path segment`},
		{"glob bad character", "rules:\n  - name: a\n    match: {repository: 'acme/[ab]'}\n", `p.yaml:3: rules[0].match.repository: bad pattern "acme/[ab]": character '[' is not allowed`},
		{"upstream with slash", "rules:\n  - name: a\n    match: {upstream: ghcr.io/acme}\n", `p.yaml:3: rules[0].match.upstream: bad pattern "ghcr.io/acme": an upstream is a host[:port], without "/"`},

		// Signers.
		{"unknown trust root", trustHeader + "rules:\n  - name: a\n    signedBy:\n      anyOf:\n        - release\n        - relase\n", `p.yaml:11: rules[0].signedBy.anyOf[1]: unknown trust root "relase" (known: ci, release)`},
		{"no trust roots defined", "default:\n  signedBy: {allOf: [release]}\n", `p.yaml:2: default.signedBy.allOf[0]: unknown trust root "release" (the trust section defines none)`},
		{"anyOf and allOf", trustHeader + "default:\n  signedBy: {anyOf: [release], allOf: [ci]}\n", `p.yaml:7: default.signedBy: give one of anyOf and allOf, not both`},
		{"empty anyOf", trustHeader + "default:\n  signedBy: {anyOf: []}\n", `p.yaml:7: default.signedBy: needs anyOf or allOf with at least one trust root`},
		{"empty signedBy", trustHeader + "default:\n  signedBy: {}\n", `p.yaml:7: default.signedBy: needs anyOf or allOf with at least one trust root`},
		{"root listed twice", trustHeader + "default:\n  signedBy: {anyOf: [release, release]}\n", `p.yaml:7: default.signedBy.anyOf[1]: trust root "release" listed twice`},

		// Attestations.
		{"attestation without predicateType", trustHeader + "default:\n  attestations:\n    - signedBy: {anyOf: [ci]}\n", `p.yaml:8: default.attestations[0].predicateType: required`},
		{"attestation without signers", "default:\n  attestations:\n    - predicateType: x\n", `p.yaml:3: default.attestations[0].signedBy: required (the rule has no signedBy to fall back on)`},
		{"attestation unknown root", trustHeader + "default:\n  attestations:\n    - predicateType: x\n      signedBy: {anyOf: [gh]}\n", `p.yaml:9: default.attestations[0].signedBy.anyOf[0]: unknown trust root "gh" (known: ci, release)`},
		{"condition bad regexp", trustHeader + "default:\n  signedBy: {anyOf: [ci]}\n  attestations:\n    - predicateType: x\n      conditions:\n        - path: builder.id\n          matches: '[a-'\n", "p.yaml:12: default.attestations[0].conditions[0].matches: bad regexp: missing closing ]: `[a-`"},
		{"condition two tests", trustHeader + "default:\n  signedBy: {anyOf: [ci]}\n  attestations:\n    - predicateType: x\n      conditions:\n        - {path: a, equals: b, in: [c]}\n", `p.yaml:11: default.attestations[0].conditions[0]: needs exactly one of equals, matches and in`},
		{"condition no test", trustHeader + "default:\n  signedBy: {anyOf: [ci]}\n  attestations:\n    - predicateType: x\n      conditions:\n        - {path: a}\n", `p.yaml:11: default.attestations[0].conditions[0]: needs exactly one of equals, matches and in`},
		{"condition empty in", trustHeader + "default:\n  signedBy: {anyOf: [ci]}\n  attestations:\n    - predicateType: x\n      conditions:\n        - path: a\n          in: []\n", `p.yaml:12: default.attestations[0].conditions[0].in: must list at least one value`},
		{"condition without path", trustHeader + "default:\n  signedBy: {anyOf: [ci]}\n  attestations:\n    - predicateType: x\n      conditions:\n        - equals: a\n", `p.yaml:11: default.attestations[0].conditions[0].path: required (a dotted path into the predicate, e.g. builder.id)`},
		{"condition bad path", trustHeader + "default:\n  signedBy: {anyOf: [ci]}\n  attestations:\n    - predicateType: x\n      conditions:\n        - {path: 'a..b', equals: c}\n", `p.yaml:11: default.attestations[0].conditions[0].path: bad path "a..b": empty key`},
		{"condition bad index", trustHeader + "default:\n  signedBy: {anyOf: [ci]}\n  attestations:\n    - predicateType: x\n      conditions:\n        - {path: 'a[x]', equals: c}\n", `p.yaml:11: default.attestations[0].conditions[0].path: bad path "a[x]": want [N] with N a list index`},

		// Scan gate.
		{"scan without maxSeverity", "default:\n  scan: {onMissing: allow}\n", `p.yaml:2: default.scan.maxSeverity: required: none, low, medium, high or critical (findings above it deny)`},
		{"bad severity", "default:\n  scan:\n    maxSeverity: severe\n", `p.yaml:3: default.scan.maxSeverity: must be none, low, medium, high or critical, not "severe"`},
		{"bad maxAge", "default:\n  scan:\n    maxSeverity: high\n    maxAge: a week\n", `p.yaml:4: default.scan.maxAge: invalid duration "a week" (want e.g. 30s, 5m, 24h, 7d)`},
		{"negative maxAge", "default:\n  scan:\n    maxSeverity: high\n    maxAge: -7d\n", `p.yaml:4: default.scan.maxAge: invalid duration "-7d" (want e.g. 30s, 5m, 24h, 7d)`},
		{"bad onMissing", "default:\n  scan:\n    maxSeverity: high\n    onMissing: wait\n", `p.yaml:4: default.scan.onMissing: must be deny, allow or scan-and-wait, not "wait"`},
		{"scan-and-wait without scanner", "default:\n  scan:\n    maxSeverity: high\n    onMissing: scan-and-wait\n", `p.yaml:4: default.scan.onMissing: scan-and-wait needs scan.scanner`},
		{"scan-and-wait without scanner source", trustHeader + "default:\n  scan:\n    maxSeverity: high\n    onMissing: scan-and-wait\n    scanner: trivy\n    sources: [ci]\n", `p.yaml:11: default.scan.sources: scan-and-wait needs the scanner source`},
		{"unknown scanner", trustHeader + "default:\n  scan:\n    maxSeverity: high\n    scanner: trivvy\n", `p.yaml:9: default.scan.scanner: unknown scanner "trivvy" (known: trivy)`},
		{"waitTimeout without scan-and-wait", "default:\n  scan:\n    maxSeverity: high\n    waitTimeout: 1m\n", `p.yaml:4: default.scan.waitTimeout: applies to onMissing: scan-and-wait only`},
		{"unknown source", "default:\n  scan:\n    maxSeverity: high\n    sources: [harbor]\n", `p.yaml:4: default.scan.sources[0]: must be attestation, scanner or ci, not "harbor"`},
		{"empty sources", "default:\n  scan:\n    maxSeverity: high\n    sources: []\n", `p.yaml:4: default.scan.sources: must list at least one of attestation, scanner and ci`},
		{"attestation source without signers", "default:\n  scan:\n    maxSeverity: high\n    sources:\n      - ci\n      - attestation\n", `p.yaml:6: default.scan.sources[1]: attestation needs scan.signedBy (or the rule's signedBy) to say whose reports count`},
		{"scan unknown signer", "default:\n  scan:\n    maxSeverity: high\n    signedBy: {anyOf: [sc]}\n", `p.yaml:4: default.scan.signedBy.anyOf[0]: unknown trust root "sc" (the trust section defines none)`},

		// Allowlists.
		{"until unparseable", "allowlist:\n  - id: CVE-1\n    until: next year\n    reason: r\n", `p.yaml:3: allowlist[0].until: invalid date "next year" (want YYYY-MM-DD or an RFC 3339 time)`},
		{"missing reason", "default:\n  scan:\n    maxSeverity: high\n    allow:\n      - {id: CVE-1, until: 2026-01-01}\n", `p.yaml:5: default.scan.allow[0].reason: required: say why this vulnerability is accepted`},
		{"missing id", "allowlist:\n  - {until: 2026-01-01, reason: r}\n", `p.yaml:2: allowlist[0].id: required`},
		{"empty allow entry", "allowlist:\n  - \n", `p.yaml:2: allowlist[0]: empty entry: give id, until and reason`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "p.yaml", testFiles.read)
			if err == nil {
				t.Fatalf("Parse succeeded, want %s", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "p.yaml" || pe.Line == 0 {
				t.Errorf("error %#v is not an *Error with file and line", pe)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := "rules:\n  - name: a\n    mode: x\n  - name: a\n    onError: y\ndefault:\n  signedBy: {anyOf: [nope]}\n"
	_, err := Parse([]byte(doc), "p.yaml", testFiles.read)
	want := strings.Join([]string{
		`p.yaml:3: rules[0].mode: must be enforce, warn or audit, not "x"`,
		`p.yaml:4: rules[1].name: duplicate rule name "a" (first at line 2)`,
		`p.yaml:5: rules[1].onError: must be deny or allow, not "y"`,
		`p.yaml:7: default.signedBy.anyOf[0]: unknown trust root "nope" (the trust section defines none)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

func TestParseWithoutReader(t *testing.T) {
	_, err := Parse([]byte("trust:\n  r: {key: k.pub}\n"), "p.yaml", nil)
	want := `p.yaml:2: trust.r.key: cannot read "k.pub": no file reader (use Load, or give Parse a readFile)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	// Inline keys need no reader.
	if _, err := Parse([]byte("trust:\n  r: {keyData: \""+strings.ReplaceAll(testKey, "\n", `\n`)+"\"}\n"), "p.yaml", nil); err != nil {
		t.Errorf("inline key: %v", err)
	}
}

func TestParseAliasBomb(t *testing.T) {
	// A few kilobytes that expand to 100^4 list items through nested aliases.
	items := func(indent, first, alias string) string {
		return indent + "- " + first + "\n" + strings.Repeat(indent+"- "+alias+"\n", 99)
	}
	doc := "rules:\n" +
		"  - &r\n" +
		"    name: a\n" +
		"    attestations:\n" +
		"      - &a\n" +
		"        predicateType: x\n" +
		"        conditions:\n" +
		"          - &c\n" +
		"            path: p\n" +
		"            in:\n" + items("              ", "v", "v") +
		strings.Repeat("          - *c\n", 99) +
		strings.Repeat("      - *a\n", 99) +
		strings.Repeat("  - *r\n", 99)
	_, err := Parse([]byte(doc), "p.yaml", testFiles.read)
	want := "document too large once aliases are expanded"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want %q", err, want)
	}
}
