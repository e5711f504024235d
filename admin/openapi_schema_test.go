package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/policy"
)

// The answer schemas of docs/admin-api.openapi.yaml are held to what the handlers write two ways: the Go types of
// the typed answers (explain, preview) field by field, and real answers of every route, success and error, value
// by value. TestOpenAPIMatchesRoutes holds the routes, roles and path parameters.

// openAPISchemas is the document as plain values, for the schema checks.
type openAPISchemas struct{ root map[string]any }

func loadOpenAPISchemas(t *testing.T) openAPISchemas {
	t.Helper()
	raw, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	return openAPISchemas{root: root}
}

// at follows a local JSON pointer; nil when it leads nowhere.
func (d openAPISchemas) at(ref string) map[string]any {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	var n any = d.root
	for _, seg := range strings.Split(rest, "/") {
		m, ok := n.(map[string]any)
		if !ok {
			return nil
		}
		n = m[strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)]
	}
	m, _ := n.(map[string]any)
	return m
}

// deref resolves s's $ref, repeatedly.
func (d openAPISchemas) deref(s map[string]any) map[string]any {
	for s != nil {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		s = d.at(ref)
	}
	return s
}

// schemaKeywords are the keywords the document's schemas may use; anything else is a mistake, such as a flow
// mapping's comma splitting a description into a key of its own.
var schemaKeywords = []string{"$ref", "type", "format", "description", "example", "enum", "properties", "required",
	"additionalProperties", "items", "oneOf", "allOf", "minItems", "minimum", "maximum", "pattern"}

// TestOpenAPISchemaKeywords: every schema in the document uses known keywords only.
func TestOpenAPISchemaKeywords(t *testing.T) {
	d := loadOpenAPISchemas(t)
	var walk func(s any, path string)
	walk = func(s any, path string) {
		m, ok := s.(map[string]any)
		if !ok {
			t.Errorf("%s: a schema is a mapping, not %T", path, s)
			return
		}
		for k, v := range m {
			if !slices.Contains(schemaKeywords, k) {
				t.Errorf("%s: unknown schema keyword %q", path, k)
			}
			switch k {
			case "properties":
				props, _ := v.(map[string]any)
				for name, p := range props {
					walk(p, path+".properties."+name)
				}
			case "items":
				walk(v, path+".items")
			case "additionalProperties":
				if _, isBool := v.(bool); !isBool {
					walk(v, path+".additionalProperties")
				}
			case "oneOf", "allOf":
				list, _ := v.([]any)
				for i, sub := range list {
					walk(sub, fmt.Sprintf("%s.%s[%d]", path, k, i))
				}
			}
		}
	}
	schemas, _ := d.at("#/components")["schemas"].(map[string]any)
	for name, s := range schemas {
		walk(s, name)
	}
	if len(schemas) == 0 {
		t.Fatal("no schemas")
	}
}

