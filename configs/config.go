package configs

import (
	"path/filepath"
	"time"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

// Defaults, as documented on the fields of Config.
const (
	defaultListen          = "127.0.0.1:5000"
	defaultOpsListen       = "127.0.0.1:5001"
	defaultDataDir         = "./portcullis-data"
	defaultUpstreamName    = "docker.io"
	dockerHubURL           = "https://registry-1.docker.io"
	defaultKeyPrefix       = "portcullis:"
	defaultMaxManifestSize = 4 * mib
	defaultSpoolMaxSize    = 8 * gib
)

// Config is the whole proxy configuration. Load or Parse fill every field left out of the file
// with its default (given at the end of each field's comment); Default returns all defaults.
type Config struct {
	// Listen is the registry listener address. Default 127.0.0.1:5000.
	Listen string `yaml:"listen"`
	// TLS makes the registry listener serve HTTPS. Default none (plain HTTP).
	TLS TLS `yaml:"tls"`
	// OpsListen is the ops listener (/metrics, /healthz, /readyz); "" disables it.
	// Default 127.0.0.1:5001.
	OpsListen string `yaml:"opsListen"`
	// DataDir holds embedded state and, for the filesystem driver, content. Relative paths are
	// relative to the working directory. Default ./portcullis-data.
	DataDir string `yaml:"dataDir"`
	// Log configures logging. Default level info, format text.
	Log Log `yaml:"log"`
	// Policy is the path of a policy file; "" serves every image. Default "".
	Policy string `yaml:"policy,omitempty"`
	// Upstreams are the registries this proxy fronts; at least one, names unique.
	// Default: one upstream named docker.io.
	Upstreams []Upstream `yaml:"upstreams"`
	// Tags configures tag-to-digest resolution. Defaults: see Tags.
	Tags Tags `yaml:"tags"`
	// Content configures blob and manifest storage. Defaults: see Content.
	Content Content `yaml:"content"`
	// Cache configures the shared state store. Default embedded.
	Cache Cache `yaml:"cache"`
	// Shutdown configures graceful shutdown. Defaults: see Shutdown.
	Shutdown Shutdown `yaml:"shutdown"`
	// Admin configures the admin API (CI reports, VEX). Default: off until a token is set.
	Admin Admin `yaml:"admin"`
	// Admission bounds the work of deciding on new images. Defaults: see Admission.
	Admission Admission `yaml:"admission"`

	// src remembers where each field came from, for error messages; nil for built configs.
	src *strictyaml.Source
	// adminEnv holds the admin.tokens[].tokenEnv variables as ApplyEnv read them.
	adminEnv map[string]string
}

// TLS names a PEM certificate chain and private key; both or neither.
type TLS struct {
	// Cert is the PEM certificate chain file. Default "".
	Cert string `yaml:"cert,omitempty"`
	// Key is the PEM private key file. Default "".
	Key string `yaml:"key,omitempty"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

// Log configures the process logger.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// Upstream is one registry the proxy pulls from.
type Upstream struct {
	// Name is the registry host as clients name it (what containerd sends as ns=), host[:port].
	// Required.
	Name string `yaml:"name"`
	// URL is the endpoint; http:// means plain HTTP. Default https://registry-1.docker.io for
	// docker.io, otherwise https://<name>.
	URL string `yaml:"url,omitempty"`
	// Default marks the upstream for requests with no ns= and no path prefix; at most one.
	// Default false (then the first upstream is the default).
	Default bool `yaml:"default,omitempty"`
	// Username is the basic-auth user, used directly or for the token exchange. May be
	// overridden by PORTCULLIS_UPSTREAM_<NAME>_USERNAME. Default "".
	Username string `yaml:"username,omitempty"`
	// Password is the secret for Username. May be overridden by
	// PORTCULLIS_UPSTREAM_<NAME>_PASSWORD. Default "".
	Password string `yaml:"password,omitempty"`
	// PasswordFile is a file holding the password (trailing newline ignored); not with Password.
	// Default "".
	PasswordFile string `yaml:"passwordFile,omitempty"`
	// DockerConfig is a Docker config.json to take this host's credentials from
	// (auths[host].auth or username/password; credential helpers are not supported).
	// Default "".
	DockerConfig string `yaml:"dockerConfig,omitempty"`
	// CAFile is a PEM CA bundle added to the system roots for this upstream. Default "".
	CAFile string `yaml:"caFile,omitempty"`
	// InsecureSkipVerify disables TLS certificate verification. Default false.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify,omitempty"`
	// Timeout bounds manifest and tag requests; for streamed blobs it is the time to first
	// byte. Default 30s.
	Timeout Duration `yaml:"timeout"`
	// Retries is how often to retry on 5xx, 429 and network errors, with backoff; 0 disables
	// retries. Default 3.
	Retries int `yaml:"retries"`
	// BodyIdleTimeout bounds how long a blob body may go without a byte once the response headers
	// came: a body that stalls is cut off, the shared download it feeds is abandoned, and the next
	// request starts afresh. Default 30s.
	BodyIdleTimeout Duration `yaml:"bodyIdleTimeout"`
	// CircuitBreaker says when the upstream is taken for down, so that it is not hammered and stale
	// content serves at once. Default 10 failures in a row, 30s cooldown.
	CircuitBreaker CircuitBreaker `yaml:"circuitBreaker"`
	// AllowPrivateAddresses lets blob redirects and bearer token realms lead to loopback, private
	// or link-local addresses although the registry is not on one of that kind (a redirect or
	// realm on the registry's own host:port, or on the kind of address the registry is on, is
	// always allowed). The address is checked when it is dialled, so DNS rebinding does not get
	// round it. Default false.
	AllowPrivateAddresses bool `yaml:"allowPrivateAddresses,omitempty"`
	// AllowPrivateTokenRealm is the old name of AllowPrivateAddresses, still read; either one
	// set to true allows private addresses. Default false.
	AllowPrivateTokenRealm bool `yaml:"allowPrivateTokenRealm,omitempty"`
}

// CircuitBreaker is an upstream's circuit breaker: after Failures failed requests in a row (network errors,
// 5xx but 501 and 505, 429; every retry attempt, token fetch and redirect hop counts) every call to the upstream
// fails at once for Cooldown, without a connection, and the proxy serves what it has (stale tags, stored
// content); then one request at a time probes the upstream, and a success closes the breaker.
type CircuitBreaker struct {
	// Failures is how many failed requests in a row open the breaker; 0 turns it off. Default 10.
	Failures int `yaml:"failures"`
	// Cooldown is how long the breaker stays open before a probe. Default 30s.
	Cooldown Duration `yaml:"cooldown"`
}

// PrivateAddressesAllowed reports whether AllowPrivateAddresses or its old name
// AllowPrivateTokenRealm is set.
func (u Upstream) PrivateAddressesAllowed() bool {
	return u.AllowPrivateAddresses || u.AllowPrivateTokenRealm
}

// Tags configures how tags resolve to digests.
type Tags struct {
	// TTL is how long a tag's digest is trusted before asking upstream again. Default 30s.
	TTL Duration `yaml:"ttl"`
	// StaleIfError serves the last known digest when the upstream is unreachable.
	// Default true.
	StaleIfError bool `yaml:"staleIfError"`
	// MaxStale is how long past its TTL a digest may be served under StaleIfError.
	// Default 24h.
	MaxStale Duration `yaml:"maxStale"`
}

// Content configures where manifests and blobs are stored.
type Content struct {
	// Driver is a CNCF Distribution storage driver name: filesystem, inmemory, s3aws, ...
	// Default filesystem.
	Driver string `yaml:"driver"`
	// Parameters are passed to the driver as they are. For filesystem, rootdirectory
	// defaults to <dataDir>/content.
	Parameters map[string]any `yaml:"parameters,omitempty"`
	// MaxSize is the budget for LRU eviction; 0 means unlimited. Default 0.
	MaxSize ByteSize `yaml:"maxSize,omitempty"`
	// MaxManifestSize caps a manifest read from upstream. Default 4MiB.
	MaxManifestSize ByteSize `yaml:"maxManifestSize"`
	// SpoolMaxSize is the budget for blob downloads in flight, spooled under <dataDir>/spool: a
	// download that would go over it is not started (or is aborted as it grows, when the upstream
	// does not announce its size) and its clients get 503 with Retry-After until downloads finish.
	// A blob larger than this cannot be pulled cold. 0 means no budget. Default 8GiB.
	SpoolMaxSize ByteSize `yaml:"spoolMaxSize"`
}

// Cache configures the shared state store (decisions, tags, admitted blobs, and the lists and audit log that must
// survive).
type Cache struct {
	// StateKeyFile is a file holding the state key: the base64 of at least 32 random bytes, the HMAC key with which
	// replicas authenticate what they write to Redis, so that whoever can write to Redis without it cannot make a
	// value Portcullis accepts. Every replica needs the same key. Required with Redis unless PORTCULLIS_STATE_KEY
	// (the base64 itself) is set, which overrides it; make one with
	// `head -c 32 /dev/urandom | base64 > state.key`. Not used when embedded. Default "".
	StateKeyFile string `yaml:"stateKeyFile,omitempty"`
	// StateKey is the base64 state key from PORTCULLIS_STATE_KEY; it cannot be set in the file.
	StateKey string `yaml:"-"`
	// Redis, when it has addresses, replaces the embedded store. Default embedded.
	Redis Redis `yaml:"redis"`
}

// Redis configures a go-redis UniversalClient: one address is a single node, several are a
// cluster, and a MasterName makes them sentinels.
type Redis struct {
	// Addrs are host:port addresses; empty means the embedded store. Default [].
	Addrs []string `yaml:"addrs,omitempty"`
	// MasterName selects sentinel mode. Default "".
	MasterName string `yaml:"masterName,omitempty"`
	// Username is the ACL user on the data nodes (with a password; a password alone authenticates the default
	// user). Default "".
	Username string `yaml:"username,omitempty"`
	// Password may be overridden by PORTCULLIS_REDIS_PASSWORD. Default "".
	Password string `yaml:"password,omitempty"`
	// SentinelUsername is the ACL user on the sentinels themselves, when they require one (only with
	// MasterName). Default "".
	SentinelUsername string `yaml:"sentinelUsername,omitempty"`
	// SentinelPassword is the sentinels' password (only with MasterName); may be overridden by
	// PORTCULLIS_REDIS_SENTINEL_PASSWORD. Default "".
	SentinelPassword string `yaml:"sentinelPassword,omitempty"`
	// DB is the database number (not with a cluster). Default 0.
	DB int `yaml:"db,omitempty"`
	// KeyPrefix namespaces every key. Default "portcullis:".
	KeyPrefix string `yaml:"keyPrefix"`
	// TLS makes every connection (data nodes and sentinels) TLS 1.2 or later. Default off.
	TLS RedisTLS `yaml:"tls"`
}

// RedisTLS configures TLS to Redis. Setting any field turns it on.
type RedisTLS struct {
	// Enabled turns TLS on with the system roots and no client certificate. Default false (unless another field
	// is set).
	Enabled bool `yaml:"enabled,omitempty"`
	// CAFile is a PEM bundle of the CAs that sign the servers' certificates, used instead of the system roots.
	// Default "" (system roots).
	CAFile string `yaml:"caFile,omitempty"`
	// CertFile is a PEM client certificate (chain), for servers that require one (tls-auth-clients yes); with
	// KeyFile. Default "".
	CertFile string `yaml:"certFile,omitempty"`
	// KeyFile is the PEM private key of CertFile. Default "".
	KeyFile string `yaml:"keyFile,omitempty"`
	// ServerName is the name every server's certificate must carry. Default "": the host of each address dialled
	// (for a cluster or sentinels, each node's own).
	ServerName string `yaml:"serverName,omitempty"`
}

// On reports whether TLS to Redis is configured.
func (t RedisTLS) On() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// Enabled reports whether Redis is configured (otherwise the store is embedded).
func (r Redis) Enabled() bool { return len(r.Addrs) > 0 }

// Admin configures the admin API: its own listener, never the registry port, protected by named tokens with
// roles and, over TLS, by client certificates.
type Admin struct {
	// Listen is the admin listener address. Default 127.0.0.1:5002.
	Listen string `yaml:"listen"`
	// Token is the single bearer token of earlier versions, a write token named "admin"; may be overridden by
	// PORTCULLIS_ADMIN_TOKEN. Default "".
	Token string `yaml:"token"`
	// TokenFile is a file holding that token (trailing newline ignored); not with Token. Default "".
	TokenFile string `yaml:"tokenFile"`
	// Tokens are named tokens, each with a role. Default none.
	Tokens []AdminToken `yaml:"tokens,omitempty"`
	// TLS serves the admin API over HTTPS and, with a client CA, takes client certificates. Default plain HTTP.
	TLS AdminTLS `yaml:"tls"`
}

// Enabled reports whether the admin API has a credential (a token, a token file, named tokens or a client CA)
// and so is served: without one it is off.
func (a Admin) Enabled() bool {
	return a.Token != "" || a.TokenFile != "" || len(a.Tokens) > 0 || a.TLS.ClientCA != ""
}

// Admission bounds cold admission decisions (gathering signatures, attestations and scan reports for a digest
// not decided yet), so that a burst of new digests or a slow upstream cannot pile up work.
type Admission struct {
	// DecisionTimeout bounds one decision; a rule's scan-and-wait gets its waitTimeout on top. An overrun is an
	// error, which the rule's onError decides (deny by default). Default 30s.
	DecisionTimeout Duration `yaml:"decisionTimeout"`
	// MaxConcurrentDecisions caps the cold decisions running at once on this replica. Default 32.
	MaxConcurrentDecisions int `yaml:"maxConcurrentDecisions"`
	// QueueWait is how long a decision waits for a free slot before the client gets 429 TOOMANYREQUESTS with
	// Retry-After. Default 10s.
	QueueWait Duration `yaml:"queueWait"`
	// RegoTimeout bounds one evaluation of a rule's Rego module; an overrun is an error, which the rule's onError
	// decides (deny by default). Default 100ms.
	RegoTimeout Duration `yaml:"regoTimeout"`
}

// Shutdown configures graceful shutdown.
type Shutdown struct {
	// DrainDelay is how long readiness reports false before the listener stops; 0 skips it.
	// Default 5s.
	DrainDelay Duration `yaml:"drainDelay"`
	// GracePeriod bounds in-flight requests after the listener stops. Default 30s.
	GracePeriod Duration `yaml:"gracePeriod"`
}

// Default returns a configuration with every default filled, including one docker.io
// upstream. It passes Validate.
func Default() *Config {
	c := base()
	c.Upstreams = []Upstream{defaultUpstream(defaultUpstreamName)}
	c.finish()
	return c
}

// base is Default without the upstream list and derived values; Parse decodes over it.
func base() *Config {
	return &Config{
		Listen:    defaultListen,
		OpsListen: defaultOpsListen,
		DataDir:   defaultDataDir,
		Log:       Log{Level: "info", Format: "text"},
		Tags: Tags{
			TTL:          Duration(30 * time.Second),
			StaleIfError: true,
			MaxStale:     Duration(24 * time.Hour),
		},
		Content: Content{
			Driver:          "filesystem",
			MaxManifestSize: defaultMaxManifestSize,
			SpoolMaxSize:    defaultSpoolMaxSize,
		},
		Cache: Cache{Redis: Redis{KeyPrefix: defaultKeyPrefix}},
		Shutdown: Shutdown{
			DrainDelay:  Duration(5 * time.Second),
			GracePeriod: Duration(30 * time.Second),
		},
		Admin: Admin{Listen: "127.0.0.1:5002"},
		Admission: Admission{
			DecisionTimeout:        Duration(30 * time.Second),
			MaxConcurrentDecisions: 32,
			QueueWait:              Duration(10 * time.Second),
			RegoTimeout:            Duration(100 * time.Millisecond),
		},
	}
}

// defaultUpstream is an upstream with its defaults; decoding a list item starts from it.
func defaultUpstream(name string) Upstream {
	return Upstream{Name: name, Timeout: Duration(30 * time.Second), Retries: 3, BodyIdleTimeout: Duration(30 * time.Second),
		CircuitBreaker: CircuitBreaker{Failures: 10, Cooldown: Duration(30 * time.Second)}}
}

// finish fills values derived from other fields once decoding is done.
func (c *Config) finish() {
	if c.Content.Driver == "filesystem" {
		if _, ok := c.Content.Parameters["rootdirectory"]; !ok {
			if c.Content.Parameters == nil {
				c.Content.Parameters = map[string]any{}
			}
			c.Content.Parameters["rootdirectory"] = filepath.Join(c.DataDir, "content")
		}
	}
}

// DefaultUpstream returns the upstream marked default, else the first; nil if there is none.
// The pointer aliases c.Upstreams.
func (c *Config) DefaultUpstream() *Upstream {
	for i := range c.Upstreams {
		if c.Upstreams[i].Default {
			return &c.Upstreams[i]
		}
	}
	if len(c.Upstreams) == 0 {
		return nil
	}
	return &c.Upstreams[0]
}

// DefaultUpstreamFor returns an upstream named name with every default filled (timeout, retries, body idle
// timeout, circuit breaker), for callers
// that build a configuration without a file, such as the --upstream flag.
func DefaultUpstreamFor(name string) Upstream { return defaultUpstream(name) }
