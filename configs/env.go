package configs

import (
	"os"
	"strings"
)

// envName turns an upstream name into its environment variable infix: upper case, with every
// rune other than an ASCII letter or digit replaced by "_" (docker.io -> DOCKER_IO,
// localhost:5000 -> LOCALHOST_5000). Names that differ only in punctuation share variables.
func envName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// ApplyEnv overrides secrets from the environment, read through getenv (nil means os.Getenv);
// empty variables are ignored:
//
//	PORTCULLIS_UPSTREAM_<NAME>_USERNAME  upstream username
//	PORTCULLIS_UPSTREAM_<NAME>_PASSWORD  upstream password; clears passwordFile
//	PORTCULLIS_REDIS_PASSWORD            cache.redis.password
//	PORTCULLIS_REDIS_SENTINEL_PASSWORD   cache.redis.sentinelPassword
//	PORTCULLIS_STATE_KEY                 the state key itself (base64); clears cache.stateKeyFile
//	PORTCULLIS_ADMIN_TOKEN               admin.token; clears admin.tokenFile
//	admin.tokens[].tokenEnv              that named token (read here, used by AdminCredentials)
//
// where NAME is the upstream name as envName spells it. Either upstream variable also clears
// the upstream's dockerConfig: credentials from the environment replace file-based ones.
// Load calls ApplyEnv between Parse and Validate.
func (c *Config) ApplyEnv(getenv func(string) string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		prefix := "PORTCULLIS_UPSTREAM_" + envName(u.Name) + "_"
		if v := getenv(prefix + "USERNAME"); v != "" {
			u.Username = v
			u.DockerConfig = ""
		}
		if v := getenv(prefix + "PASSWORD"); v != "" {
			u.Password = v
			u.PasswordFile = ""
			u.DockerConfig = ""
		}
	}
	if v := getenv("PORTCULLIS_REDIS_PASSWORD"); v != "" {
		c.Cache.Redis.Password = v
	}
	if v := getenv("PORTCULLIS_REDIS_SENTINEL_PASSWORD"); v != "" {
		c.Cache.Redis.SentinelPassword = v
	}
	if v := getenv("PORTCULLIS_STATE_KEY"); v != "" {
		c.Cache.StateKey, c.Cache.StateKeyFile = v, ""
	}
	if v := getenv("PORTCULLIS_ADMIN_TOKEN"); v != "" {
		c.Admin.Token, c.Admin.TokenFile = v, ""
	}
	c.adminEnv = map[string]string{}
	for _, t := range c.Admin.Tokens {
		if t.TokenEnv != "" {
			c.adminEnv[t.TokenEnv] = getenv(t.TokenEnv)
		}
	}
}
