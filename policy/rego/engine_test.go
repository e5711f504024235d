package rego

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/portcullis/portcullis/policy"
)

func newEngine(t testing.TB, opts ...Option) *Engine {
	t.Helper()
	e, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// parse loads a one-rule policy whose rule carries module inline, as a literal block starting on line 4.
func parse(t testing.TB, e *Engine, module string) (*policy.Policy, error) {
	t.Helper()
	doc := "rules:\n  - name: r\n    rego: |\n" + indent(module, "      ")
	return policy.Parse([]byte(doc), "p.yaml", nil, policy.WithModuleCompiler(e))
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestCompileErrors(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name   string
		module string
		want   string // the error, whole
	}{
		{
			name:   "http.send is refused at load",
			module: "package a\n\ndeny contains \"x\" if {\n\thttp.send({\"method\": \"get\", \"url\": \"http://example.com\"})\n}",
			want:   "p.yaml:7: rules[0].rego: rego_type_error: http.send is not available: Portcullis evaluates modules without I/O, clock or randomness (not available: http.send, net.*, opa.runtime, time.now_ns, rand.intn, uuid.rfc4122, print)",
		},
		{
			name:   "net.lookup_ip_addr",
			module: "package a\ndeny contains \"x\" if { net.lookup_ip_addr(\"example.com\") }",
			want:   "p.yaml:5: rules[0].rego: rego_type_error: net.lookup_ip_addr is not available: Portcullis evaluates modules without I/O, clock or randomness (not available: http.send, net.*, opa.runtime, time.now_ns, rand.intn, uuid.rfc4122, print)",
		},
		{
			name:   "opa.runtime",
			module: "package a\ndeny contains \"x\" if { opa.runtime().env.HOME }",
			want:   "p.yaml:5: rules[0].rego: rego_type_error: opa.runtime is not available: Portcullis evaluates modules without I/O, clock or randomness (not available: http.send, net.*, opa.runtime, time.now_ns, rand.intn, uuid.rfc4122, print)",
		},
		{
			name:   "the clock",
			module: "package a\ndeny contains \"x\" if { time.now_ns() > 0 }",
			want:   "p.yaml:5: rules[0].rego: rego_type_error: time.now_ns is not available: Portcullis evaluates modules without I/O, clock or randomness (not available: http.send, net.*, opa.runtime, time.now_ns, rand.intn, uuid.rfc4122, print)",
		},
		{
			name:   "a misspelt input field is a type error",
			module: "package a\n\ndeny contains \"x\" if {\n\tinput.scan.count.medium > 3\n}",
			want:   "p.yaml:7: rules[0].rego: rego_type_error: undefined ref: input.scan.count.medium",
		},
		{
			name:   "a type error",
			module: "package a\ndeny contains \"x\" if { input.scan.counts.medium == \"3\" }",
			want:   "p.yaml:5: rules[0].rego: rego_type_error: match error",
		},
		{
			name:   "a parse error",
			module: "package a\n\ndeny contains msg if {\n\tmsg :=\n}",
			want:   "p.yaml:8: rules[0].rego: rego_parse_error: unexpected } token",
		},
		{
			name:   "Rego v0 syntax",
			module: "package a\ndeny[msg] { msg := \"x\" }",
			want:   "p.yaml:5: rules[0].rego: rego_parse_error: `if` keyword is required before rule body",
		},
		{
			name:   "deny as a boolean",
			module: "package a\ndeny if { true }",
			want:   "p.yaml:5: rules[0].rego: deny must be a set of messages: write `deny contains msg if { ... }`",
		},
		{
			name:   "deny as an object",
			module: "package a\ndeny[msg] if { msg := \"x\" }",
			want:   "p.yaml:5: rules[0].rego: deny must be a set of messages: write `deny contains msg if { ... }`",
		},
		{
			name:   "no deny",
			module: "package acme.images\nallow if { true }",
			want:   "p.yaml:4: rules[0].rego: package acme.images defines no deny rule: write `deny contains msg if { ... }`",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, e, tt.module)
			if err == nil {
				t.Fatal("the policy loaded")
			}
			if got := strings.Split(err.Error(), "\n")[0]; !strings.HasPrefix(got, tt.want) {
				t.Errorf("error:\n%s\nwant it to start with:\n%s", err, tt.want)
			}
		})
	}
}