// validate checks the JSON value v against schema s and returns what does not match. strict refuses properties the
// schema does not declare (unless additionalProperties allows them); allOf members are checked leniently and the
// properties of all of them together strictly.
func (d openAPISchemas) validate(s map[string]any, v any, path string, strict bool) []string {
	s = d.deref(s)
	if s == nil {
		return []string{path + ": the schema's $ref leads nowhere"}
	}
	var errs []string
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			sm, _ := sub.(map[string]any)
			errs = append(errs, d.validate(sm, v, path, false)...)
		}
	}
	if one, ok := s["oneOf"].([]any); ok {
		n := 0
		var why []string
		for _, sub := range one {
			sm, _ := sub.(map[string]any)
			e := d.validate(sm, v, path, strict)
			if len(e) == 0 {
				n++
			}
			why = append(why, e...)
		}
		if n != 1 {
			errs = append(errs, fmt.Sprintf("%s: matches %d of oneOf, want 1: %s", path, n, strings.Join(why, "; ")))
		}
	}
	if ty, ok := s["type"]; ok {
		var types []string
		switch ty := ty.(type) {
		case string:
			types = []string{ty}
		case []any:
			for _, x := range ty {
				types = append(types, fmt.Sprint(x))
			}
		}
		if got := jsonType(v); !slices.Contains(types, got) && !(got == "integer" && slices.Contains(types, "number")) {
			return append(errs, fmt.Sprintf("%s: %s %s, want %v", path, got, short(v), types))
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		errs = append(errs, fmt.Sprintf("%s: %s is not one of %v", path, short(v), enum))
	}
	if s["format"] == "date-time" {
		if str, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not a date-time", path, str))
			}
		}
	}
	if _, ok := s["oneOf"]; ok {
		return errs // its members hold the properties
	}
	if d.composed(s) {
		// Its members checked the properties they declare; what none declares is refused here.
		if m, ok := v.(map[string]any); ok && strict {
			props := d.properties(s)
			for k := range m {
				if _, ok := props[k]; !ok {
					errs = append(errs, fmt.Sprintf("%s: %q is not a declared property of any allOf member", path, k))
				}
			}
		}
		return errs
	}
	switch v := v.(type) {
	case map[string]any:
		props := d.properties(s)
		for _, r := range d.required(s) {
			if _, ok := v[r]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required %q missing", path, r))
			}
		}
		for k, x := range v {
			if p, ok := props[k]; ok {
				errs = append(errs, d.validate(p, x, path+"."+k, true)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case map[string]any:
				errs = append(errs, d.validate(ap, x, path+"."+k, true)...)
			case bool:
				if !ap && strict {
					errs = append(errs, fmt.Sprintf("%s: %q is not a declared property", path, k))
				}
			default:
				if strict {
					errs = append(errs, fmt.Sprintf("%s: %q is not a declared property", path, k))
				}
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range v {
				errs = append(errs, d.validate(items, x, fmt.Sprintf("%s[%d]", path, i), true)...)
			}
		}
	}
	return errs
}

// composed reports whether s is an allOf (its properties are its members').
func (d openAPISchemas) composed(s map[string]any) bool { _, ok := s["allOf"]; return ok }

// properties returns the properties s declares, its allOf members' included.
func (d openAPISchemas) properties(s map[string]any) map[string]map[string]any {
	s = d.deref(s)
	out := map[string]map[string]any{}
	if props, ok := s["properties"].(map[string]any); ok {
		for k, p := range props {
			out[k], _ = p.(map[string]any)
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			sm, _ := sub.(map[string]any)
			for k, p := range d.properties(sm) {
				out[k] = p
			}
		}
	}
	return out
}

// required returns the properties s requires, its allOf members' included.
func (d openAPISchemas) required(s map[string]any) []string {
	s = d.deref(s)
	var out []string
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			out = append(out, fmt.Sprint(r))
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			sm, _ := sub.(map[string]any)
			out = append(out, d.required(sm)...)
		}
	}
	slices.Sort(out)
	return out
}

