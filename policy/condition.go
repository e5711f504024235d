package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// condition tests one value of an attestation's predicate. The value at path must be a JSON
// string, number or boolean; it is compared by its text (strings unquoted, numbers as written,
// true or false) with exactly one of equals, matches (unanchored Go regexp) and in.
type condition struct {
	path    string
	keys    []string
	equals  *string
	matches *regexp.Regexp
	in      []string
}

// compileCondition checks one condition document, reporting problems at path.
func compileCondition(p *problems, path string, c *conditionDoc) *condition {
	if c == nil {
		p.add(path, "empty condition")
		return nil
	}
	out := &condition{path: c.Path, equals: c.Equals, in: c.In}
	keys, err := splitPath(c.Path)
	if err != nil {
		p.add(join(path, "path"), "%v", err)
	}
	out.keys = keys
	n := 0
	if c.Equals != nil {
		n++
	}
	if c.Matches != nil {
		n++
		re, err := regexp.Compile(*c.Matches)
		if err != nil {
			p.add(join(path, "matches"), "bad regexp: %v", reErr(err))
		}
		out.matches = re
	}
	if c.In != nil {
		n++
		if len(c.In) == 0 {
			p.add(join(path, "in"), "must list at least one value")
		}
	}
	if n != 1 {
		p.add(path, "needs exactly one of equals, matches and in")
	}
	return out
}

// reErr shortens regexp errors: "error parsing regexp: missing closing ): `(`" keeps its
// useful part.
func reErr(err error) string { return strings.TrimPrefix(err.Error(), "error parsing regexp: ") }

// splitPath splits a predicate path such as "builder.id" or "materials[0].uri" (also
// "materials.0.uri") into keys.
func splitPath(path string) ([]string, error) {
	if strings.TrimSpace(path) == "" {
		return nil, fmt.Errorf("required (a dotted path into the predicate, e.g. builder.id)")
	}
	var keys []string
	for _, part := range strings.Split(path, ".") {
		key, rest, hasIndex := strings.Cut(part, "[")
		if key == "" && !(hasIndex && len(keys) > 0) {
			return nil, fmt.Errorf("bad path %q: empty key", path)
		}
		if key != "" {
			keys = append(keys, key)
		}
		for hasIndex {
			var idx string
			var ok bool
			idx, rest, ok = strings.Cut(rest, "]")
			if _, err := strconv.Atoi(idx); !ok || err != nil || strings.HasPrefix(idx, "-") {
				return nil, fmt.Errorf("bad path %q: want [N] with N a list index", path)
			}
			keys = append(keys, idx)
			if rest == "" {
				break
			}
			if rest[0] != '[' {
				return nil, fmt.Errorf("bad path %q: want \".\" or \"[\" after \"]\"", path)
			}
			rest = rest[1:]
		}
	}
	return keys, nil
}

// check tests the condition on a decoded predicate and returns a failure clause, or "".
func (c *condition) check(pred any) string {
	v, found := lookup(pred, c.keys)
	if !found {
		return c.path + " missing"
	}
	text, ok := scalarText(v)
	if !ok {
		return fmt.Sprintf("%s is %s, want a string, number or boolean", c.path, kindOf(v))
	}
	switch {
	case c.equals != nil:
		if text != *c.equals {
			return fmt.Sprintf("%s = %s, want %q", c.path, quote(text), *c.equals)
		}
	case c.matches != nil:
		if !c.matches.MatchString(text) {
			return fmt.Sprintf("%s = %s, want a match for %s", c.path, quote(text), c.matches)
		}
	default:
		for _, want := range c.in {
			if text == want {
				return ""
			}
		}
		wants := make([]string, len(c.in))
		for i, w := range c.in {
			wants[i] = strconv.Quote(w)
		}
		return fmt.Sprintf("%s = %s, want one of %s", c.path, quote(text), strings.Join(wants, ", "))
	}
	return ""
}

// decodePredicate decodes predicate JSON, keeping numbers as written.
func decodePredicate(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// lookup follows keys through objects (by name) and arrays (by index). JSON null counts as
// missing.
func lookup(v any, keys []string) (any, bool) {
	for _, k := range keys {
		switch t := v.(type) {
		case map[string]any:
			next, ok := t[k]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, v != nil
}

func scalarText(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		return strconv.FormatBool(t), true
	}
	return "", false
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return "a value"
}

// quote quotes a predicate value for a message, shortening long ones.
func quote(s string) string {
	const maxLen = 120
	if len(s) > maxLen {
		return strconv.Quote(s[:maxLen]) + "…"
	}
	return strconv.Quote(s)
}
