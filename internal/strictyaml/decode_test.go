package strictyaml

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// wait is a duration field, decoded through yaml.Unmarshaler like configs.Duration.
type wait time.Duration

func (w *wait) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("expected a duration, got a " + KindName(n))
	}
	d, err := ParseDuration(n.Value)
	*w = wait(d)
	return err
}

type item struct {
	Name string `yaml:"name"`
	Port int    `yaml:"port"`
	On   bool   `yaml:"on"`
}

type tree struct {
	Kids []tree `yaml:"kids"`
}

type testDoc struct {
	Name    string           `yaml:"name"`
	Count   int              `yaml:"count"`
	Big     int64            // named "big"
	Enabled bool             `yaml:"enabled"`
	Wait    wait             `yaml:"wait"`
	Items   []item           `yaml:"items"`
	Ptr     *item            `yaml:"ptr"`
	Named   map[string]*item `yaml:"named"`
	Free    map[string]any   `yaml:"free"`
	Grid    [][][]string     `yaml:"grid"`
	Tree    *tree            `yaml:"tree"`
	Small   int8             `yaml:"small"`
	Skip    string           `yaml:"-"`
	//lint:ignore U1000 an unexported field: the decoder must leave it alone
	hidden string
}

func TestDecode(t *testing.T) {
	defaults := func() testDoc { return testDoc{Name: "default", Count: 7, Enabled: true} }
	newItem := ItemDefault(func() item { return item{Port: 80} })
	tests := []struct {
		name string
		yaml string
		opts []Option
		want testDoc
	}{
		{name: "empty document keeps defaults", yaml: "", want: defaults()},
		{name: "comments only", yaml: "# nothing\n", want: defaults()},
		{name: "null keeps defaults", yaml: "name: null\ncount: ~\nitems:\n", want: defaults()},
		{
			name: "every kind",
			yaml: "name: x\ncount: 3\nbig: 9000000000\nenabled: false\nwait: 1d12h\n" +
				"items: [{name: a}, {name: b, port: 8, on: true}]\nptr: {name: p}\n" +
				"named: {one: {name: o}, two: null}\nfree: {a: [1, {b: c}]}\n",
			want: testDoc{
				Name: "x", Count: 3, Big: 9000000000, Wait: wait(36 * time.Hour),
				Items: []item{{Name: "a"}, {Name: "b", Port: 8, On: true}},
				Ptr:   &item{Name: "p"},
				Named: map[string]*item{"one": {Name: "o"}, "two": nil},
				Free:  map[string]any{"a": []any{1, map[string]any{"b": "c"}}},
			},
		},
		{
			name: "list items start from their defaults",
			yaml: "items: [{name: a}, {name: b, port: 8}]\n",
			opts: []Option{newItem},
			want: func() testDoc {
				d := defaults()
				d.Items = []item{{Name: "a", Port: 80}, {Name: "b", Port: 8}}
				return d
			}(),
		},
		{
			name: "anchors, aliases and merge keys",
			yaml: "items:\n  - &base {name: a, port: 1}\n  - <<: *base\n    port: 2\n  - *base\n" +
				"ptr: {<<: [{name: first}, {name: second, on: true}]}\n",
			want: func() testDoc {
				d := defaults()
				d.Items = []item{{Name: "a", Port: 1}, {Name: "a", Port: 2}, {Name: "a", Port: 1}}
				d.Ptr = &item{Name: "first", On: true}
				return d
			}(),
		},
		{
			name: "merge chains share expansions",
			yaml: "named:\n  a: &a {name: a}\n  b: &b {<<: *a, port: 2}\n  c: {<<: [*b, *a], on: true}\n",
			want: func() testDoc {
				d := defaults()
				d.Named = map[string]*item{"a": {Name: "a"}, "b": {Name: "a", Port: 2}, "c": {Name: "a", Port: 2, On: true}}
				return d
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaults()
			if err := Decode([]byte(tt.yaml), &Source{File: "t.yaml"}, &got, tt.opts...); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(testDoc{})); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		opts []Option
		want string // exact error text
	}{
		{"unknown top-level field", "nmae: x\n", nil, `t.yaml:1: unknown field "nmae" in document (did you mean "name"?)`},
		{"root named", "bogus: x\n", []Option{Root("config")}, `t.yaml:1: unknown field "bogus" in config`},
		{"unknown nested field", "items:\n  - {name: a}\n  - {prot: 1}\n", nil, `t.yaml:3: unknown field "prot" in items[1] (did you mean "port"?)`},
		{"case mismatch", "ptr: {NAME: a}\n", nil, `t.yaml:1: unknown field "NAME" in ptr (did you mean "name"?)`},
		{"skipped field", "skip: x\n", nil, `t.yaml:1: unknown field "skip" in document`},
		{"non-scalar key", "? [a]\n: b\n", nil, `t.yaml:1: unknown field "" in document`},
		{"duplicate key", "name: a\ncount: 1\nname: b\n", nil, `t.yaml:3: name: duplicate key (first at line 1)`},
		{"duplicate map key", "named:\n  a: {}\n  a: {}\n", nil, `t.yaml:3: named.a: duplicate key (first at line 2)`},
		{"string given a list", "name: [a]\n", nil, `t.yaml:1: name: expected a string, got a list`},
		{"bool given a string", "enabled: yes\n", nil, `t.yaml:1: enabled: expected true or false, got "yes"`},
		{"int given a string", "count: \"1\"\n", nil, `t.yaml:1: count: expected an integer, got "1"`},
		{"int overflow", "small: 300\n", nil, `t.yaml:1: small: unsupported field type int8`},
		{"int given a float", "count: 1.5\n", nil, `t.yaml:1: count: expected an integer, got "1.5"`},
		{"struct given a scalar", "ptr: x\n", nil, `t.yaml:1: ptr: expected a mapping, got "x"`},
		{"struct given a scalar, kinds only", "ptr: x\n", []Option{KindsOnly()}, `t.yaml:1: ptr: expected a mapping, got a scalar`},
		{"list given a scalar", "items: x\n", nil, `t.yaml:1: items: expected a list, got "x"`},
		{"list given a scalar, kinds only", "items: x\n", []Option{KindsOnly()}, `t.yaml:1: items: expected a list, got a scalar`},
		{"list given a mapping", "items: {a: b}\n", nil, `t.yaml:1: items: expected a list, got a mapping`},
		{"map given a list", "named: [a]\n", nil, `t.yaml:1: named: expected a mapping, got a list`},
		{"free map given a scalar", "free: x\n", nil, `t.yaml:1: free: expected a mapping, got "x"`},
		{"map key not a name", "named:\n  [a]: {}\n", nil, `t.yaml:2: named: keys must be names, got a list`},
		{"top level not a mapping", "- a\n", []Option{KindsOnly()}, `t.yaml:1: expected a mapping, got a list`},
		{"unmarshaler error", "items: []\nwait: soon\n", nil, `t.yaml:2: wait: invalid duration "soon" (want e.g. 30s, 5m, 24h, 7d)`},
		{"unmarshaler given a mapping", "wait: {}\n", nil, `t.yaml:1: wait: expected a duration, got a mapping`},
		{"two documents", "name: a\n---\nname: b\n", nil, `t.yaml:2: more than one YAML document`},
		{"syntax error", "name: a\n  bad: [\n", nil, `t.yaml:2: invalid YAML: mapping values are not allowed in this context`},
		{"syntax error in second document", "name: a\n---\n[\n", nil, `t.yaml:3: invalid YAML: did not find expected node content`},
		{"unknown anchor", "name: *x\n", nil, `t.yaml: invalid YAML: unknown anchor 'x' referenced`},
		{"merge cycle", "ptr: &a {<<: [*a]}\n", nil, `t.yaml:1: ptr: merge key includes the mapping it is in`},
		{"merge of a scalar", "ptr: {<<: x}\n", nil, `t.yaml:1: ptr: merge key needs a mapping, got a scalar`},
		{"merge of nested lists", "ptr: {<<: [[{}]]}\n", nil, `t.yaml:1: ptr: merge key needs mappings`},
		{"alias loop", "tree: &t {kids: [*t]}\n", nil, "kids[0]: aliases nested too deeply"},
		{"merge chain too deep", deepMerges(40), nil, `: ptr: aliases nested too deeply`},
		{"alias fan-out", aliasBomb(), nil, `document too large once aliases are expanded`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc testDoc
			err := Decode([]byte(tt.yaml), &Source{File: "t.yaml"}, &doc, tt.opts...)
			if err == nil {
				t.Fatalf("Decode succeeded, want %s", tt.want)
			}
			if strings.HasPrefix(tt.want, "t.yaml:") && err.Error() != tt.want || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %s\n   want %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not an *Error", err)
			}
		})
	}
}

