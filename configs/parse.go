package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxDepth bounds alias and merge-key indirection, so a self-referencing anchor cannot recurse
// forever.
const maxDepth = 64

// source records where a parsed configuration came from: the file name and, for every field
// path that appeared in it (such as "upstreams[1].url"), the line it appeared on.
type source struct {
	file  string
	lines map[string]int
}

// Load reads the file at path, parses it (Parse), applies the PORTCULLIS_* environment
// overrides (ApplyEnv), and checks it (Validate, then CheckFiles). Relative paths inside the
// file are relative to the working directory, not to the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	c.ApplyEnv(os.Getenv)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := c.CheckFiles(); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes one YAML document strictly: an unknown field, a duplicate key or a value of the
// wrong type is an *Error naming filename, line and field path. Fields the document leaves out
// (or sets to null) keep their defaults. Parse neither validates nor reads other files; see
// Validate and CheckFiles. An empty document yields the defaults.
func Parse(data []byte, filename string) (*Config, error) {
	c := base()
	c.src = &source{file: filename, lines: map[string]int{}}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		c.Upstreams = []Upstream{defaultUpstream(defaultUpstreamName)}
		c.finish()
		return c, nil
	case err != nil:
		return nil, syntaxError(filename, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(filename, err)
		}
		return nil, &Error{File: filename, Line: extra.Line, Msg: "more than one YAML document"}
	}

	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d := &decoder{src: c.src, merged: map[*yaml.Node][][2]*yaml.Node{}, merging: map[*yaml.Node]bool{}}
	if err := d.decode(root, reflect.ValueOf(c).Elem(), "", 0); err != nil {
		return nil, err
	}
	if c.Upstreams == nil { // left out or null: the default list
		c.Upstreams = []Upstream{defaultUpstream(defaultUpstreamName)}
	}
	c.finish()
	return c, nil
}

// syntaxError wraps a yaml.v3 parse error, keeping its "line N:" where it has one.
func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		if i := strings.Index(msg, ":"); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// decoder walks a yaml.Node tree against the Config types, so that every error can name the
// file, the line and the field path, and so that list items start from their own defaults.
type decoder struct {
	src *source
	// merged memoizes merge-key expansions per node, so anchors merged into anchors cannot
	// make the work grow exponentially; merging marks the expansions under way, to catch cycles.
	merged  map[*yaml.Node][][2]*yaml.Node
	merging map[*yaml.Node]bool
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) *Error {
	return &Error{File: d.src.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// decode stores n into v (addressable), starting from the value v already holds.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if depth > maxDepth {
		return d.errorf(n, path, "aliases nested too deeply")
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return d.errorf(n, path, "unknown alias")
		}
		return d.decode(n.Alias, v, path, depth+1)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // null keeps the default
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			return d.errorf(n, path, "%v", err)
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		return d.decodeStruct(n, v, path, depth)
	case reflect.Slice:
		return d.decodeSlice(n, v, path, depth)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return d.errorf(n, path, "expected a mapping, got a %s", kindName(n))
		}
		m := reflect.New(v.Type())
		if err := n.Decode(m.Interface()); err != nil {
			return d.errorf(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		v.Set(m.Elem())
		return nil
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return d.errorf(n, path, "expected a string, got a %s", kindName(n))
		}
		v.SetString(n.Value)
		return nil
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			return d.errorf(n, path, "expected true or false, got %s", describe(n))
		}
		v.SetBool(b)
		return nil
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			return d.errorf(n, path, "expected an integer, got %s", describe(n))
		}
		v.SetInt(i)
		return nil
	}
	return d.errorf(n, path, "unsupported field type %s", v.Type())
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, path, "expected a mapping, got a %s", kindName(n))
	}
	fields := fieldsOf(v.Type())
	pairs, err := d.pairs(n, path, depth)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		key, val := p[0], p[1]
		idx, ok := fields[key.Value]
		if key.Kind != yaml.ScalarNode || !ok {
			section := path
			if section == "" {
				section = "config"
			}
			msg := fmt.Sprintf("unknown field %q in %s", key.Value, section)
			if s := suggest(key.Value, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return &Error{File: d.src.file, Line: key.Line, Msg: msg}
		}
		fp := join(path, key.Value)
		d.src.lines[fp] = key.Line
		if err := d.decode(val, v.Field(idx), fp, depth); err != nil {
			return err
		}
	}
	return nil
}

