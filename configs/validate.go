package configs

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

// Error is one configuration problem. File and Line are set when the problem can be traced to
// the parsed file; Path is the field path, such as "upstreams[1].url".
type Error = strictyaml.Error

// Validate checks the configuration's meaning without touching the file system: addresses,
// upstream names and URLs, one default upstream at most, positive durations, known log
// values, and settings that exclude each other. It reports every problem it finds, joined,
// each an *Error naming the field path and, for parsed configs, the file and line.
// CheckFiles checks the files the configuration names.
func (c *Config) Validate() error {
	p := &strictyaml.Problems{Source: c.src}
	checkAddr(p, "listen", c.Listen, false)
	checkAddr(p, "opsListen", c.OpsListen, true)
	if c.Listen != "" && c.Listen == c.OpsListen && !strings.HasSuffix(c.Listen, ":0") { // :0 picks a free port each
		p.Add("opsListen", "must differ from listen (%s)", c.Listen)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		p.Add("tls", "cert and key must be given together")
	}
	c.validateAdmin(p)
	if c.DataDir == "" {
		p.Add("dataDir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.Add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.Add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	c.validateUpstreams(p)

	positive(p, "tags.ttl", c.Tags.TTL)
	if c.Tags.StaleIfError {
		positive(p, "tags.maxStale", c.Tags.MaxStale)
	} else if c.Tags.MaxStale < 0 {
		p.Add("tags.maxStale", "must not be negative")
	}

	if strings.TrimSpace(c.Content.Driver) == "" {
		p.Add("content.driver", "must name a storage driver (filesystem, inmemory, s3aws, ...)")
	}
	if c.Content.MaxSize < 0 {
		p.Add("content.maxSize", "must not be negative")
	}
	if c.Content.MaxManifestSize <= 0 {
		p.Add("content.maxManifestSize", "must be positive")
	}
	if c.Content.SpoolMaxSize < 0 {
		p.Add("content.spoolMaxSize", "must not be negative (0 means no budget)")
	}

	c.validateRedis(p)

	if c.Shutdown.DrainDelay < 0 {
		p.Add("shutdown.drainDelay", "must not be negative")
	}
	positive(p, "shutdown.gracePeriod", c.Shutdown.GracePeriod)

	positive(p, "admission.decisionTimeout", c.Admission.DecisionTimeout)
	if c.Admission.MaxConcurrentDecisions <= 0 {
		p.Add("admission.maxConcurrentDecisions", "must be positive")
	}
	if c.Admission.QueueWait < 0 {
		p.Add("admission.queueWait", "must not be negative")
	}
	positive(p, "admission.regoTimeout", c.Admission.RegoTimeout)
	return p.Err()
}

func (c *Config) validateUpstreams(p *strictyaml.Problems) {
	if len(c.Upstreams) == 0 {
		p.Add("upstreams", "at least one upstream is required")
		return
	}
	names := map[string]int{}
	defaults := 0
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d]", i)
		if err := checkHost(u.Name); err != nil {
			p.Add(at+".name", "%v", err)
		} else if j, dup := names[u.Name]; dup {
			p.Add(at+".name", "%q is already the name of upstreams[%d]", u.Name, j)
		} else {
			names[u.Name] = i
		}
		if u.URL != "" {
			if _, err := u.Endpoint(); err != nil {
				p.Add(at+".url", "%v", err)
			}
		}
		if u.Default {
			defaults++
			if defaults > 1 {
				p.Add(at+".default", "only one upstream may be the default")
			}
		}
		if u.Password != "" && u.PasswordFile != "" {
			p.Add(at+".passwordFile", "password and passwordFile exclude each other")
		}
		if u.DockerConfig != "" && (u.Username != "" || u.Password != "" || u.PasswordFile != "") {
			p.Add(at+".dockerConfig", "dockerConfig excludes username, password and passwordFile")
		}
		positive(p, at+".timeout", u.Timeout)
		if u.Retries < 0 {
			p.Add(at+".retries", "must not be negative")
		}
		positive(p, at+".bodyIdleTimeout", u.BodyIdleTimeout)
		switch cb := u.CircuitBreaker; {
		case cb.Failures < 0:
			p.Add(at+".circuitBreaker.failures", "must not be negative (0 turns the breaker off)")
		case cb.Failures > 0:
			positive(p, at+".circuitBreaker.cooldown", cb.Cooldown)
		}
	}
}

// CheckFiles checks that the files the configuration names exist and are usable: the TLS
// certificates and keys, the policy file, the admin client CA and tokens (via AdminCredentials,
// tokenEnv variables included as ApplyEnv read them), the state key and Redis's TLS files, and per
// upstream the CA bundle (it must hold a PEM certificate) and the credential sources (passwordFile,
// dockerConfig, via
// Credentials). Load
// calls it after Validate; callers that only check a configuration's shape (tests of
// examples whose files live elsewhere) may skip it.
func (c *Config) CheckFiles() error {
	p := &strictyaml.Problems{Source: c.src}
	exists(p, "tls.cert", c.TLS.Cert)
	exists(p, "tls.key", c.TLS.Key)
	exists(p, "policy", c.Policy)
	c.checkAdminFiles(p)
	c.checkRedisFiles(p)
	for i, u := range c.Upstreams {
		at := fmt.Sprintf("upstreams[%d]", i)
		if u.CAFile != "" {
			pem, err := os.ReadFile(u.CAFile)
			switch {
			case err != nil:
				p.Add(at+".caFile", "%v", err)
			case !x509.NewCertPool().AppendCertsFromPEM(pem):
				p.Add(at+".caFile", "%s holds no PEM certificate", u.CAFile)
			}
		}
		if _, _, err := u.Credentials(); err != nil {
			field := ".passwordFile"
			if u.DockerConfig != "" {
				field = ".dockerConfig"
			}
			p.Add(at+field, "%v", err)
		}
	}
	return p.Err()
}

// checkAddr checks a host:port listen or dial address; "" is allowed only when optional.
func checkAddr(p *strictyaml.Problems, path, addr string, optional bool) {
	if addr == "" {
		if !optional {
			p.Add(path, "must not be empty")
		}
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.Add(path, "must be host:port: %v", err)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.Add(path, "invalid port %q", port)
	}
}

func positive(p *strictyaml.Problems, path string, d Duration) {
	if d <= 0 {
		p.Add(path, "must be a positive duration, not %s", d)
	}
}

func exists(p *strictyaml.Problems, path, file string) {
	if file == "" {
		return
	}
	if _, err := os.Stat(file); err != nil {
		p.Add(path, "%v", err)
	}
}
