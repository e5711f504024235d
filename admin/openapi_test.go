package admin

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// openAPIPath is the admin API's OpenAPI document, which users and client generators read.
const openAPIPath = "../docs/admin-api.openapi.yaml"

// openAPIDoc is what the check reads of the document.
type openAPIDoc struct {
	OpenAPI    string                                 `yaml:"openapi"`
	Security   []map[string][]string                  `yaml:"security"`
	Paths      map[string]map[string]openAPIOperation `yaml:"paths"`
	Components struct {
		SecuritySchemes map[string]struct {
			Type   string `yaml:"type"`
			Scheme string `yaml:"scheme"`
		} `yaml:"securitySchemes"`
		Parameters map[string]openAPIParameter `yaml:"parameters"`
		Schemas    map[string]struct {
			Required   []string       `yaml:"required"`
			Properties map[string]any `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

type openAPIOperation struct {
	OperationID string              `yaml:"operationId"`
	Role        string              `yaml:"x-portcullis-role"`
	Parameters  []openAPIParameter  `yaml:"parameters"`
	Responses   map[string]struct{} `yaml:"responses"`
}

type openAPIParameter struct {
	Ref  string `yaml:"$ref"`
	Name string `yaml:"name"`
	In   string `yaml:"in"`
}

// httpMethods are the keys of an OpenAPI path item that are operations.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// muxWildcard is a ServeMux path wildcard: {name}, {name...} or {$}.
var muxWildcard = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}|\{\$\}`)

// openAPIRoute turns a ServeMux pattern into the document's "METHOD /path": {name...} is {name}, {$} nothing.
func openAPIRoute(pattern string) string {
	method, path, _ := strings.Cut(pattern, " ")
	path = muxWildcard.ReplaceAllStringFunc(path, func(w string) string {
		if w == "{$}" {
			return ""
		}
		return "{" + muxWildcard.FindStringSubmatch(w)[1] + "}"
	})
	return method + " " + path
}

// TestOpenAPIMatchesRoutes holds docs/admin-api.openapi.yaml to the routes the API serves, both ways, with the
// role each needs, the responses every route can give and the parameters its path names.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi: %q, want 3.x", doc.OpenAPI)
	}

	served := map[string]Role{}
	for _, r := range fullAPI(t, StaticToken("t")).Routes() {
		served[openAPIRoute(r.Pattern)] = r.Role
	}
	documented := map[string]openAPIOperation{}
	for path, item := range doc.Paths {
		for method, op := range item {
			if !slices.Contains(httpMethods, method) {
				continue // parameters, summary, ...: not operations
			}
			documented[strings.ToUpper(method)+" "+path] = op
		}
	}
	var notDocumented, notServed []string
	for r := range served {
		if _, ok := documented[r]; !ok {
			notDocumented = append(notDocumented, r)
		}
	}
	for r := range documented {
		if _, ok := served[r]; !ok {
			notServed = append(notServed, r)
		}
	}
	slices.Sort(notDocumented)
	slices.Sort(notServed)
	if len(notDocumented) > 0 {
		t.Errorf("served but not in %s: %q", openAPIPath, notDocumented)
	}
	if len(notServed) > 0 {
		t.Errorf("in %s but not served: %q", openAPIPath, notServed)
	}
	if len(served) == 0 {
		t.Fatal("the API serves no routes")
	}

	ids := map[string]string{}
	for route, op := range documented {
		role, ok := served[route]
		if !ok {
			continue
		}
		if op.Role != string(role) {
			t.Errorf("%s: x-portcullis-role %q, the route needs %q", route, op.Role, role)
		}
		want := []string{"401", "429"}
		if role == RoleWrite {
			want = append(want, "403")
		}
		for _, code := range want {
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("%s: no %s response", route, code)
			}
		}
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", route)
		} else if other, dup := ids[op.OperationID]; dup {
			t.Errorf("%s: operationId %q is also %s's", route, op.OperationID, other)
		}
		ids[op.OperationID] = route
		var inPath []string
		for _, p := range op.Parameters {
			if p.Ref != "" {
				p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
			}
			if p.In == "path" {
				inPath = append(inPath, p.Name)
			}
		}
		var named []string
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(route, -1) {
			named = append(named, m[1])
		}
		slices.Sort(inPath)
		slices.Sort(named)
		if diff := cmp.Diff(named, inPath); diff != "" {
			t.Errorf("%s: path parameters (-in the path +declared):\n%s", route, diff)
		}
	}

	// Security: bearer tokens and client certificates, both offered on every route.
	if s := doc.Components.SecuritySchemes["bearer"]; s.Type != "http" || s.Scheme != "bearer" {
		t.Errorf("securitySchemes.bearer = %+v, want type http, scheme bearer", s)
	}
	if s := doc.Components.SecuritySchemes["mTLS"]; s.Type != "mutualTLS" {
		t.Errorf("securitySchemes.mTLS = %+v, want type mutualTLS", s)
	}
	if diff := cmp.Diff([]map[string][]string{{"bearer": {}}, {"mTLS": {}}}, doc.Security); diff != "" {
		t.Errorf("security (-want +got):\n%s", diff)
	}
	// The error shape: {"errors":[{"code","message"}]}.
	errSchema := doc.Components.Schemas["Error"]
	if !slices.Equal(errSchema.Required, []string{"errors"}) || errSchema.Properties["errors"] == nil {
		t.Errorf("schemas.Error = %+v, want {errors: [{code, message}]}", errSchema)
	}
	if !strings.Contains(string(raw), "required: [code, message]") {
		t.Error("schemas.Error's items do not require code and message")
	}
}

// TestOpenAPIRefsResolve: every $ref in the document points at something in it.
func TestOpenAPIRefsResolve(t *testing.T) {
	raw, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	refs := 0
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k, v := n.Content[i], n.Content[i+1]; k.Value == "$ref" {
					refs++
					if resolve(&root, v.Value) == nil {
						t.Errorf("line %d: $ref %q points at nothing", v.Line, v.Value)
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	if refs == 0 {
		t.Error("no $ref found: the walk is broken")
	}
}

// resolve follows a local JSON pointer ("#/components/schemas/Error") in the document; nil when it leads nowhere.
func resolve(root *yaml.Node, ref string) *yaml.Node {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	n := root
	if n.Kind == yaml.DocumentNode {
		n = n.Content[0]
	}
	for _, seg := range strings.Split(rest, "/") {
		seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

func TestOpenAPIRoute(t *testing.T) {
	for in, want := range map[string]string{
		"POST /admin/v1/reports/{digest}": "POST /admin/v1/reports/{digest}",
		"GET /admin/v1/files/{path...}":   "GET /admin/v1/files/{path}",
		"GET /admin/v1/{$}":               "GET /admin/v1/",
		"DELETE /admin/v1/deny/{id}":      "DELETE /admin/v1/deny/{id}",
	} {
		if got := openAPIRoute(in); got != want {
			t.Errorf("openAPIRoute(%q) = %q, want %q", in, got, want)
		}
	}
}