func TestDeny(t *testing.T) {
	e := newEngine(t)
	in := func(medium int, builder string) policy.Input {
		return policy.Input{
			Image:      policy.InputImage{Upstream: "ghcr.io", Repository: "acme/app", Digest: "sha256:ab"},
			Signatures: []policy.InputSignature{{Root: "release", Verified: true, Identity: policy.Identity{Key: "sha256:cd"}}},
			Attestations: []policy.InputAttestation{{PredicateType: "https://slsa.dev/provenance/v1", SignedBy: []string{"ci"},
				Predicate: json.RawMessage(fmt.Sprintf(`{"builder": {"id": %q}}`, builder))}},
			Scan: &policy.InputScan{Source: policy.SourceCI, Counts: policy.InputCounts{Medium: medium},
				Findings: []policy.InputFinding{{ID: "CVE-1", Severity: policy.SeverityMedium, Package: "zlib"}}},
			Now: "2026-06-01T12:00:00Z",
		}
	}
	tests := []struct {
		name   string
		module string
		in     policy.Input
		want   []string
	}{
		{
			name:   "scan counts: denies",
			module: mediumModule,
			in:     in(5, ""),
			want:   []string{"5 medium findings, at most 3 allowed"},
		},
		{
			name:   "scan counts: admits",
			module: mediumModule,
			in:     in(3, ""),
		},
		{
			name:   "a predicate: admits",
			module: builderModule,
			in:     in(0, "https://github.com/acme/builder"),
		},
		{
			name:   "a predicate: denies",
			module: builderModule,
			in:     in(0, "https://evil.example/builder"),
			want:   []string{"provenance builder https://evil.example/builder is not acme's"},
		},
		{
			name:   "no report: input.scan is undefined",
			module: "package a\ndeny contains \"no scan report\" if { not input.scan }",
			in:     policy.Input{Now: "2026-06-01T12:00:00Z"},
			want:   []string{"no scan report"},
		},
		{
			name:   "messages sorted, not strings as JSON",
			module: "package a\ndeny contains \"b\" if { true }\ndeny contains \"a\" if { true }\ndeny contains {\"id\": 1} if { true }",
			in:     in(0, ""),
			want:   []string{"a", "b", `{"id":1}`},
		},
		{
			name:   "input.now and the time builtins",
			module: "package a\ndeny contains \"old\" if { time.parse_rfc3339_ns(input.now) > time.parse_rfc3339_ns(\"2026-01-01T00:00:00Z\") }",
			in:     in(0, ""),
			want:   []string{"old"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := e.CompileModule(policy.Module{Source: tt.module, File: "p.yaml", Line: 1, Mapped: true})
			if err != nil {
				t.Fatal(err)
			}
			got, err := ev.Deny(&tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("deny (-want +got):\n%s", diff)
			}
		})
	}
}

const mediumModule = `package portcullis.medium

deny contains msg if {
	input.scan.counts.medium > 3
	msg := sprintf("%d medium findings, at most 3 allowed", [input.scan.counts.medium])
}
`

const builderModule = `package portcullis.builder

deny contains msg if {
	some att in input.attestations
	att.predicateType == "https://slsa.dev/provenance/v1"
	not startswith(att.predicate.builder.id, "https://github.com/acme/")
	msg := sprintf("provenance builder %s is not acme's", [att.predicate.builder.id])
}
`

// loopModule runs 10^10 steps: far past any time bound.
const loopModule = `package portcullis.loop

deny contains "never" if {
	some i in numbers.range(1, 100000)
	some j in numbers.range(1, 100000)
	i * j == -1
}
`

