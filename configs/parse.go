package configs

import (
	"fmt"
	"os"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

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
	c.src = &strictyaml.Source{File: filename, Lines: map[string]int{}}
	// KindsOnly keeps the wording configuration errors have always had ("got a scalar").
	err := strictyaml.Decode(data, c.src, c,
		strictyaml.Root("config"),
		strictyaml.KindsOnly(),
		strictyaml.ItemDefault(func() Upstream { return defaultUpstream("") }))
	if err != nil {
		return nil, err
	}
	if c.Upstreams == nil { // left out, null or an empty document: the default list
		c.Upstreams = []Upstream{defaultUpstream(defaultUpstreamName)}
	}
	c.finish()
	return c, nil
}
