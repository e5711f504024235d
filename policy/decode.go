package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

const (
	// maxDepth bounds alias and merge-key indirection, so a self-referencing anchor cannot
	// recurse forever.
	maxDepth = 64
	// maxNodes bounds the nodes visited while decoding, aliases expanded, so that a small
	// document cannot fan out through nested aliases into billions of nodes.
	maxNodes = 1 << 17
)

// decodeDocument strictly decodes one YAML document into doc: an unknown field, a duplicate
// key or a value of the wrong type is an *Error naming the file, line and field path. It
// records the line of every field path it sees in src. An empty document leaves doc as is.
func decodeDocument(data []byte, src *source, doc *document) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	switch err := dec.Decode(&root); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return syntaxError(src.file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return syntaxError(src.file, err)
		}
		return &Error{File: src.file, Line: extra.Line, Msg: "more than one YAML document"}
	}
	n := &root
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	d := &decoder{src: src, merged: map[*yaml.Node][][2]*yaml.Node{}, budget: maxNodes}
	return d.decode(n, reflect.ValueOf(doc).Elem(), "", 0)
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

// decoder walks a yaml.Node tree against the document types, so that every error can name
// the file, the line and the field path.
type decoder struct {
	src *source
	// merged memoizes merge-key expansions per node.
	merged map[*yaml.Node][][2]*yaml.Node
	// budget is the number of nodes decode may still visit.
	budget int
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) *Error {
	return &Error{File: d.src.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// decode stores n into v (addressable). Null leaves v as it is (nil for pointers, maps and
// slices), so "absent" and "null" mean the same.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if d.budget--; d.budget < 0 {
		return d.errorf(n, path, "document too large once aliases are expanded")
	}
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
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := d.decode(n, p.Elem(), path, depth); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		return d.decodeStruct(n, v, path, depth)
	case reflect.Slice:
		return d.decodeSlice(n, v, path, depth)
	case reflect.Map:
		return d.decodeMap(n, v, path, depth)
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
	}
	return d.errorf(n, path, "unsupported field type %s", v.Type())
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, path, "expected a mapping, got %s", describe(n))
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
				section = "policy"
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

// decodeMap decodes a mapping with string keys into a map; each entry's path is the map's
// path joined with its key.
func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n, path, "expected a mapping, got %s", describe(n))
	}
	pairs, err := d.pairs(n, path, depth)
	if err != nil {
		return err
	}
	m := reflect.MakeMapWithSize(v.Type(), len(pairs))
	for _, p := range pairs {
		key, val := p[0], p[1]
		if key.Kind != yaml.ScalarNode {
			return d.errorf(key, path, "keys must be names, got a %s", kindName(key))
		}
		fp := join(path, key.Value)
		d.src.lines[fp] = key.Line
		e := reflect.New(v.Type().Elem()).Elem()
		if err := d.decode(val, e, fp, depth); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(key.Value), e)
	}
	v.Set(m)
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
		return d.errorf(n, path, "expected a list, got %s", describe(n))
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		d.src.lines[ip] = item.Line
		if err := d.decode(item, s.Index(i), ip, depth); err != nil {
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
