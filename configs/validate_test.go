package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // every problem, in order; nil = valid
	}{
		{name: "defaults", yaml: ""},
		{
			name: "two defaults",
			yaml: "upstreams:\n  - name: docker.io\n    default: true\n  - name: ghcr.io\n    default: true\n",
			want: []string{"p.yaml:5: upstreams[1].default: only one upstream may be the default"},
		},
		{
			name: "no upstreams",
			yaml: "upstreams: []\n",
			want: []string{"p.yaml:1: upstreams: at least one upstream is required"},
		},
		{
			name: "duplicate names",
			yaml: "upstreams:\n  - name: ghcr.io\n  - name: ghcr.io\n",
			want: []string{`p.yaml:3: upstreams[1].name: "ghcr.io" is already the name of upstreams[0]`},
		},
		{
			name: "bad names",
			yaml: "upstreams:\n  - name: https://ghcr.io\n  - name: ghcr.io/acme\n  - name: GHCR.io\n  - {}\n  - name: localhost:0\n",
			want: []string{
				`p.yaml:2: upstreams[0].name: "https://ghcr.io" must be a registry host without a scheme (put the endpoint in url)`,
				`p.yaml:3: upstreams[1].name: "ghcr.io/acme" must be a registry host (host[:port]) without a path`,
				`p.yaml:4: upstreams[2].name: "GHCR.io" is not a valid lowercase host name`,
				`p.yaml:5: upstreams[3].name: is required`,
				`p.yaml:6: upstreams[4].name: "localhost:0" has an invalid port`,
			},
		},
		{
			name: "bad urls",
			yaml: "upstreams:\n  - name: a.io\n    url: ftp://a.io\n  - name: b.io\n    url: https://b.io/v2\n  - name: c.io\n    url: https://u:p@c.io\n  - name: d.io\n    url: http://\n",
			want: []string{
				"p.yaml:3: upstreams[0].url: scheme must be http or https",
				`p.yaml:5: upstreams[1].url: must not have a path (got "/v2"): the registry API lives at /v2/`,
				"p.yaml:7: upstreams[2].url: must not carry credentials (use username and password)",
				`p.yaml:9: upstreams[3].url: "http://" has no host`,
			},
		},
		{
			name: "credential conflicts",
			yaml: "upstreams:\n  - name: a.io\n    password: x\n    passwordFile: /f\n  - name: b.io\n    username: u\n    dockerConfig: /c\n",
			want: []string{
				"p.yaml:4: upstreams[0].passwordFile: password and passwordFile exclude each other",
				"p.yaml:7: upstreams[1].dockerConfig: dockerConfig excludes username, password and passwordFile",
			},
		},
		{
			name: "durations",
			yaml: "upstreams:\n  - name: a.io\n    timeout: 0s\n    retries: -1\ntags:\n  ttl: -1s\nshutdown:\n  drainDelay: 0s\n  gracePeriod: 0s\n",
			want: []string{
				"p.yaml:3: upstreams[0].timeout: must be a positive duration, not 0s",
				"p.yaml:4: upstreams[0].retries: must not be negative",
				"p.yaml:6: tags.ttl: must be a positive duration, not -1s",
				"p.yaml:9: shutdown.gracePeriod: must be a positive duration, not 0s",
			},
		},
		{
			name: "body idle timeout and circuit breaker",
			yaml: "upstreams:\n  - name: a.io\n    bodyIdleTimeout: 0s\n    circuitBreaker: {failures: -1}\n" +
				"  - name: b.io\n    circuitBreaker: {failures: 5, cooldown: 0s}\n" +
				"  - name: c.io\n    circuitBreaker: {failures: 0, cooldown: 0s}\n", // off: no cooldown needed
			want: []string{
				"p.yaml:3: upstreams[0].bodyIdleTimeout: must be a positive duration, not 0s",
				"p.yaml:4: upstreams[0].circuitBreaker.failures: must not be negative (0 turns the breaker off)",
				"p.yaml:6: upstreams[1].circuitBreaker.cooldown: must be a positive duration, not 0s",
			},
		},
		{
			name: "admission limits",
			yaml: "admission:\n  decisionTimeout: 0s\n  maxConcurrentDecisions: 0\n  queueWait: -1s\n  regoTimeout: 0s\n",
			want: []string{
				"p.yaml:2: admission.decisionTimeout: must be a positive duration, not 0s",
				"p.yaml:3: admission.maxConcurrentDecisions: must be positive",
				"p.yaml:4: admission.queueWait: must not be negative",
				"p.yaml:5: admission.regoTimeout: must be a positive duration, not 0s",
			},
		},
		{
			name: "maxStale only matters with staleIfError",
			yaml: "tags:\n  staleIfError: false\n  maxStale: 0s\n",
		},
		{
			name: "maxStale needed with staleIfError",
			yaml: "tags:\n  maxStale: 0s\n",
			want: []string{"p.yaml:2: tags.maxStale: must be a positive duration, not 0s"},
		},
		{
			name: "listeners, tls and log",
			yaml: "listen: localhost\nopsListen: localhost\ntls:\n  cert: c.pem\nlog:\n  level: verbose\n  format: xml\ndataDir: \"\"\n",
			want: []string{
				"p.yaml:1: listen: must be host:port: address localhost: missing port in address",
				"p.yaml:2: opsListen: must be host:port: address localhost: missing port in address",
				"p.yaml:2: opsListen: must differ from listen (localhost)",
				"p.yaml:3: tls: cert and key must be given together",
				"p.yaml:8: dataDir: must not be empty",
				`p.yaml:6: log.level: must be debug, info, warn or error, not "verbose"`,
				`p.yaml:7: log.format: must be text or json, not "xml"`,
			},
		},
		{
			name: "ops listener disabled",
			yaml: "opsListen: \"\"\n",
		},
		{
			name: "content",
			yaml: "content:\n  driver: \"\"\n  maxSize: 0\n  maxManifestSize: 0\n",
			want: []string{
				"p.yaml:2: content.driver: must name a storage driver (filesystem, inmemory, s3aws, ...)",
				"p.yaml:4: content.maxManifestSize: must be positive",
			},
		},
		{
			name: "redis",
			yaml: "cache:\n  stateKeyFile: k\n  redis:\n    addrs: [a:1, b]\n    db: 3\n",
			want: []string{
				"p.yaml:4: cache.redis.addrs[1]: must be host:port: address b: missing port in address",
				"p.yaml:5: cache.redis.db: must be 0 for a Redis cluster (several addrs without masterName)",
			},
		},
		{
			name: "redis needs a state key",
			yaml: "cache:\n  redis:\n    addrs: [a:1]\n",
			want: []string{"p.yaml:1: cache.stateKeyFile: is required with cache.redis: the state key authenticates what replicas " +
				"write to Redis, so that whoever can write to Redis cannot make Portcullis accept a value; make one with " +
				"`head -c 32 /dev/urandom | base64 > state.key`, give every replica the same file and set cache.stateKeyFile " +
				"to its path (or PORTCULLIS_STATE_KEY to its content)"},
		},
		{
			name: "embedded needs no state key",
			yaml: "cache: {}\n",
		},
		{
			name: "redis tls and credentials",
			yaml: "cache:\n  stateKeyFile: k\n  redis:\n    addrs: [a:1]\n    sentinelUsername: s\n    sentinelPassword: p\n" +
				"    tls:\n      certFile: c.pem\n",
			want: []string{
				"p.yaml:5: cache.redis.sentinelUsername: is for sentinels: needs cache.redis.masterName",
				"p.yaml:6: cache.redis.sentinelPassword: is for sentinels: needs cache.redis.masterName",
				"p.yaml:7: cache.redis.tls: certFile and keyFile must be given together",
			},
		},
		{
			name: "redis tls without redis",
			yaml: "cache:\n  redis:\n    tls:\n      enabled: true\n",
			want: []string{"p.yaml:3: cache.redis.tls: needs Redis addresses in cache.redis.addrs"},
		},
		{
			name: "sentinel with tls, acl and sentinel credentials",
			yaml: "cache:\n  stateKeyFile: k\n  redis:\n    addrs: [s1:26379, s2:26379]\n    masterName: m\n" +
				"    username: u\n    password: p\n    sentinelUsername: su\n    sentinelPassword: sp\n" +
				"    tls:\n      caFile: ca.pem\n      certFile: c.pem\n      keyFile: k.pem\n      serverName: redis.internal\n",
		},
		{
			name: "sentinel needs addresses",
			yaml: "cache:\n  redis:\n    masterName: m\n",
			want: []string{"p.yaml:3: cache.redis.masterName: needs sentinel addresses in cache.redis.addrs"},
		},
		{
			name: "sentinel may use a db",
			yaml: "cache:\n  stateKeyFile: k\n  redis:\n    addrs: [s1:26379, s2:26379]\n    masterName: m\n    db: 3\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			if err := c.Validate(); err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var ce *Error
					if !errors.As(e, &ce) {
						t.Errorf("%v is not an *Error", e)
					}
					got = append(got, e.Error())
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateWithoutSource(t *testing.T) {
	c := Default()
	c.Upstreams[0].URL = "gopher://x"
	err := c.Validate()
	if err == nil || err.Error() != "upstreams[0].url: scheme must be http or https" {
		t.Errorf("Validate() = %v", err)
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing")
	pw := write("pw", "s3cret\n")
	empty := write("empty", "")
	notPEM := write("ca.txt", "hello")

	tests := []struct {
		name string
		edit func(c *Config)
		want string // substring of the error; "" = no error
	}{
		{name: "nothing referenced", edit: func(*Config) {}},
		{name: "password file", edit: func(c *Config) { c.Upstreams[0].PasswordFile = pw }},
		{name: "missing tls cert", edit: func(c *Config) { c.TLS = TLS{Cert: missing, Key: pw} }, want: "tls.cert: stat " + missing},
		{name: "missing policy", edit: func(c *Config) { c.Policy = missing }, want: "policy: stat " + missing},
		{name: "missing ca", edit: func(c *Config) { c.Upstreams[0].CAFile = missing }, want: "upstreams[0].caFile: open " + missing},
		{name: "ca without pem", edit: func(c *Config) { c.Upstreams[0].CAFile = notPEM }, want: "holds no PEM certificate"},
		{name: "missing password file", edit: func(c *Config) { c.Upstreams[0].PasswordFile = missing }, want: "upstreams[0].passwordFile: open " + missing},
		{name: "empty password file", edit: func(c *Config) { c.Upstreams[0].PasswordFile = empty }, want: "is empty"},
		{name: "missing docker config", edit: func(c *Config) { c.Upstreams[0].DockerConfig = missing }, want: "upstreams[0].dockerConfig: open " + missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(c)
			err := c.CheckFiles()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckFiles() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckFiles() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	body := "upstreams:\n  - name: ghcr.io\n    timeout: 5s\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORTCULLIS_UPSTREAM_GHCR_IO_PASSWORD", "from-env")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Upstreams[0].Password; got != "from-env" {
		t.Errorf("password = %q, want the env override", got)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("upstreams:\n  - name: ghcr.io\n    timeout: 0s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || err.Error() != bad+":3: upstreams[0].timeout: must be a positive duration, not 0s" {
		t.Errorf("Load(bad) = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "nope.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}
