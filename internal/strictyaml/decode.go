package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
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

// Option changes how Decode reports or fills values.
type Option func(*options)

type options struct {
	root      string
	kindsOnly bool
	items     map[reflect.Type]func() reflect.Value
}

// Root names the top level of the document in messages about unknown fields there, as in
// `unknown field "x" in config`. Default "document".
func Root(name string) Option { return func(o *options) { o.root = name } }

// KindsOnly makes "expected a mapping" and "expected a list" errors name a scalar they got by
// its kind ("got a scalar") rather than quote it (`got "5"`). Default: quoted.
func KindsOnly() Option { return func(o *options) { o.kindsOnly = true } }

// ItemDefault makes every list item of type T start from newItem() rather than from T's zero
// value, so that the fields an item leaves out keep their defaults. Default: the zero value.
func ItemDefault[T any](newItem func() T) Option {
	return func(o *options) {
		if o.items == nil {
			o.items = map[reflect.Type]func() reflect.Value{}
		}
		o.items[reflect.TypeFor[T]()] = func() reflect.Value {
			item := newItem()
			return reflect.ValueOf(&item).Elem()
		}
	}
}

// Decode decodes one YAML document strictly into v, a non-nil pointer, starting from the value
// v already holds. An unknown field, a duplicate key, a value of the wrong type or a second
// document is an *Error naming src.File, the line and the field path. Fields the document
// leaves out or sets to null keep their value; an empty document leaves v as it is. Decode
// records in src.Lines (made if nil) the line of every field path it decodes; src may be nil.
//
// Struct fields are named by their yaml tag, or by their lower-cased Go name; "-" and
// unexported fields are skipped. Supported are structs, pointers, slices, maps with string
// keys, strings, bools, ints and types whose pointer implements yaml.Unmarshaler. Maps whose
// values are interfaces (free-form data such as storage driver parameters) are decoded by
// yaml.v3 as they are; other maps strictly, entry by entry.
func Decode(data []byte, src *Source, v any, opts ...Option) error {
	if src == nil {
		src = &Source{}
	}
	if src.Lines == nil {
		src.Lines = map[string]int{}
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: Decode needs a non-nil pointer, not %T", v)
	}
	o := options{root: "document"}
	for _, opt := range opts {
		opt(&o)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return syntaxError(src.File, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return syntaxError(src.File, err)
		}
		return &Error{File: src.File, Line: extra.Line, Msg: "more than one YAML document"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d := &decoder{
		options: o,
		src:     src,
		merged:  map[*yaml.Node][][2]*yaml.Node{},
		merging: map[*yaml.Node]bool{},
		budget:  maxNodes,
	}
	return d.decode(root, rv.Elem(), "", 0)
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

// decoder walks a yaml.Node tree against Go types, so that every error can name the file, the
// line and the field path.
type decoder struct {
	options
	src *Source
	// merged memoizes merge-key expansions per node, so anchors merged into anchors cannot
	// make the work grow exponentially; merging marks the expansions under way, to catch cycles.
	merged  map[*yaml.Node][][2]*yaml.Node
	merging map[*yaml.Node]bool
	// budget is the number of nodes decode may still visit.
	budget int
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) *Error {
	return &Error{File: d.src.File, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// mismatch reports n where a mapping or a list ("want") belongs.
func (d *decoder) mismatch(n *yaml.Node, path, want string) *Error {
	got := describe(n)
	if d.kindsOnly {
		got = "a " + KindName(n)
	}
	return d.errorf(n, path, "expected a %s, got %s", want, got)
}

// decode stores n into v (addressable), starting from the value v already holds. Null leaves
// v as it is (nil for pointers, maps and slices), so "absent" and "null" mean the same.
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
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			return d.errorf(n, path, "%v", err)
		}
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
			return d.errorf(n, path, "expected a string, got a %s", KindName(n))
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
		return d.mismatch(n, path, "mapping")
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
				section = d.root
			}
			msg := fmt.Sprintf("unknown field %q in %s", key.Value, section)
			if s := suggest(key.Value, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return &Error{File: d.src.File, Line: key.Line, Msg: msg}
		}
		fp := Join(path, key.Value)
		d.src.Lines[fp] = key.Line
		if err := d.decode(val, v.Field(idx), fp, depth); err != nil {
			return err
		}
	}
	return nil
}

// decodeMap decodes a mapping into a map. Maps of interface values are free-form and go to
// yaml.v3 whole; other maps need string keys and each entry's path is the map's path joined
// with its key.
func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.MappingNode {
		return d.mismatch(n, path, "mapping")
	}
	t := v.Type()
	if t.Elem().Kind() == reflect.Interface {
		m := reflect.New(t)
		if err := n.Decode(m.Interface()); err != nil {
			return d.errorf(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		v.Set(m.Elem())
		return nil
	}
	if t.Key().Kind() != reflect.String {
		return d.errorf(n, path, "unsupported field type %s", t)
	}
	pairs, err := d.pairs(n, path, depth)
	if err != nil {
		return err
	}
	m := reflect.MakeMapWithSize(t, len(pairs))
	for _, p := range pairs {
		key, val := p[0], p[1]
		if key.Kind != yaml.ScalarNode {
			return d.errorf(key, path, "keys must be names, got a %s", KindName(key))
		}
		fp := Join(path, key.Value)
		d.src.Lines[fp] = key.Line
		e := reflect.New(t.Elem()).Elem()
		if err := d.decode(val, e, fp, depth); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(key.Value).Convert(t.Key()), e)
	}
	v.Set(m)
	return nil
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if n.Kind != yaml.SequenceNode {
		return d.mismatch(n, path, "list")
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	newItem := d.items[v.Type().Elem()]
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		d.src.Lines[ip] = item.Line
		e := s.Index(i)
		if newItem != nil {
			e.Set(newItem())
		}
		if err := d.decode(item, e, ip, depth); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}