func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		if v == math.Trunc(v) {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// answerSchema is the schema the document gives the answer of method path with status; nil when it gives none.
func (d openAPISchemas) answerSchema(method, path string, status int) (map[string]any, error) {
	paths, _ := d.root["paths"].(map[string]any)
	item, _ := paths[path].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	if op == nil {
		return nil, fmt.Errorf("%s %s is not in the document", method, path)
	}
	responses, _ := op["responses"].(map[string]any)
	resp := d.deref(asMap(responses[fmt.Sprint(status)]))
	if resp == nil {
		return nil, fmt.Errorf("%s %s: status %d is not documented", method, path, status)
	}
	content, _ := resp["content"].(map[string]any)
	if content == nil {
		return nil, nil
	}
	mt, _ := content["application/json"].(map[string]any)
	if mt == nil {
		return nil, fmt.Errorf("%s %s %d: no application/json answer documented", method, path, status)
	}
	return asMap(mt["schema"]), nil
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// checkAnswer validates an answer of method path against the document.
func (d openAPISchemas) checkAnswer(t *testing.T, method, path string, status int, body string) {
	t.Helper()
	s, err := d.answerSchema(method, path, status)
	if err != nil {
		t.Error(err)
		return
	}
	if s == nil {
		if strings.TrimSpace(body) != "" {
			t.Errorf("%s %s %d: the document gives no body, the answer has %s", method, path, status, body)
		}
		return
	}
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Errorf("%s %s %d: %v: %s", method, path, status, err, body)
		return
	}
	for _, e := range d.validate(s, v, fmt.Sprintf("%s %s %d", method, path, status), true) {
		t.Error(e)
	}
}

// TestOpenAPIAnswers: real answers of the explain, decisions and policy routes, successes and errors, match the
// document's schemas for their status, value by value.
func TestOpenAPIAnswers(t *testing.T) {
	d := loadOpenAPISchemas(t)
	e := newPolicyEnv(t)
	ctx := context.Background()
	// A rule with a scan gate, and an image whose report has a counted, a waived and an unfixed finding.
	e.writePolicy(t, signingPolicy+"  scan:\n    maxSeverity: medium\n    maxAge: 7d\n    ignoreUnfixed: true\n")
	if code, body := e.do(t, http.MethodPost, "/admin/v1/policy/reload", "secret", nil); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	signed := e.push(t, "team/app", "v1", true)
	unsigned := e.push(t, "team/app", "v2", false)
	listed := e.push(t, "team/app", "v3", true)
	e.ev.scans = map[digest.Digest]*policy.ScanReport{signed.Digest: {
		Source: policy.SourceCI, Scanner: "Trivy", ScannerVersion: "0.58.1", ScanTime: time.Now().Add(-time.Hour),
		Findings: []policy.Finding{
			{ID: "CVE-2024-1", Severity: policy.SeverityCritical, Package: "openssl", InstalledVersion: "3.0.1", FixedVersion: "3.0.2"},
			{ID: "CVE-2024-2", Severity: policy.SeverityHigh, Package: "zlib", InstalledVersion: "1.3"},
			{ID: "CVE-2024-3", Severity: policy.SeverityLow, Package: "busybox", InstalledVersion: "1.36"},
		},
	}}
	if _, err := e.lists.Add(ctx, admission.ListDeny, "ghcr.io/team/app@"+listed.Digest.String(), "withdrawn", time.Now().Add(time.Hour), "alice"); err != nil {
		t.Fatal(err)
	}
	e.pull(t, signed)
	e.pull(t, unsigned)
	e.pull(t, listed)

	var sawScan bool
	for _, tc := range []struct {
		method, target string
		body           string
		status         int
	}{
		{http.MethodGet, "/admin/v1/explain?image=ghcr.io/team/app:v1", "", http.StatusOK},
		{http.MethodGet, "/admin/v1/explain?image=ghcr.io/team/app:v2", "", http.StatusOK},
		{http.MethodGet, "/admin/v1/explain?image=ghcr.io/team/app:v3", "", http.StatusOK},
		{http.MethodGet, "/admin/v1/explain", "", http.StatusBadRequest},
		{http.MethodGet, "/admin/v1/explain?image=ghcr.io/team/App", "", http.StatusBadRequest},
		{http.MethodGet, "/admin/v1/explain?image=ghcr.io/team/app:v9", "", http.StatusNotFound},
		{http.MethodGet, "/admin/v1/policy", "", http.StatusOK},
		{http.MethodPost, "/admin/v1/policy/preview?since=1h", "trust:\n  release: {key: keys/release.pub}\nrules:\n  - {name: open, match: {repository: team/app}}\n", http.StatusOK},
		{http.MethodPost, "/admin/v1/policy/preview?since=1h", "default: {}\n", http.StatusOK},
		{http.MethodPost, "/admin/v1/policy/preview", "default:\n  signedBy: {anyOf: [nobody]}\n", http.StatusBadRequest},
		{http.MethodPost, "/admin/v1/policy/preview?max=0", "default: {}\n", http.StatusBadRequest},
		{http.MethodPost, "/admin/v1/policy/preview", strings.Repeat("#", maxPolicyBytes+1), http.StatusRequestEntityTooLarge},
		{http.MethodPost, "/admin/v1/policy/reload", "", http.StatusOK},
		{http.MethodDelete, "/admin/v1/decisions?image=ghcr.io/team/app:v1", "", http.StatusOK},
		{http.MethodDelete, "/admin/v1/decisions?repository=ghcr.io/team/app", "", http.StatusOK},
		{http.MethodDelete, "/admin/v1/decisions", "", http.StatusBadRequest},
		{http.MethodDelete, "/admin/v1/decisions?image=ghcr.io/team/app:v9", "", http.StatusNotFound},
		{http.MethodDelete, "/admin/v1/decisions?image=ghcr.io/team/app:v1", "", http.StatusForbidden}, // read token
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			token := "secret"
			if tc.status == http.StatusForbidden {
				token = readToken
			}
			code, body := e.do(t, tc.method, tc.target, token, []byte(tc.body))
			if code != tc.status {
				t.Fatalf("%d %s, want %d", code, body, tc.status)
			}
			path, _, _ := strings.Cut(tc.target, "?")
			d.checkAnswer(t, tc.method, path, code, body)
			sawScan = sawScan || strings.Contains(body, `"waivedBy":"unfixed"`) && strings.Contains(body, `"countedTotal":1`)
		})
	}
	if !sawScan {
		t.Error("no answer showed the scan gate's evidence: the scan case checks nothing")
	}
	t.Run("an invalid file on reload", func(t *testing.T) {
		e.writePolicy(t, "default:\n  mode: sometimes\n")
		code, body := e.do(t, http.MethodPost, "/admin/v1/policy/reload", "secret", nil)
		if code != http.StatusBadRequest {
			t.Fatalf("%d %s", code, body)
		}
		d.checkAnswer(t, http.MethodPost, "/admin/v1/policy/reload", code, body)
	})
}

