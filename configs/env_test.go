package configs

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io":           "DOCKER_IO",
		"localhost:5000":      "LOCALHOST_5000",
		"my-registry.example": "MY_REGISTRY_EXAMPLE",
		"[::1]:5000":          "___1__5000",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	yaml := "upstreams:\n" +
		"  - name: docker.io\n    username: fileuser\n    passwordFile: /run/secrets/hub\n" +
		"  - name: ghcr.io\n    dockerConfig: /root/.docker/config.json\n" +
		"  - name: localhost:5000\n    username: keep\n    password: keep\n" +
		"cache:\n  stateKeyFile: /run/secrets/state.key\n  redis:\n    addrs: [r:6379]\n    masterName: m\n    password: filepass\n"
	tests := []struct {
		name string
		env  map[string]string
		edit func(c *Config)
	}{
		{name: "no variables", env: nil, edit: func(*Config) {}},
		{
			name: "password replaces passwordFile",
			env:  map[string]string{"PORTCULLIS_UPSTREAM_DOCKER_IO_PASSWORD": "envpass"},
			edit: func(c *Config) {
				c.Upstreams[0].Password = "envpass"
				c.Upstreams[0].PasswordFile = ""
			},
		},
		{
			name: "username and password replace dockerConfig",
			env: map[string]string{
				"PORTCULLIS_UPSTREAM_GHCR_IO_USERNAME": "gh",
				"PORTCULLIS_UPSTREAM_GHCR_IO_PASSWORD": "tok",
			},
			edit: func(c *Config) {
				c.Upstreams[1] = Upstream{Name: "ghcr.io", Username: "gh", Password: "tok", Timeout: c.Upstreams[1].Timeout, Retries: 3,
					BodyIdleTimeout: defIdle, CircuitBreaker: defBreaker}
			},
		},
		{
			name: "host with port and redis",
			env: map[string]string{
				"PORTCULLIS_UPSTREAM_LOCALHOST_5000_USERNAME": "lu",
				"PORTCULLIS_REDIS_PASSWORD":                   "rp",
				"PORTCULLIS_UPSTREAM_QUAY_IO_PASSWORD":        "unused",
			},
			edit: func(c *Config) {
				c.Upstreams[2].Username = "lu"
				c.Cache.Redis.Password = "rp"
			},
		},
		{
			name: "state key and sentinel password",
			env: map[string]string{
				"PORTCULLIS_STATE_KEY":               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
				"PORTCULLIS_REDIS_SENTINEL_PASSWORD": "sp",
			},
			edit: func(c *Config) {
				c.Cache.StateKey, c.Cache.StateKeyFile = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", ""
				c.Cache.Redis.SentinelPassword = "sp"
			},
		},
		{
			name: "empty values are ignored",
			env: map[string]string{"PORTCULLIS_UPSTREAM_DOCKER_IO_USERNAME": "", "PORTCULLIS_REDIS_PASSWORD": "",
				"PORTCULLIS_STATE_KEY": "", "PORTCULLIS_REDIS_SENTINEL_PASSWORD": ""},
			edit: func(*Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(yaml), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			want, _ := Parse([]byte(yaml), "p.yaml")
			tt.edit(want)
			got.ApplyEnv(func(k string) string { return tt.env[k] })
			if diff := cmp.Diff(want, got, ignoreSource); diff != "" {
				t.Errorf("ApplyEnv (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate() after ApplyEnv = %v", err)
			}
		})
	}
}
