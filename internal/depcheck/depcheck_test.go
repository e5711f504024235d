package depcheck

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/portcullis/portcullis/"

// rules says, for a package, which of the module's packages it must not import directly (imports) or at all
// (deps, through any path).
var rules = []struct {
	pkg           string
	imports, deps []string
}{
	// The edge asks admission through interfaces; it never reads evidence itself.
	{pkg: "proxy", imports: []string{"verifier", "verifier/report", "verifier/harbor", "admin", "policy"}},
	// Nothing below the edge imports it.
	{pkg: "admission", deps: []string{"proxy", "admin"}},
	{pkg: "admin", deps: []string{"proxy"}},
	{pkg: "verifier", deps: []string{"proxy", "admission", "admin"}},
	{pkg: "verifier/report", deps: []string{"proxy", "admission", "admin", "upstream"}},
	{pkg: "verifier/clair", deps: []string{"proxy", "admission", "admin"}},
	{pkg: "verifier/dct", deps: []string{"proxy", "admission", "admin", "upstream", "cache"}},
	{pkg: "upstream", deps: []string{"proxy", "admission", "admin", "verifier", "policy"}},
	{pkg: "policy", deps: []string{"proxy", "admission", "admin", "verifier", "upstream", "cache", "policy/rego"}},
	// The Rego engine is plugged into policy by main; it reads facts, never gathers them.
	{pkg: "policy/rego", deps: []string{"proxy", "admission", "admin", "verifier", "upstream", "cache"}},
	// Only main chooses the engine: deciding and operating compile policies with the engine they are given.
	{pkg: "admission", deps: []string{"policy/rego"}},
	{pkg: "admin", deps: []string{"policy/rego"}},
	{pkg: "cache", deps: []string{"proxy", "admission", "admin", "verifier", "upstream", "policy"}},
}

type listed struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// TestPackageJobs checks each rule with `go list`, so that a new import that crosses a boundary fails here with
// the package and the import named.
func TestPackageJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping slow dependency check")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	args := []string{"list", "-json=ImportPath,Imports,Deps"}
	for _, r := range rules {
		args = append(args, module+r.pkg)
	}
	out, err := exec.Command(goTool, args...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listed{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var l listed
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(l.ImportPath, module)] = l
	}
	for _, r := range rules {
		l, ok := pkgs[r.pkg]
		if !ok {
			t.Fatalf("go list did not list %s", r.pkg)
		}
		check := func(kind string, have, banned []string) {
			for _, b := range banned {
				for _, h := range have {
					if h == module+b {
						t.Errorf("%s %s %s", r.pkg, kind, b)
					}
				}
			}
		}
		check("imports", l.Imports, r.imports)
		check("depends on", l.Deps, r.deps)
	}
	if len(pkgs["proxy"].Imports) == 0 {
		t.Fatal("go list listed no imports for proxy")
	}
}