// The validator itself: it must refuse what does not match, or the checks above prove nothing.
func TestOpenAPIValidator(t *testing.T) {
	d := loadOpenAPISchemas(t)
	status := func(edit func(m map[string]any)) map[string]any {
		m := map[string]any{"file": "p.yaml", "hash": "ab", "shortHash": "ab", "loaded": "2026-01-01T00:00:00Z", "rules": []any{}, "hasDefault": true}
		edit(m)
		return m
	}
	s := d.at("#/components/schemas/PolicyStatus")
	for _, tc := range []struct {
		name string
		v    map[string]any
		ok   bool
	}{
		{"as written", status(func(map[string]any) {}), true},
		{"an undeclared property", status(func(m map[string]any) { m["colour"] = "red" }), false},
		{"a required one missing", status(func(m map[string]any) { delete(m, "hash") }), false},
		{"a wrong type", status(func(m map[string]any) { m["hasDefault"] = "yes" }), false},
		{"null for an array", status(func(m map[string]any) { m["rules"] = nil }), false},
		{"not a date-time", status(func(m map[string]any) { m["loaded"] = "yesterday" }), false},
	} {
		if errs := d.validate(s, tc.v, tc.name, true); (len(errs) == 0) != tc.ok {
			t.Errorf("%s: %q, want ok %v", tc.name, errs, tc.ok)
		}
	}
	// allOf: the members' properties together, strictly; oneOf: exactly one.
	change := d.at("#/components/schemas/PreviewChange")
	decision := map[string]any{"allowed": true, "rule": "r", "mode": "enforce", "message": "m", "failures": []any{}, "notes": []any{}, "requirements": []any{}}
	pulled := map[string]any{"image": "i", "upstream": "u", "repository": "r", "digest": "d", "lastPulled": "2026-01-01T00:00:00Z", "now": decision, "candidate": decision}
	if errs := d.validate(change, pulled, "change", true); len(errs) > 0 {
		t.Errorf("a preview change: %q", errs)
	}
	pulled["colour"] = "red"
	if errs := d.validate(change, pulled, "change", true); len(errs) == 0 {
		t.Error("an undeclared property in an allOf passes")
	}
	expl := d.properties(d.at("#/components/schemas/Explanation"))["cached"]
	if errs := d.validate(expl, map[string]any{"allowed": true}, "cached", true); len(errs) == 0 {
		t.Error("an object that matches neither member of a oneOf passes")
	}
	if errs := d.validate(expl, nil, "cached", true); len(errs) > 0 {
		t.Errorf("null for a nullable object: %q", errs)
	}
	// The Go type check sees a field the document lacks and a nullable pointer it does not say is.
	type answer struct {
		File  string               `json:"file"`
		Extra int                  `json:"extra"`
		List  *admission.ListEntry `json:"list"`
	}
	errs := d.checkGoType(map[string]any{"type": "object", "required": []any{"file", "list"}, "properties": map[string]any{
		"file": map[string]any{"type": "string"}, "list": map[string]any{"$ref": "#/components/schemas/ListEntry"}}},
		reflect.TypeFor[answer](), "answer")
	joined := strings.Join(errs, "\n")
	for _, want := range []string{`the answer has "extra"`, "list: may be null", `required ["file" "list"]`} {
		if !strings.Contains(joined, want) {
			t.Errorf("checkGoType does not say %q:\n%s", want, joined)
		}
	}
}
