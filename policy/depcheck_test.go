package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoIO keeps the package pure, in the spirit of go-containerregistry's
// pkg/registry/depcheck_test.go: its dependencies are the standard library (less networking)
// plus the YAML parser and go-digest. No net/http, no Redis, no Sigstore.
func TestNoIO(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping slow dependency check")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/portcullis/portcullis/policy": true,
		"gopkg.in/yaml.v3":                        true,
		"github.com/opencontainers/go-digest":     true,
		// The strict YAML decoder shared with configs; go list -deps lists its own
		// dependencies too, so they are held to the same rules.
		"github.com/portcullis/portcullis/internal/strictyaml": true,
	}
	// Named for clear failures; the allow-list below would catch them too.
	forbidden := []string{"net", "net/http", "crypto/tls", "os/exec", "github.com/redis/", "github.com/sigstore/"}
	var deps int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, std, _ := strings.Cut(line, " ")
		deps++
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, strings.TrimSuffix(f, "/")+"/") && f != "net" {
				t.Errorf("policy depends on %s, which does I/O", pkg)
				break
			}
		}
		if std != "true" && !allowed[pkg] {
			t.Errorf("policy depends on %s; only the standard library, gopkg.in/yaml.v3 and go-digest are allowed", pkg)
		}
	}
	if deps < 10 {
		t.Fatalf("go list listed only %d packages:\n%s", deps, out)
	}
}
