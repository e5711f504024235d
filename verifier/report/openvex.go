package report

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
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
	Products        []json.RawMessage `json:"products"`
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
}

// vexEntry is one statement, read.
type vexEntry struct {
	ids     []string        // vulnerability name, @id, aliases
	digests []digest.Digest // image digests among the products
	status  string
	note    string
	when    time.Time
}

// ParseOpenVEX reads an OpenVEX document (v0.2.0; v0.0.1's bare-string
// vulnerabilities and products too). It returns, per vulnerability id, a note
// for those whose status is not_affected or fixed, e.g. "not_affected
// (vulnerable_code_not_in_execute_path): <impact statement>", and the image
// digests the statements' products name: "sha256:…", a pkg:oci/ (or any)
// package URL whose version is a digest ("…@sha256%3A…"), or a "sha-256" /
// "sha-512" entry under hashes. Subcomponents are not products and name no
// digest here.
//
// Statements apply in time order (statement timestamp, else last_updated, else
// the document's), so a later affected or under_investigation statement
// withdraws an earlier not_affected. A vulnerability is keyed by its name, its
// @id (and the last path element of an @id URL) and each alias.
//
// The map covers every product in the document. A caller that must not let one
// image's VEX waive another's findings uses OpenVEXFor instead.
func ParseOpenVEX(b []byte) (map[string]string, []digest.Digest, error) {
	entries, err := parseOpenVEX(b)
	if err != nil {
		return nil, nil, err
	}
	var digests []digest.Digest
	for _, e := range entries {
		for _, d := range e.digests {
			if !slices.Contains(digests, d) {
				digests = append(digests, d)
			}
		}
	}
	return vexStatuses(entries, func(vexEntry) bool { return true }), digests, nil
}

// OpenVEXFor is ParseOpenVEX restricted to the statements whose products name
// the image digest dgst.
func OpenVEXFor(b []byte, dgst digest.Digest) (map[string]string, error) {
	entries, err := parseOpenVEX(b)
	if err != nil {
		return nil, err
	}
	return vexStatuses(entries, func(e vexEntry) bool { return slices.Contains(e.digests, dgst) }), nil
}

// vexStatuses applies the statements keep selects, in time order.
func vexStatuses(entries []vexEntry, keep func(vexEntry) bool) map[string]string {
	out := map[string]string{}
	for _, e := range entries {
		if !keep(e) {
			continue
		}
		for _, id := range e.ids {
			switch e.status {
			case "not_affected", "fixed":
				out[id] = e.note
			default:
				delete(out, id)
			}
		}
	}
	return out
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
	case "not_affected":
		e.note = note(st.Status, st.Justification, first(st.ImpactStatement, st.StatusNotes))
	case "fixed":
		e.note = note(st.Status, "", st.StatusNotes)
	case "affected", "under_investigation":
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
		cands := []string{p.ID, p.Identifiers["purl"]}
		for alg, hex := range p.Hashes {
			switch strings.ToLower(alg) {
			case "sha-256", "sha256":
				cands = append(cands, "sha256:"+hex)
			case "sha-512", "sha512":
				cands = append(cands, "sha512:"+hex)
			}
		}
		for _, c := range cands {
			if d, ok := productDigest(c); ok && !slices.Contains(e.digests, d) {
				e.digests = append(e.digests, d)
			}
		}
	}
	return e, nil
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
