package configs

import (
	"os"
	"testing"
)

// FuzzParse checks that no input makes Parse, Validate, ApplyEnv or Endpoint panic or hang.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"quickstart.yaml", "production.yaml"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"",
		"listen: [\n",
		"upstreams: [{name: docker.io, timeout: 7d, retries: 3}]",
		"a: &a [*a]\nupstreams: *a\n",
		"upstreams:\n  - &u {name: x.io}\n  - <<: *u\n    name: y.io\n",
		"tags: {<<: [{ttl: 1s}, {ttl: 2s}], maxStale: 1.5d}",
		"content: {maxSize: 1.5GiB, parameters: {a: &x [1, *x]}}",
		"? [a]\n: b\n",
		"cache: {redis: {addrs: [a:1, b:2], db: 9223372036854775807}}",
		"upstreams: [{retries: 99999999999999999999}]",
		"x: !!binary aGVsbG8=",
		"--- 1\n--- 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config with an error")
			}
			return
		}
		_ = c.Validate()
		_ = c.DefaultUpstream()
		for _, u := range c.Upstreams {
			_, _ = u.Endpoint()
		}
		c.ApplyEnv(func(string) string { return "x" })
	})
}
