// Package strictyaml is the strict YAML decoder shared by configs and policy: it walks a
// yaml.v3 node tree into Go structs by reflection so that every problem names the file, the
// line and the field path, in the style of Caddy's StrictUnmarshalJSON:
//
//	portcullis.yaml:7: unknown field "timout" in upstreams[0] (did you mean "timeout"?)
//	policy.yaml:3: rules[0].name: duplicate key (first at line 2)
//
// It owns:
//
//   - Decode: one document, strictly. Unknown fields (with a "did you mean" suggestion),
//     duplicate keys, values of the wrong type and more than one document are errors. Null and
//     absent fields keep what the target already holds, so callers decode over defaults.
//     Anchors, aliases and merge keys ("<<: *base") work; alias nesting, merge cycles and
//     alias fan-out are bounded, so a few bytes cannot make it recurse forever or visit
//     billions of nodes.
//   - Source: the file name and the line of every field path decoded, so checks done after
//     decoding can point into the file too (Problems, Source.Errorf).
//   - Error: one located problem, formatted "FILE:LINE: PATH: MSG".
//   - ParseDuration and FormatDuration: durations as strings, days included ("7d", "1d12h").
//
// It knows nothing of which fields exist, their defaults or what values mean; those stay in
// the packages that use it. It must never do I/O or import anything beyond the standard
// library and gopkg.in/yaml.v3: package policy depends on it and must stay pure.
package strictyaml
