package report

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// openVEXContext is the prefix of every OpenVEX document's @context
// ("https://openvex.dev/ns/v0.2.0", or ".../ns" for the earliest drafts).
const openVEXContext = "https://openvex.dev/ns"

// vexDoc is the part of an OpenVEX document this package reads.
type vexDoc struct {
	Context    string         `json:"@context"`
	Timestamp  string         `json:"timestamp"`
	Statements []vexStatement `json:"statements"`
}

type vexStatement struct {
	// Vulnerability is an object (v0.2.0) or a bare id (v0.0.1).
	Vulnerability json.RawMessage `json:"vulnerability"`
	// Products are objects (v0.2.0) or bare ids (v0.0.1).
	Products []json.RawMessage `json:"products"`
	// Subcomponents of every product, as v0.0.1 lists them (v0.2.0 lists them under each product).
	Subcomponents   []json.RawMessage `json:"subcomponents"`
	Status          string            `json:"status"`
	Justification   string            `json:"justification"`
	ImpactStatement string            `json:"impact_statement"`
	StatusNotes     string            `json:"status_notes"`
	Timestamp       string            `json:"timestamp"`
	LastUpdated     string            `json:"last_updated"`
}

type vexVulnerability struct {
	ID      string   `json:"@id"`
	Name    string   `json:"name"`
	Aliases []string `json:"aliases"`
}

type vexProduct struct {
	ID          string            `json:"@id"`
	Identifiers map[string]string `json:"identifiers"`
	Hashes      map[string]string `json:"hashes"`
	// Subcomponents are objects (v0.2.0) or bare ids (v0.0.1).
	Subcomponents []json.RawMessage `json:"subcomponents"`
}

// vexEntry is one statement, read.
type vexEntry struct {
	ids      []string // vulnerability name, @id, aliases
	products []vexTarget
	status   string
	note     string
	when     time.Time
}

// vexTarget is one product of a statement: the image digests it names and the packages its subcomponents name
// (none: the whole product).
type vexTarget struct {
	digests  []digest.Digest
	packages []policy.VEXPackage
}

// OpenVEX is a parsed OpenVEX document.
type OpenVEX struct {
	entries []vexEntry // in time order
}

// ParseOpenVEX reads an OpenVEX document (v0.2.0; v0.0.1's bare-string
// vulnerabilities, products and statement-level subcomponents too). Products name image
// digests as "sha256:…", a pkg:oci/ (or any) package URL whose version is a
// digest ("…@sha256%3A…"), or a "sha-256" / "sha-512" entry under hashes.
// A product's subcomponents narrow its statement to those packages: a package
// URL gives a name (as scanners print it: "openssl", "golang.org/x/crypto",
// "group:artifact") and version, any other @id is a plain package name.
//
// Statements are kept in time order (statement timestamp, else last_updated,
// else the document's; document order among equal times), so that a later
// affected or under_investigation statement withdraws an earlier not_affected
// when package policy resolves them. A vulnerability is named by its name, its
// @id (and the last path element of an @id URL) and each alias.
func ParseOpenVEX(b []byte) (*OpenVEX, error) {
	entries, err := parseOpenVEX(b)
	if err != nil {
		return nil, err
	}
	return &OpenVEX{entries: entries}, nil
}

// Digests returns the image digests the document's products name, in order of first mention.
func (v *OpenVEX) Digests() []digest.Digest {
	var digests []digest.Digest
	for _, e := range v.entries {
		for _, p := range e.products {
			for _, d := range p.digests {
				if !slices.Contains(digests, d) {
					digests = append(digests, d)
				}
			}
		}
	}
	return digests
}

// For returns the statements about the image dgst, in time order: only those
// whose products name it, each narrowed to the subcomponents of those products
// (a product naming dgst without subcomponents makes it a statement about the
// whole image). A caller never lets one image's VEX waive another's findings.
func (v *OpenVEX) For(dgst digest.Digest) []policy.VEXStatement {
	var out []policy.VEXStatement
	for _, e := range v.entries {
		named, whole := false, false
		var pkgs []policy.VEXPackage
		for _, p := range e.products {
			if !slices.Contains(p.digests, dgst) {
				continue
			}
			named = true
			if len(p.packages) == 0 {
				whole = true
			}
			for _, pk := range p.packages {
				if !slices.Contains(pkgs, pk) {
					pkgs = append(pkgs, pk)
				}
			}
		}
		if !named {
			continue
		}
		if whole {
			pkgs = nil
		}
		out = append(out, policy.VEXStatement{IDs: slices.Clone(e.ids), Packages: pkgs, Status: e.status, Note: e.note, Time: e.when})
	}
	return out
}

// OpenVEXFor is ParseOpenVEX followed by For(dgst).
func OpenVEXFor(b []byte, dgst digest.Digest) ([]policy.VEXStatement, error) {
	v, err := ParseOpenVEX(b)
	if err != nil {
		return nil, err
	}
	return v.For(dgst), nil
}

