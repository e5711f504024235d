package configs

import (
	"errors"
	"gopkg.in/yaml.v3"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// ignoreSource compares Configs by content, not by where they were parsed from.
var ignoreSource = cmpopts.IgnoreUnexported(Config{})

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // exact error text
	}{
		{
			name: "unknown top-level field",
			yaml: "listen: 127.0.0.1:5000\nbogus: x\n",
			want: `p.yaml:2: unknown field "bogus" in config`,
		},
		{
			name: "unknown field with suggestion",
			yaml: "lisen: 127.0.0.1:5000\n",
			want: `p.yaml:1: unknown field "lisen" in config (did you mean "listen"?)`,
		},
		{
			name: "unknown field in list item",
			yaml: "upstreams:\n  - name: docker.io\n  - name: ghcr.io\n    timout: 5s\n",
			want: `p.yaml:4: unknown field "timout" in upstreams[1] (did you mean "timeout"?)`,
		},
		{
			name: "unknown field in nested section",
			yaml: "cache:\n  redis:\n    adress: [a:1]\n",
			want: `p.yaml:3: unknown field "adress" in cache.redis`,
		},
		{
			name: "case mismatch suggests the right spelling",
			yaml: "opslisten: x\n",
			want: `p.yaml:1: unknown field "opslisten" in config (did you mean "opsListen"?)`,
		},
		{
			name: "bad duration",
			yaml: "upstreams:\n  - name: docker.io\n    timeout: 30\n",
			want: `p.yaml:3: upstreams[0].timeout: invalid duration "30" (want e.g. 30s, 5m, 24h, 7d)`,
		},
		{
			name: "bad duration in section",
			yaml: "tags:\n  ttl: soon\n",
			want: `p.yaml:2: tags.ttl: invalid duration "soon" (want e.g. 30s, 5m, 24h, 7d)`,
		},
		{
			name: "duration given a mapping",
			yaml: "shutdown:\n  gracePeriod: {s: 1}\n",
			want: `p.yaml:2: shutdown.gracePeriod: expected a duration string such as 30s, got a mapping`,
		},
		{
			name: "bad size",
			yaml: "content:\n  maxSize: 10 gigs\n",
			want: `p.yaml:2: content.maxSize: invalid size "10 gigs": unknown unit "gigs" (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)`,
		},
		{
			name: "bool given a word",
			yaml: "tags:\n  staleIfError: yes\n",
			want: `p.yaml:2: tags.staleIfError: expected true or false, got "yes"`,
		},
		{
			name: "int given a string",
			yaml: "upstreams:\n  - name: docker.io\n    retries: three\n",
			want: `p.yaml:3: upstreams[0].retries: expected an integer, got "three"`,
		},
		{
			name: "int given a quoted number",
			yaml: "cache:\n  redis:\n    db: \"1\"\n",
			want: `p.yaml:3: cache.redis.db: expected an integer, got "1"`,
		},
		{
			name: "string given a list",
			yaml: "listen: [a, b]\n",
			want: `p.yaml:1: listen: expected a string, got a list`,
		},
		{
			name: "section given a scalar",
			yaml: "tags: 30s\n",
			want: `p.yaml:1: tags: expected a mapping, got a scalar`,
		},
		{
			name: "list given a mapping",
			yaml: "upstreams:\n  name: docker.io\n",
			want: `p.yaml:2: upstreams: expected a list, got a mapping`,
		},
		{
			name: "parameters given a list",
			yaml: "content:\n  parameters: [a]\n",
			want: `p.yaml:2: content.parameters: expected a mapping, got a list`,
		},
		{
			name: "duplicate key",
			yaml: "listen: a:1\ndataDir: x\nlisten: b:2\n",
			want: `p.yaml:3: listen: duplicate key (first at line 1)`,
		},
		{
			name: "top level not a mapping",
			yaml: "- a\n- b\n",
			want: `p.yaml:1: expected a mapping, got a list`,
		},
		{
			name: "two documents",
			yaml: "listen: a:1\n---\nlisten: b:2\n",
			want: `p.yaml:2: more than one YAML document`,
		},
		{
			name: "merge cycle",
			yaml: "tags: &a {<<: [*a]}\n",
			want: `p.yaml:1: tags: merge key includes the mapping it is in`,
		},
		{
			name: "doc.go example",
			yaml: "upstreams:\n  - name: docker.io\n    timeout: 3o s\n",
			want: `p.yaml:3: upstreams[0].timeout: invalid duration "3o s" (want e.g. 30s, 5m, 24h, 7d)`,
		},
		{
			name: "syntax error",
			yaml: "listen: a:1\n  bad: [\n",
			want: `p.yaml:2: invalid YAML: mapping values are not allowed in this context`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "p.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got  %s\n want %s", err, tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != "p.yaml" {
				t.Errorf("error %#v is not an *Error naming the file", err)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	want := Default()
	for _, in := range []string{"", "# just a comment\n", "---\n", "{}\n", "listen:\n"} {
		t.Run(strings.TrimSpace(in), func(t *testing.T) {
			got, err := Parse([]byte(in), "empty.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, ignoreSource); diff != "" {
				t.Errorf("Parse(%q) differs from Default() (-want +got):\n%s", in, diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("defaults do not validate: %v", err)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	want := &Config{
		Listen:    "127.0.0.1:5000",
		OpsListen: "127.0.0.1:5001",
		DataDir:   "./portcullis-data",
		Log:       Log{Level: "info", Format: "text"},
		Upstreams: []Upstream{{Name: "docker.io", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker}},
		Tags:      Tags{TTL: Duration(30 * time.Second), StaleIfError: true, MaxStale: Duration(24 * time.Hour)},
		Content: Content{
			Driver:          "filesystem",
			Parameters:      map[string]any{"rootdirectory": "portcullis-data/content"},
			MaxManifestSize: 4 << 20,
			SpoolMaxSize:    8 << 30,
		},
		Cache:    Cache{Redis: Redis{KeyPrefix: "portcullis:"}},
		Shutdown: Shutdown{DrainDelay: Duration(5 * time.Second), GracePeriod: Duration(30 * time.Second)},
		Admin:    Admin{Listen: "127.0.0.1:5002"},
		Admission: Admission{DecisionTimeout: Duration(30 * time.Second), MaxConcurrentDecisions: 32,
			QueueWait: Duration(10 * time.Second), RegoTimeout: Duration(100 * time.Millisecond)},
	}
	if diff := cmp.Diff(want, Default(), ignoreSource); diff != "" {
		t.Errorf("Default() (-want +got):\n%s", diff)
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		edit func(c *Config) // applied to Default() to get the expected config
	}{
		{
			name: "zero values override defaults",
			yaml: "opsListen: \"\"\ntags:\n  staleIfError: false\n  maxStale: 0s\n" +
				"upstreams:\n  - name: docker.io\n    retries: 0\n",
			edit: func(c *Config) {
				c.OpsListen = ""
				c.Tags.StaleIfError = false
				c.Tags.MaxStale = 0
				c.Upstreams[0].Retries = 0
			},
		},
		{
			name: "null keeps the default",
			yaml: "opsListen: null\ntags:\n  ttl: ~\n",
			edit: func(c *Config) {},
		},
		{
			name: "list items get their own defaults",
			yaml: "upstreams:\n  - name: ghcr.io\n    timeout: 1m\n  - name: quay.io\n    url: http://quay.local:8080/\n",
			edit: func(c *Config) {
				c.Upstreams = []Upstream{
					{Name: "ghcr.io", Timeout: Duration(time.Minute), Retries: 3, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker},
					{Name: "quay.io", URL: "http://quay.local:8080/", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker},
				}
			},
		},
		{
			name: "7d durations and sizes",
			yaml: "tags:\n  maxStale: 7d\ncontent:\n  maxSize: 10GiB\n  maxManifestSize: 1048576\n  spoolMaxSize: 2GiB\n",
			edit: func(c *Config) {
				c.Tags.MaxStale = Duration(7 * 24 * time.Hour)
				c.Content.MaxSize = 10 << 30
				c.Content.MaxManifestSize = 1 << 20
				c.Content.SpoolMaxSize = 2 << 30
			},
		},
		{
			name: "rootdirectory follows dataDir",
			yaml: "dataDir: /var/lib/p\n",
			edit: func(c *Config) {
				c.DataDir = "/var/lib/p"
				c.Content.Parameters = map[string]any{"rootdirectory": "/var/lib/p/content"}
			},
		},
		{
			name: "driver parameters pass through",
			yaml: "content:\n  driver: s3aws\n  parameters:\n    region: eu-west-1\n    encrypt: true\n    chunksize: 5242880\n",
			edit: func(c *Config) {
				c.Content.Driver = "s3aws"
				c.Content.Parameters = map[string]any{"region": "eu-west-1", "encrypt": true, "chunksize": 5242880}
			},
		},
		{
			name: "anchors, aliases and merge keys",
			yaml: "x-common: &common\n  timeout: 10s\n  retries: 1\n" +
				"upstreams:\n  - <<: *common\n    name: ghcr.io\n  - <<: *common\n    name: quay.io\n    retries: 5\n",
			edit: func(c *Config) {
				c.Upstreams = []Upstream{
					{Name: "ghcr.io", Timeout: Duration(10 * time.Second), Retries: 1, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker},
					{Name: "quay.io", Timeout: Duration(10 * time.Second), Retries: 5, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker},
				}
			},
		},
		{
			name: "private addresses, new and old name",
			yaml: "upstreams:\n  - name: a.example\n    allowPrivateAddresses: true\n  - name: b.example\n    allowPrivateTokenRealm: true\n  - name: c.example\n",
			edit: func(c *Config) {
				c.Upstreams = []Upstream{
					{Name: "a.example", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker, AllowPrivateAddresses: true},
					{Name: "b.example", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker, AllowPrivateTokenRealm: true},
					{Name: "c.example", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker},
				}
			},
		},
		{
			name: "body idle timeout and circuit breaker, a field left out keeps its default",
			yaml: "upstreams:\n  - name: a.example\n    bodyIdleTimeout: 2m\n    circuitBreaker: {failures: 3}\n" +
				"  - name: b.example\n    circuitBreaker: {cooldown: 1m}\n  - name: c.example\n    circuitBreaker: {failures: 0}\n",
			edit: func(c *Config) {
				c.Upstreams = []Upstream{
					{Name: "a.example", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: Duration(2 * time.Minute),
						CircuitBreaker: CircuitBreaker{Failures: 3, Cooldown: Duration(30 * time.Second)}},
					{Name: "b.example", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: defIdle,
						CircuitBreaker: CircuitBreaker{Failures: 10, Cooldown: Duration(time.Minute)}},
					{Name: "c.example", Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: defIdle,
						CircuitBreaker: CircuitBreaker{Failures: 0, Cooldown: Duration(30 * time.Second)}},
				}
			},
		},
		{
			name: "redis",
			yaml: "cache:\n  redis:\n    addrs: [r1:6379, r2:6379]\n    masterName: mymaster\n    db: 2\n",
			edit: func(c *Config) {
				c.Cache.Redis = Redis{Addrs: []string{"r1:6379", "r2:6379"}, MasterName: "mymaster", DB: 2, KeyPrefix: "portcullis:"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Extension keys like x-common are not part of the schema.
			in := tt.yaml
			if strings.HasPrefix(in, "x-common") {
				_, err := Parse([]byte(in), "p.yaml")
				if err == nil || !strings.Contains(err.Error(), `unknown field "x-common"`) {
					t.Fatalf("x-common should be unknown, got %v", err)
				}
				in = strings.Replace(in, "x-common: &common\n  timeout: 10s\n  retries: 1\n", "", 1)
				in = strings.Replace(in, "upstreams:\n  - <<: *common\n",
					"upstreams:\n  - <<: &common {timeout: 10s, retries: 1}\n", 1)
			}
			got, err := Parse([]byte(in), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.edit(want)
			if diff := cmp.Diff(want, got, ignoreSource); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultUpstream(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{name: "first when none says default", yaml: "upstreams: [{name: ghcr.io}, {name: docker.io}]", want: "ghcr.io"},
		{name: "the one marked default", yaml: "upstreams: [{name: ghcr.io}, {name: docker.io, default: true}]", want: "docker.io"},
		{name: "built-in default list", yaml: "", want: "docker.io"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			u := c.DefaultUpstream()
			if u == nil || u.Name != tt.want {
				t.Fatalf("DefaultUpstream() = %+v, want %s", u, tt.want)
			}
			if u != &c.Upstreams[0] && u != &c.Upstreams[len(c.Upstreams)-1] {
				t.Error("DefaultUpstream() does not point into c.Upstreams")
			}
		})
	}
	if u := (&Config{}).DefaultUpstream(); u != nil {
		t.Errorf("DefaultUpstream() of no upstreams = %+v, want nil", u)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	data, err := os.ReadFile("production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Config{"default": Default(), "production": mustParse(t, data)} {
		t.Run(name, func(t *testing.T) {
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out, "out.yaml")
			if err != nil {
				t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
			}
			if diff := cmp.Diff(c, back, ignoreSource); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func mustParse(t *testing.T, data []byte) *Config {
	t.Helper()
	c, err := Parse(data, "in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// defIdle and defBreaker are an upstream's default body idle timeout and circuit breaker.
var (
	defIdle    = Duration(30 * time.Second)
	defBreaker = CircuitBreaker{Failures: 10, Cooldown: Duration(30 * time.Second)}
)