// pairs lists a mapping's key/value pairs with YAML merge keys ("<<: *anchor") expanded;
// explicit keys win over merged ones, and an explicit key given twice is an error.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) ([][2]*yaml.Node, error) {
	var out, merged [][2]*yaml.Node
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			m, err := d.merge(val, path, depth+1)
			if err != nil {
				return nil, err
			}
			merged = append(merged, m...)
			continue
		}
		if k.Kind == yaml.ScalarNode {
			if line, dup := seen[k.Value]; dup {
				return nil, d.errorf(k, join(path, k.Value), "duplicate key (first at line %d)", line)
			}
			seen[k.Value] = k.Line
		}
		out = append(out, [2]*yaml.Node{k, val})
	}
	for _, p := range merged {
		if _, dup := seen[p[0].Value]; !dup {
			seen[p[0].Value] = p[0].Line
			out = append(out, p)
		}
	}
	return out, nil
}

// merge returns the pairs a merge key's value contributes: one mapping or a list of them,
// earlier ones winning.
func (d *decoder) merge(n *yaml.Node, path string, depth int) ([][2]*yaml.Node, error) {
	if depth > maxDepth {
		return nil, d.errorf(n, path, "aliases nested too deeply")
	}
	if out, ok := d.merged[n]; ok {
		return out, nil
	}
	if d.merging[n] {
		return nil, d.errorf(n, path, "merge key includes the mapping it is in")
	}
	d.merging[n] = true
	defer delete(d.merging, n)
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, d.errorf(n, path, "unknown alias")
		}
		return d.merge(n.Alias, path, depth+1)
	case yaml.MappingNode:
		out, err := d.pairs(n, path, depth)
		if err == nil {
			d.merged[n] = out
		}
		return out, err
	case yaml.SequenceNode:
		var out [][2]*yaml.Node
		seen := map[string]bool{}
		for _, item := range n.Content {
			if item.Kind == yaml.SequenceNode {
				return nil, d.errorf(item, path, "merge key needs mappings")
			}
			ps, err := d.merge(item, path, depth+1)
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				if !seen[p[0].Value] {
					seen[p[0].Value] = true
					out = append(out, p)
				}
			}
		}
		d.merged[n] = out
		return out, nil
	}
	return nil, d.errorf(n, path, "merge key needs a mapping, got a %s", kindName(n))
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.SequenceNode {
		return d.errorf(n, path, "expected a list, got a %s", kindName(n))
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		d.src.lines[ip] = item.Line
		e := s.Index(i)
		if e.Type() == reflect.TypeFor[Upstream]() {
			e.Set(reflect.ValueOf(defaultUpstream("")))
		}
		if err := d.decode(item, e, ip, depth); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

// fieldsOf maps a struct's YAML field names to field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = i
	}
	return m
}

// suggest returns the known field closest to an unknown one, if it is close enough to be a
// typo (same letters ignoring case, or at most two edits).
func suggest(key string, fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	best, bestDist := "", 3
	for _, name := range names {
		if strings.EqualFold(name, key) {
			return name
		}
		if dist := editDistance(strings.ToLower(key), strings.ToLower(name)); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes; keys are ASCII).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.DocumentNode:
		return "document"
	}
	return "scalar"
}

// describe quotes a scalar's text, or names the kind of a non-scalar node.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q", n.Value)
	}
	return "a " + kindName(n)
}