func parseOpenVEX(b []byte) ([]vexEntry, error) {
	const format = "openvex"
	if err := checkSize(format, b); err != nil {
		return nil, err
	}
	var doc vexDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, malformed(format, err)
	}
	if !strings.HasPrefix(doc.Context, openVEXContext) {
		return nil, unsupportedf("openvex: @context %q, want %s/…", doc.Context, openVEXContext)
	}
	docTime := parseTime(doc.Timestamp)
	entries := make([]vexEntry, 0, len(doc.Statements))
	for i, st := range doc.Statements {
		e, err := vexRead(st)
		if err != nil {
			return nil, malformedf(format, "statements[%d]: %v", i, err)
		}
		if e.when.IsZero() {
			e.when = docTime
		}
		entries = append(entries, e)
	}
	slices.SortStableFunc(entries, func(a, b vexEntry) int { return a.when.Compare(b.when) })
	return entries, nil
}

// vexRead reads one statement.
func vexRead(st vexStatement) (vexEntry, error) {
	e := vexEntry{status: st.Status, when: parseTime(first(st.Timestamp, st.LastUpdated))}
	switch st.Status {
	case policy.VEXNotAffected:
		e.note = note(st.Status, st.Justification, first(st.ImpactStatement, st.StatusNotes))
	case policy.VEXFixed:
		e.note = note(st.Status, "", st.StatusNotes)
	case policy.VEXAffected, policy.VEXUnderInvestigation:
		e.note = note(st.Status, "", st.StatusNotes)
	default:
		return e, fmt.Errorf("status %q, want not_affected, affected, fixed or under_investigation", st.Status)
	}

	var v vexVulnerability
	if err := unmarshalStringOr(st.Vulnerability, &v.Name, &v); err != nil {
		return e, fmt.Errorf("vulnerability: %w", err)
	}
	for _, id := range append([]string{v.Name, v.ID, lastSegment(v.ID)}, v.Aliases...) {
		if id = strings.TrimSpace(id); id != "" && !slices.Contains(e.ids, id) {
			e.ids = append(e.ids, id)
		}
	}
	if len(e.ids) == 0 {
		return e, fmt.Errorf("vulnerability has no name or @id")
	}

	for j, raw := range st.Products {
		var p vexProduct
		if err := unmarshalStringOr(raw, &p.ID, &p); err != nil {
			return e, fmt.Errorf("products[%d]: %w", j, err)
		}
		var t vexTarget
		for _, c := range append([]string{p.ID, p.Identifiers["purl"]}, hashDigests(p.Hashes)...) {
			if d, ok := productDigest(c); ok && !slices.Contains(t.digests, d) {
				t.digests = append(t.digests, d)
			}
		}
		subs, where := p.Subcomponents, fmt.Sprintf("products[%d].subcomponents", j)
		if len(subs) == 0 {
			subs, where = st.Subcomponents, "subcomponents"
		}
		for k, raw := range subs {
			pk, err := vexSubcomponent(raw)
			if err != nil {
				return e, fmt.Errorf("%s[%d]: %w", where, k, err)
			}
			t.packages = append(t.packages, pk)
		}
		e.products = append(e.products, t)
	}
	return e, nil
}

// vexSubcomponent reads the package a subcomponent names: a package URL (its @id or identifiers.purl) gives name
// and version; any other @id, CPE or hash is taken as a name as it stands, which no scanner's package name
// matches, so such a statement waives nothing rather than everything.
func vexSubcomponent(raw json.RawMessage) (policy.VEXPackage, error) {
	var c vexProduct
	if err := unmarshalStringOr(raw, &c.ID, &c); err != nil {
		return policy.VEXPackage{}, err
	}
	for _, id := range []string{c.ID, c.Identifiers["purl"]} {
		if p, ok := parsePURL(strings.TrimSpace(id)); ok {
			return policy.VEXPackage{Name: p.fullName(), Version: p.Version}, nil
		}
	}
	names := []string{c.ID, c.Identifiers["cpe23"], c.Identifiers["cpe22"]}
	names = append(names, hashDigests(c.Hashes)...)
	if n := first(names...); n != "" {
		return policy.VEXPackage{Name: strings.TrimSpace(n)}, nil
	}
	return policy.VEXPackage{}, fmt.Errorf("names no package (@id, identifiers or hashes)")
}

// hashDigests turns an OpenVEX hashes map into digest strings, in a stable order.
func hashDigests(hashes map[string]string) []string {
	var out []string
	for alg, hex := range hashes {
		switch strings.ToLower(alg) {
		case "sha-256", "sha256":
			out = append(out, "sha256:"+hex)
		case "sha-512", "sha512":
			out = append(out, "sha512:"+hex)
		}
	}
	slices.Sort(out)
	return out
}

// unmarshalStringOr reads raw as a JSON string into s, or as an object into v.
func unmarshalStringOr(raw json.RawMessage, s *string, v any) error {
	t := strings.TrimSpace(string(raw))
	switch {
	case t == "" || t == "null":
		return nil
	case strings.HasPrefix(t, `"`):
		return json.Unmarshal(raw, s)
	}
	return json.Unmarshal(raw, v)
}

// productDigest reads an image digest from a product id: "sha256:<hex>" or a
// package URL whose version is a digest.
func productDigest(id string) (digest.Digest, bool) {
	id = strings.TrimSpace(id)
	if p, ok := parsePURL(id); ok {
		id = p.Version
	}
	d, err := digest.Parse(id)
	return d, err == nil
}

// lastSegment returns the last path element of a URL, or "".
func lastSegment(s string) string {
	if !strings.Contains(s, "://") {
		return ""
	}
	s = strings.TrimRight(s, "/")
	return s[strings.LastIndex(s, "/")+1:]
}
