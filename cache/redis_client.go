package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
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
// read and write 1s, one retry, and a caller's context deadline shortens them. After a command fails for want of
// an answer (a refused or reset connection, a timeout) every command fails at once for a second (the error wraps
// ErrRedisCooldown), so that a request needing several round trips waits out one timeout while Redis hangs, not
// one per round trip.
func NewRedisClient(o RedisOptions) redis.UniversalClient {
	var tc *tls.Config
	if o.TLS != nil {
		tc = o.TLS.Clone()
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{
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
	c.AddHook(newRedisCooldown(redisCooldown))
	return c
}

// RedisClient is NewRedisClient without TLS or sentinel credentials: one address is a single node, several are a
// cluster, and a masterName selects sentinel mode (addrs are then the sentinels). db is ignored by clusters.
func RedisClient(addrs []string, masterName, username, password string, db int) redis.UniversalClient {
	return NewRedisClient(RedisOptions{Addrs: addrs, MasterName: masterName, Username: username, Password: password, DB: db})
}

// healthEvery is how old a Redis health answer may be before the next Healthy starts a new probe; healthTimeout
// bounds that probe, healthKeyTTL the key it writes.
const (
	healthEvery   = time.Second
	healthTimeout = time.Second
	healthKeyTTL  = 10 * time.Second
)

// redisHealth answers Healthy from the last probe, at most healthEvery old, without waiting for a new one (except
// the very first): /readyz must answer at once even while Redis hangs. A store's probe writes its health key, so
// that a Redis that answers but refuses writes (a replica reached directly: READONLY; maxmemory reached under
// noeviction: OOM; a failed snapshot: MISCONF) is reported, not only one that does not answer; a bus's probe, with
// no key, is a PING.
type redisHealth struct {
	client redis.UniversalClient
	key    string // written by the probe; "": PING

	mu      sync.Mutex
	checked bool
	at      time.Time
	err     error
	probing bool
	first   chan struct{} // closed when the first probe ends
}

func newRedisHealth(client redis.UniversalClient, key string) *redisHealth {
	return &redisHealth{client: client, key: key, first: make(chan struct{})}
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
	var err error
	if h.key == "" {
		if err = h.client.Ping(ctx).Err(); err != nil {
			err = unavailable("ping", err)
		}
	} else if err = h.client.Set(ctx, h.key, time.Now().UTC().Format(time.RFC3339Nano), healthKeyTTL).Err(); err != nil {
		err = unavailable("health probe (a write)", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at, h.err, h.probing = time.Now(), err, false
	if !h.checked {
		h.checked = true
		close(h.first)
	}
}

// redisCooldown is how long every command fails at once after one found Redis unreachable or hung.
const redisCooldown = time.Second

// ErrRedisCooldown is the error of a Redis command not sent because another found Redis unreachable or hung less
// than a second ago. The stores wrap it in ErrUnavailable like any other outage.
var ErrRedisCooldown = errors.New("redis: not tried: it failed to answer less than a second ago")

// redisCooldownHook is a go-redis hook that fails every command at once for a cooldown after one failed for want of
// an answer. Without it, a request that makes ten round trips to a hung Redis waits ten timeouts (measured: a new
// decision took 52s while Redis held every command). After the cooldown commands go to Redis again, and the first
// that fails opens another. Redis' own error replies (READONLY, NOAUTH, ...) and a missing key do not count, nor
// a failure after the caller's context ended.
type redisCooldownHook struct {
	cooldown time.Duration
	until    atomic.Int64 // UnixNano before which commands fail at once; 0: none
}

var _ redis.Hook = (*redisCooldownHook)(nil)

func newRedisCooldown(d time.Duration) *redisCooldownHook { return &redisCooldownHook{cooldown: d} }

// open reports whether commands fail at once now.
func (h *redisCooldownHook) open() bool {
	until := h.until.Load()
	return until != 0 && time.Now().UnixNano() < until
}

// observe starts a cooldown when err says Redis did not answer.
func (h *redisCooldownHook) observe(ctx context.Context, err error) {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, ErrRedisCooldown) || ctx.Err() != nil {
		return
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return // the caller's deadline cut the command short (go-redis sets it on the socket)
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		return // Redis answered, with an error (a pool timeout is no answer: it counts)
	}
	h.until.Store(time.Now().Add(h.cooldown).UnixNano())
}

// DialHook implements redis.Hook: a dial is a command's first step, so it is covered by ProcessHook.
func (h *redisCooldownHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

// ProcessHook implements redis.Hook.
func (h *redisCooldownHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.open() {
			cmd.SetErr(ErrRedisCooldown)
			return ErrRedisCooldown
		}
		err := next(ctx, cmd)
		h.observe(ctx, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (h *redisCooldownHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.open() {
			for _, c := range cmds {
				c.SetErr(ErrRedisCooldown)
			}
			return ErrRedisCooldown
		}
		err := next(ctx, cmds)
		h.observe(ctx, err)
		return err
	}
}
