package strictyaml

import (
	"errors"
	"testing"
)

// FuzzDecode checks that no input makes Decode panic or hang, that every failure is an
// *Error, and that every recorded line is a real one.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"",
		"name: [\n",
		"name: x\ncount: 3\nbig: 1\nenabled: true\nwait: 1d12h\nsmall: 1\n",
		"items: [{name: a, port: 1}, {on: true}]\nptr: {name: p}\n",
		"items:\n  - &u {name: x}\n  - <<: *u\n    port: 2\n",
		"ptr: {<<: [{name: a}, {port: 2}], on: true}\n",
		"ptr: &a {<<: [*a]}\n",
		"tree: &t {kids: [*t, *t]}\n",
		"named: {a: &a {name: x}, b: *a, c: null}\nfree: {x: &x [1, *x]}\n",
		"grid: [&l [&m [a, b], *m], *l]\n",
		"? [a]\n: b\n",
		"count: 99999999999999999999\n",
		"x: !!binary aGVsbG8=\n",
		"--- 1\n--- 2\n",
		aliasBomb(),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range [][]Option{nil, {KindsOnly(), Root("config"), ItemDefault(func() item { return item{Port: 80} })}} {
			src := &Source{File: "fuzz.yaml"}
			var doc testDoc
			err := Decode(data, src, &doc, opts...)
			var e *Error
			if err != nil && !errors.As(err, &e) {
				t.Fatalf("error %T is not an *Error: %v", err, err)
			}
			for path, line := range src.Lines {
				if line < 1 {
					t.Fatalf("line of %q = %d", path, line)
				}
			}
		}
	})
}
