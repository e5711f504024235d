package cache

import (
	"context"
	"crypto/tls"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions says how to reach Redis: a single node, a sentinel group or a cluster, with ACL credentials and TLS.
type RedisOptions struct {
	// Addrs are host:port addresses: one is a single node, several a cluster, and with MasterName they are the
	// sentinels.
	Addrs []string
	// MasterName selects sentinel mode: the sentinels are asked where this master is.
	MasterName string
	// Username and Password authenticate to the data nodes (AUTH; an ACL user, or Password alone for the default
	// user). Default none.
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the sentinels themselves, when they require it.
	// Default none.
	SentinelUsername, SentinelPassword string
	// DB is the database number; clusters have only 0.
	DB int
	// TLS, when set, makes every connection (data nodes and sentinels) TLS. With no ServerName each node's name
	// is checked against the address dialled. Default nil: plain TCP.
	TLS *tls.Config
}

// NewRedisClient builds a go-redis UniversalClient with timeouts suited to a store that must fail fast: dial 2s,
// read and write 1s, one retry, and a caller's context deadline shortens them.
func NewRedisClient(o RedisOptions) redis.UniversalClient {
	var tc *tls.Config
	if o.TLS != nil {
		tc = o.TLS.Clone()
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:            o.Addrs,
		MasterName:       o.MasterName,
		Username:         o.Username,
		Password:         o.Password,
		SentinelUsername: o.SentinelUsername,
		SentinelPassword: o.SentinelPassword,
		DB:               o.DB,
		TLSConfig:        tc,
		DialTimeout:      2 * time.Second,
		ReadTimeout:      time.Second,
		WriteTimeout:     time.Second,
		MaxRetries:       1,
		DialerRetries:    1,

		ContextTimeoutEnabled: true,
	})
}

// RedisClient is NewRedisClient without TLS or sentinel credentials: one address is a single node, several are a
// cluster, and a masterName selects sentinel mode (addrs are then the sentinels). db is ignored by clusters.
func RedisClient(addrs []string, masterName, username, password string, db int) redis.UniversalClient {
	return NewRedisClient(RedisOptions{Addrs: addrs, MasterName: masterName, Username: username, Password: password, DB: db})
}

// healthEvery is how old a Redis health answer may be before the next Healthy starts a new PING; healthTimeout
// bounds that PING.
const (
	healthEvery   = time.Second
	healthTimeout = time.Second
)

// redisHealth answers Healthy from the last PING, at most healthEvery old, without waiting for a new one (except
// the very first): /readyz must answer at once even while Redis hangs.
type redisHealth struct {
	client redis.UniversalClient

	mu      sync.Mutex
	checked bool
	at      time.Time
	err     error
	probing bool
	first   chan struct{} // closed when the first probe ends
}

func newRedisHealth(client redis.UniversalClient) *redisHealth {
	return &redisHealth{client: client, first: make(chan struct{})}
}

func (h *redisHealth) healthy() error {
	h.mu.Lock()
	stale := time.Since(h.at) >= healthEvery
	if stale && !h.probing {
		h.probing = true
		go h.probe()
	}
	checked, err := h.checked, h.err
	h.mu.Unlock()
	if !checked {
		<-h.first
		h.mu.Lock()
		err = h.err
		h.mu.Unlock()
	}
	return err
}

func (h *redisHealth) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	err := h.client.Ping(ctx).Err()
	if err != nil {
		err = unavailable("ping", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at, h.err, h.probing = time.Now(), err, false
	if !h.checked {
		h.checked = true
		close(h.first)
	}
}
