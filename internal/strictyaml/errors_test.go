package strictyaml

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"everything", Error{File: "f.yaml", Line: 3, Path: "a.b", Msg: "bad"}, "f.yaml:3: a.b: bad"},
		{"no line", Error{File: "f.yaml", Path: "a.b", Msg: "bad"}, "f.yaml: a.b: bad"},
		{"no file", Error{Line: 3, Path: "a.b", Msg: "bad"}, "line 3: a.b: bad"},
		{"no path", Error{File: "f.yaml", Line: 3, Msg: "bad"}, "f.yaml:3: bad"},
		{"message only", Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSourceLine(t *testing.T) {
	src := &Source{File: "f.yaml", Lines: map[string]int{"a": 1, "a.b": 2, "a.b[1]": 4, "c": 9}}
	tests := []struct {
		path string
		want int
	}{
		{"a.b[1]", 4},
		{"a.b[1].c.d", 4}, // left out: its closest parent
		{"a.b[0]", 2},
		{"a.x", 1},
		{"c", 9},
		{"z.y", 0},
		{"", 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := src.Line(tt.path); got != tt.want {
				t.Errorf("Line(%q) = %d, want %d", tt.path, got, tt.want)
			}
		})
	}
	if got := (*Source)(nil).Line("a"); got != 0 {
		t.Errorf("nil Source: Line = %d", got)
	}
	want := &Error{File: "f.yaml", Line: 2, Path: "a.b.x", Msg: "bad 1"}
	if diff := cmp.Diff(want, src.Errorf("a.b.x", "bad %d", 1)); diff != "" {
		t.Errorf("Errorf (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&Error{Path: "a", Msg: "bad"}, (*Source)(nil).Errorf("a", "bad")); diff != "" {
		t.Errorf("nil Source: Errorf (-want +got):\n%s", diff)
	}
}

func TestProblems(t *testing.T) {
	var empty Problems
	if empty.Err() != nil || empty.Len() != 0 {
		t.Errorf("zero Problems: Err = %v, Len = %d", empty.Err(), empty.Len())
	}
	p := &Problems{Source: &Source{File: "f.yaml", Lines: map[string]int{"b": 5, "a": 2}}}
	p.Add("b.x", "second %s", "b")
	p.Add("a", "first")
	p.Add("", "nowhere")
	if p.Len() != 3 {
		t.Errorf("Len = %d, want 3", p.Len())
	}
	// In the order added, not by line.
	want := "f.yaml:5: b.x: second b\nf.yaml:2: a: first\nf.yaml: nowhere"
	err := p.Err()
	if err == nil || err.Error() != want {
		t.Errorf("Err = %v, want %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Path != "b.x" {
		t.Errorf("errors.As = %+v", e)
	}
	var built Problems // no Source: a configuration built in code
	built.Add("a", "bad")
	if err := built.Err(); err == nil || err.Error() != "a: bad" {
		t.Errorf("no Source: Err = %v", err)
	}
}

func TestJoinByLine(t *testing.T) {
	if err := JoinByLine(nil); err != nil {
		t.Errorf("JoinByLine(nil) = %v", err)
	}
	errs := []*Error{{Line: 5, Msg: "c"}, {Line: 2, Msg: "a"}, {Line: 5, Msg: "d"}, {Msg: "none"}, {Line: 2, Msg: "b"}}
	want := "none\nline 2: a\nline 2: b\nline 5: c\nline 5: d"
	if err := JoinByLine(errs); err == nil || err.Error() != want {
		t.Errorf("JoinByLine = %v, want %s", err, want)
	}
}

func TestPaths(t *testing.T) {
	tests := []struct{ path, field, joined, parent string }{
		{"", "a", "a", ""},
		{"a", "b", "a.b", ""},
		{"a.b[1]", "c", "a.b[1].c", "a.b"},
		{"rules[0]", "name", "rules[0].name", "rules"},
	}
	for _, tt := range tests {
		t.Run(tt.joined, func(t *testing.T) {
			if got := Join(tt.path, tt.field); got != tt.joined {
				t.Errorf("Join(%q, %q) = %q, want %q", tt.path, tt.field, got, tt.joined)
			}
			if got := parent(tt.path); got != tt.parent {
				t.Errorf("parent(%q) = %q, want %q", tt.path, got, tt.parent)
			}
			if got := parent(tt.joined); got != tt.path {
				t.Errorf("parent(%q) = %q, want %q", tt.joined, got, tt.path)
			}
		})
	}
}
