package admin

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/admission"
)

// checkGoType holds the schema s to the Go type ty an answer is marshalled from: the same property names, the
// fields without omitempty or omitzero required and the others not, a pointer without omitempty nullable, and the
// same on down.
func (d openAPISchemas) checkGoType(s map[string]any, ty reflect.Type, path string) []string {
	s = d.deref(s)
	if s == nil {
		return []string{path + ": no schema"}
	}
	if one, ok := s["oneOf"].([]any); ok { // {X} or null: X
		var nonNull []map[string]any
		for _, sub := range one {
			if sm := d.deref(asMap(sub)); sm["type"] != "null" {
				nonNull = append(nonNull, sm)
			}
		}
		if len(nonNull) != 1 {
			return []string{path + ": a oneOf that is not {X, null}"}
		}
		s = nonNull[0]
	}
	for ty.Kind() == reflect.Pointer {
		ty = ty.Elem()
	}
	want := ""
	switch {
	case ty == reflect.TypeFor[time.Time]():
		if s["type"] != "string" || s["format"] != "date-time" {
			return []string{fmt.Sprintf("%s: a time, want type string, format date-time, not %v %v", path, s["type"], s["format"])}
		}
		return nil
	case ty.Kind() == reflect.Struct:
		want = "object"
	case ty.Kind() == reflect.Slice:
		want = "array"
	case ty.Kind() == reflect.Map:
		want = "object"
	case ty.Kind() == reflect.String:
		want = "string"
	case ty.Kind() == reflect.Bool:
		want = "boolean"
	case ty.Kind() >= reflect.Int && ty.Kind() <= reflect.Uint64:
		want = "integer"
	default:
		return []string{fmt.Sprintf("%s: the check does not know %s", path, ty)}
	}
	if got, _ := s["type"].(string); got != want && !(want == "object" && d.composed(s)) {
		return []string{fmt.Sprintf("%s: Go %s is %s, the document says %v", path, ty, want, s["type"])}
	}
	var errs []string
	switch ty.Kind() {
	case reflect.Slice:
		return d.checkGoType(asMap(s["items"]), ty.Elem(), path+"[]")
	case reflect.Map:
		return d.checkGoType(asMap(s["additionalProperties"]), ty.Elem(), path+"{}")
	case reflect.Struct:
		fields := jsonFields(ty)
		props := d.properties(s)
		var names, required []string
		for _, f := range fields {
			names = append(names, f.name)
			if !f.optional {
				required = append(required, f.name)
			}
			p, ok := props[f.name]
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: the answer has %q, the document does not", path, f.name))
				continue
			}
			if f.typ.Kind() == reflect.Pointer && !f.optional && !d.nullable(p) {
				errs = append(errs, fmt.Sprintf("%s.%s: may be null, the document does not say so", path, f.name))
			}
			errs = append(errs, d.checkGoType(p, f.typ, path+"."+f.name)...)
		}
		for name := range props {
			if !slices.Contains(names, name) {
				errs = append(errs, fmt.Sprintf("%s: the document has %q, the answer does not", path, name))
			}
		}
		slices.Sort(required)
		if got := d.required(s); !slices.Equal(got, required) {
			errs = append(errs, fmt.Sprintf("%s: required %q, the answer always has %q", path, got, required))
		}
	}
	return errs
}

// nullable reports whether s admits null.
func (d openAPISchemas) nullable(s map[string]any) bool {
	s = d.deref(s)
	if one, ok := s["oneOf"].([]any); ok {
		for _, sub := range one {
			if d.nullable(asMap(sub)) {
				return true
			}
		}
	}
	switch ty := s["type"].(type) {
	case string:
		return ty == "null"
	case []any:
		return slices.Contains(ty, any("null"))
	}
	return false
}

type jsonField struct {
	name     string
	typ      reflect.Type
	optional bool // omitempty or omitzero: absent rather than empty
}

// jsonFields lists the fields encoding/json writes for the struct type ty, embedded structs flattened.
func jsonFields(ty reflect.Type) []jsonField {
	var out []jsonField
	for f := range ty.Fields() {
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...) // promoted, even from an unexported type
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type, optional: strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")})
	}
	return out
}

// TestOpenAPIAnswerTypes: the typed answers' Go types and their schemas agree field by field.
func TestOpenAPIAnswerTypes(t *testing.T) {
	d := loadOpenAPISchemas(t)
	for _, tc := range []struct {
		schema string
		ty     reflect.Type
	}{
		{"Explanation", reflect.TypeFor[explainAnswer]()},
		{"PolicyPreview", reflect.TypeFor[previewAnswer]()},
		{"ListEntry", reflect.TypeFor[admission.ListEntry]()},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			for _, e := range d.checkGoType(d.at("#/components/schemas/"+tc.schema), tc.ty, tc.schema) {
				t.Error(e)
			}
		})
	}
}
