package configs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/portcullis/portcullis/internal/strictyaml"
)

// minStateKey is the shortest state key accepted, in bytes (cache.MinStateKeySize; configs does not import cache).
const minStateKey = 32

// stateKeyHowTo ends every state key error: what to do about it.
const stateKeyHowTo = "make one with `head -c 32 /dev/urandom | base64 > state.key`, give every replica the same file " +
	"and set cache.stateKeyFile to its path (or PORTCULLIS_STATE_KEY to its content)"

// validateRedis checks cache.redis and the state key without reading files.
func (c *Config) validateRedis(p *strictyaml.Problems) {
	r := c.Cache.Redis
	for i, a := range r.Addrs {
		checkAddr(p, fmt.Sprintf("cache.redis.addrs[%d]", i), a, false)
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		p.Add("cache.redis.masterName", "needs sentinel addresses in cache.redis.addrs")
	}
	if r.DB < 0 {
		p.Add("cache.redis.db", "must not be negative")
	}
	if r.DB != 0 && r.MasterName == "" && len(r.Addrs) > 1 {
		p.Add("cache.redis.db", "must be 0 for a Redis cluster (several addrs without masterName)")
	}
	if r.MasterName == "" {
		if r.SentinelUsername != "" {
			p.Add("cache.redis.sentinelUsername", "is for sentinels: needs cache.redis.masterName")
		}
		if r.SentinelPassword != "" {
			p.Add("cache.redis.sentinelPassword", "is for sentinels: needs cache.redis.masterName")
		}
	}
	if r.TLS.On() && !r.Enabled() {
		p.Add("cache.redis.tls", "needs Redis addresses in cache.redis.addrs")
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		p.Add("cache.redis.tls", "certFile and keyFile must be given together")
	}

	switch {
	case c.Cache.StateKey != "":
		if _, err := decodeStateKey([]byte(c.Cache.StateKey)); err != nil {
			p.Add("cache.stateKeyFile", "PORTCULLIS_STATE_KEY: %v", err)
		}
	case r.Enabled() && c.Cache.StateKeyFile == "":
		p.Add("cache.stateKeyFile", "is required with cache.redis: the state key authenticates what replicas write to Redis, "+
			"so that whoever can write to Redis cannot make Portcullis accept a value; "+stateKeyHowTo)
	}
}

// checkRedisFiles checks the files cache and cache.redis name: the state key and the TLS material.
func (c *Config) checkRedisFiles(p *strictyaml.Problems) {
	if c.Cache.StateKey == "" && c.Cache.StateKeyFile != "" {
		if _, err := c.LoadStateKey(); err != nil {
			p.Add("cache.stateKeyFile", "%v", err)
		}
	}
	t := c.Cache.Redis.TLS
	if t.CAFile != "" {
		if _, err := caPool(t.CAFile); err != nil {
			p.Add("cache.redis.tls.caFile", "%v", err)
		}
	}
	if t.CertFile != "" && t.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			p.Add("cache.redis.tls.certFile", "%v", err)
		}
	}
}

// LoadStateKey returns the state key: PORTCULLIS_STATE_KEY when set (see ApplyEnv), else the content of
// cache.stateKeyFile, base64-decoded; nil when neither is set (embedded mode needs no key).
func (c *Config) LoadStateKey() ([]byte, error) {
	if c.Cache.StateKey != "" {
		k, err := decodeStateKey([]byte(c.Cache.StateKey))
		if err != nil {
			return nil, fmt.Errorf("PORTCULLIS_STATE_KEY: %w", err)
		}
		return k, nil
	}
	if c.Cache.StateKeyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.Cache.StateKeyFile)
	if err != nil {
		return nil, err
	}
	k, err := decodeStateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Cache.StateKeyFile, err)
	}
	return k, nil
}

// decodeStateKey decodes base64 (standard alphabet, padding optional, surrounding whitespace ignored) of at least
// minStateKey bytes.
func decodeStateKey(b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("the state key is empty; %s", stateKeyHowTo)
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		k, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, fmt.Errorf("the state key is not base64; %s", stateKeyHowTo)
	}
	if len(k) < minStateKey {
		return nil, fmt.Errorf("the state key has %d bytes, fewer than %d; %s", len(k), minStateKey, stateKeyHowTo)
	}
	return k, nil
}

// Config returns the tls.Config for Redis (TLS 1.2 or later), nil when TLS is off. It reads the files it names.
func (t RedisTLS) Config() (*tls.Config, error) {
	if !t.On() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := caPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cache.redis.tls.caFile: %w", err)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cache.redis.tls.certFile: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// caPool reads a PEM CA bundle into a new pool (not added to the system roots: only these CAs sign Redis).
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
