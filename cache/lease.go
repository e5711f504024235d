package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Leaser grants short exclusive leases by name, so that of the replicas that want to do one piece of work at once
// (fetch a blob upstream, resolve a tag, verify a digest) one does it and the others wait for its result in the
// shared store. A lease is an optimisation, never a guarantee: it lapses after its TTL unless renewed, and a
// replica that cannot reach the leaser does the work itself.
type Leaser interface {
	// Lease takes name for ttl. It returns nil, nil when another holder has it.
	Lease(ctx context.Context, name string, ttl time.Duration) (*Lease, error)
}

// Lease is a lease this replica holds.
type Lease struct {
	renew   func(ctx context.Context, ttl time.Duration) bool
	release func(ctx context.Context)
}

// Renew extends the lease to ttl from now; false means it is no longer ours (it lapsed and another took it).
func (l *Lease) Renew(ctx context.Context, ttl time.Duration) bool { return l.renew(ctx, ttl) }

// Release gives the lease up, if it is still ours.
func (l *Lease) Release(ctx context.Context) { l.release(ctx) }

var (
	_ Leaser = (*Redis)(nil)
	_ Leaser = (*SignedKV)(nil)
	_ Leaser = (*Tiered)(nil)
	_ Leaser = (*Memory)(nil)
)

// leaseKey names a lease in a KV's key space.
func leaseKey(name string) string { return "lease/" + name }

func leaseToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

var (
	renewScript   = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`)
	releaseScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`)
)

// Lease implements Leaser with SET NX PX; renewal and release check the token, so a lapsed lease another replica
// took is never extended or dropped by its old holder.
func (r *Redis) Lease(ctx context.Context, name string, ttl time.Duration) (*Lease, error) {
	key, tok := r.prefix+leaseKey(name), leaseToken()
	ok, err := r.client.SetNX(ctx, key, tok, ttl).Result()
	if err != nil {
		return nil, unavailable("lease", err)
	}
	if !ok {
		return nil, nil
	}
	return &Lease{
		renew: func(ctx context.Context, ttl time.Duration) bool {
			n, err := renewScript.Run(ctx, r.client, []string{key}, tok, ttl.Milliseconds()).Int()
			return err == nil && n == 1
		},
		release: func(ctx context.Context) { _ = releaseScript.Run(ctx, r.client, []string{key}, tok).Err() },
	}, nil
}

// Lease implements Leaser through the wrapped KV. A lease's value is a random token that admits nothing, so it is
// not signed: a party that can write to Redis can make replicas wait for a lease's TTL, no more.
func (s *SignedKV) Lease(ctx context.Context, name string, ttl time.Duration) (*Lease, error) {
	if l, ok := s.kv.(Leaser); ok {
		return l.Lease(ctx, name, ttl)
	}
	return solo(), nil
}

// Lease implements Leaser on the shared tier, fleet-wide. When the shared tier cannot lease or cannot be reached,
// the lease is granted: this replica does the work rather than wait for nobody.
func (t *Tiered) Lease(ctx context.Context, name string, ttl time.Duration) (*Lease, error) {
	l, ok := t.shared.(Leaser)
	if !ok {
		return solo(), nil
	}
	lease, err := l.Lease(ctx, name, ttl)
	if errors.Is(err, ErrUnavailable) {
		return solo(), nil
	}
	return lease, err
}

// LocalLease is a lease that stands for no one else's: granted, always renewed. It is what a replica works under
// when no Leaser can be asked.
func LocalLease() *Lease { return solo() }

// solo is LocalLease.
func solo() *Lease {
	return &Lease{renew: func(context.Context, time.Duration) bool { return true }, release: func(context.Context) {}}
}

// memLeases are a Memory's leases: one process is the whole fleet.
type memLeases struct {
	mu     sync.Mutex
	leases map[string]memLease
}

type memLease struct {
	tok     string
	expires time.Time
}

// Lease implements Leaser within this process.
func (m *Memory) Lease(_ context.Context, name string, ttl time.Duration) (*Lease, error) {
	ls := &m.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := m.now()
	if l, ok := ls.leases[name]; ok && now.Before(l.expires) {
		return nil, nil
	}
	if ls.leases == nil {
		ls.leases = map[string]memLease{}
	}
	for k, l := range ls.leases { // drop lapsed ones, so the map stays as small as the work in flight
		if !now.Before(l.expires) {
			delete(ls.leases, k)
		}
	}
	tok := leaseToken()
	ls.leases[name] = memLease{tok: tok, expires: now.Add(ttl)}
	return &Lease{
		renew: func(_ context.Context, ttl time.Duration) bool {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			if l, ok := ls.leases[name]; ok && l.tok == tok {
				ls.leases[name] = memLease{tok: tok, expires: m.now().Add(ttl)}
				return true
			}
			return false
		},
		release: func(context.Context) {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			if l, ok := ls.leases[name]; ok && l.tok == tok {
				delete(ls.leases, name)
			}
		},
	}, nil
}
