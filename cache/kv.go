package cache

import (
	"context"
	"errors"
	"time"
)

// KV is the shared state seam: embedded ([Memory], one replica) or [Redis] (a fleet).
type KV interface {
	// Get returns the value stored under key, or an error wrapping ErrNotFound when it is absent or expired.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores val under key for ttl; a ttl <= 0 means the value never expires. Setting a key again
	// replaces both its value and its TTL.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	// Delete removes key; an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// Close releases the store's resources (goroutines, connections).
	Close() error
}

var (
	// ErrNotFound is returned (possibly wrapped) when a key or an object is absent or expired.
	ErrNotFound = errors.New("cache: not found")
	// ErrUnavailable wraps errors from a shared store that could not be reached (connection refused,
	// timeouts, a closed client). Callers degrade: a shared cache outage is a miss, never a crash.
	ErrUnavailable = errors.New("cache: shared store unavailable")
)

var (
	_ KV = (*Memory)(nil)
	_ KV = (*Redis)(nil)
)