func TestDenyTimeBound(t *testing.T) {
	e := newEngine(t, WithTimeout(50*time.Millisecond))
	ev, err := e.CompileModule(policy.Module{Source: loopModule, File: "p.yaml", Line: 1, Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = ev.Deny(&policy.Input{})
	if took := time.Since(start); !errors.Is(err, ErrTimeout) || took > 5*time.Second {
		t.Fatalf("Deny = %v after %s, want ErrTimeout soon after 50ms", err, took)
	}
	if !strings.Contains(err.Error(), "50ms") {
		t.Errorf("error %q does not name the bound", err)
	}
	if _, err := New(WithTimeout(0)); err == nil {
		t.Error("a zero timeout was accepted")
	}
}

func TestDenyConcurrent(t *testing.T) {
	e := newEngine(t)
	ev, err := e.CompileModule(policy.Module{Source: mediumModule, File: "p.yaml", Line: 1, Mapped: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			in := &policy.Input{Scan: &policy.InputScan{Counts: policy.InputCounts{Medium: i}}}
			got, err := ev.Deny(in)
			if err != nil || (len(got) == 1) != (i > 3) {
				errs <- fmt.Errorf("medium %d: %q %v", i, got, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// fullInput has every field of policy.Input set, so that its JSON names every field a module can read.
func fullInput() *policy.Input {
	return &policy.Input{
		Image: policy.InputImage{Upstream: "ghcr.io", Repository: "acme/app", Tag: "v1", Digest: "sha256:ab", MediaType: "application/vnd.oci.image.manifest.v1+json"},
		Signatures: []policy.InputSignature{
			{Root: "release", Verified: true, Identity: policy.Identity{Key: "sha256:cd"}},
			{Root: "ci", Identity: policy.Identity{Issuer: "https://issuer", IssuerRegExp: "^https://", Subject: "me@example.com", SubjectRegExp: "^me@"}},
		},
		Attestations: []policy.InputAttestation{{PredicateType: "https://slsa.dev/provenance/v1", SignedBy: []string{"ci", "release"},
			Predicate: json.RawMessage(`{"builder": {"id": "b"}, "n": 1.5, "list": [1, "two", null, true]}`)}},
		Scan: &policy.InputScan{Source: policy.SourceAttestation, Scanner: "Trivy", ScannerVersion: "0.58.1", ScanTime: "2026-06-01T11:00:00Z",
			Counts:   policy.InputCounts{Critical: 1, High: 2, Medium: 3, Low: 4, Unknown: 5},
			Findings: []policy.InputFinding{{ID: "CVE-1", Severity: policy.SeverityHigh, Package: "zlib", Version: "1.2", FixedVersion: "1.3", Waived: true}}},
		Now: "2026-06-01T12:00:00Z",
	}
}

// TestInputValue keeps the hand-built AST value of the input equal to its JSON (policy.Input's field names), the
// document docs/policy.md describes.
func TestInputValue(t *testing.T) {
	for name, in := range map[string]*policy.Input{"full": fullInput(), "empty": {Signatures: []policy.InputSignature{}, Attestations: []policy.InputAttestation{}}} {
		t.Run(name, func(t *testing.T) {
			got, err := inputValue(in)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Compare(want) != 0 {
				t.Errorf("AST value\n%s\nwant (from the JSON)\n%s", got, want)
			}
		})
	}
}

// TestInputSchema keeps the schema modules are checked against in step with the input: a module that reads every
// field of a full input compiles, and reads each with the type it has.
func TestInputSchema(t *testing.T) {
	b, _ := json.Marshal(fullInput())
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if strings.Contains(path, ".predicate") {
				paths = append(paths, path) // free-form: any type
				return
			}
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[0]", x) // every element, for the fields only some have
			}
		default:
			paths = append(paths, path)
		}
	}
	walk("input", doc)
	sort.Strings(paths)
	paths = slices.Compact(paths)
	if len(paths) < 30 {
		t.Fatalf("only %d paths: %v", len(paths), paths)
	}
	var body []string
	for _, p := range paths {
		body = append(body, "\t"+p+" == "+p)
	}
	module := "package a\n\ndeny contains \"x\" if {\n" + strings.Join(body, "\n") + "\n}\n"
	if _, err := newEngine(t).CompileModule(policy.Module{Source: module, File: "p.yaml", Line: 1, Mapped: true}); err != nil {
		t.Errorf("a module reading every input field:\n%s\ndoes not compile: %v", module, err)
	}
	// And the schema is not just "any": a field that is not there is refused.
	for _, p := range []string{"input.images", "input.scan.counts.medum", "input.signatures[0].identity.keys"} {
		if _, err := newEngine(t).CompileModule(policy.Module{Source: "package a\ndeny contains \"x\" if { " + p + " }", File: "p.yaml", Line: 1}); err == nil ||
			!strings.Contains(err.Error(), "undefined ref") {
			t.Errorf("%s: %v, want undefined ref", p, err)
		}
	}
}

func TestCapabilities(t *testing.T) {
	c := capabilities()
	var names []string
	for _, b := range c.Builtins {
		names = append(names, b.Name)
	}
	for _, name := range []string{"http.send", "net.lookup_ip_addr", "net.cidr_contains", "opa.runtime", "time.now_ns", "rand.intn", "uuid.rfc4122"} {
		if slices.Contains(names, name) {
			t.Errorf("%s is available", name)
		}
	}
	for _, name := range []string{"sprintf", "startswith", "time.parse_rfc3339_ns", "regex.match", "count", "semver.compare"} {
		if !slices.Contains(names, name) {
			t.Errorf("%s is not available", name)
		}
	}
	if c.AllowNet == nil || len(c.AllowNet) != 0 {
		t.Errorf("AllowNet = %#v, want empty (no host)", c.AllowNet)
	}
}
