package strictyaml

import "gopkg.in/yaml.v3"

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
				return nil, d.errorf(k, Join(path, k.Value), "duplicate key (first at line %d)", line)
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
	return nil, d.errorf(n, path, "merge key needs a mapping, got a %s", KindName(n))
}