// deepMerges is a chain of n mappings each merging the one before, defined where yaml.v3
// decodes them itself (free) and merged once at the end (ptr), so that no expansion is
// memoized before the deep one.
func deepMerges(n int) string {
	var b strings.Builder
	b.WriteString("free:\n  m0: &m0 {name: a}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  m%d: &m%d {<<: *m%d}\n", i, i, i-1)
	}
	fmt.Fprintf(&b, "ptr: {<<: *m%d}\n", n)
	return b.String()
}

// aliasBomb is a few kilobytes that expand to 100^3 strings through nested aliases.
func aliasBomb() string {
	l1 := "&l1 [" + strings.TrimSuffix(strings.Repeat("v, ", 100), ", ") + "]"
	l2 := "&l2 [" + l1 + strings.Repeat(", *l1", 99) + "]"
	return "grid: [" + l2 + strings.Repeat(", *l2", 99) + "]\n"
}

func TestDecodeLines(t *testing.T) {
	src := &Source{File: "t.yaml"}
	var doc testDoc
	data := "name: x\nitems:\n  - name: a\n  - &b\n    name: b\nnamed:\n  one:\n    port: 1\nptr: *b\n"
	if err := Decode([]byte(data), src, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"name": 1, "items": 2, "items[0]": 3, "items[0].name": 3, "items[1]": 4, "items[1].name": 5,
		"named": 6, "named.one": 7, "named.one.port": 8, "ptr": 9, "ptr.name": 5,
	}
	if diff := cmp.Diff(want, src.Lines); diff != "" {
		t.Errorf("Lines (-want +got):\n%s", diff)
	}
}

func TestDecodeArguments(t *testing.T) {
	var doc testDoc
	if err := Decode([]byte("name: x\n"), nil, &doc); err != nil || doc.Name != "x" {
		t.Errorf("nil Source: %v, %q", err, doc.Name)
	}
	err := Decode([]byte("name: [\n"), nil, &doc)
	if err == nil || err.Error() != "line 1: invalid YAML: did not find expected node content" {
		t.Errorf("nil Source error = %v", err)
	}
	for _, v := range []any{doc, (*testDoc)(nil), nil} {
		if err := Decode([]byte("name: x\n"), nil, v); err == nil {
			t.Errorf("Decode(%T) succeeded, want an error", v)
		}
	}
	var list []string
	if err := Decode([]byte("[a, b]\n"), nil, &list); err != nil || len(list) != 2 {
		t.Errorf("Decode into a slice = %v, %v", list, err)
	}
}
