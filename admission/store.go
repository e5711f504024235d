package admission

import (
	"context"
	"errors"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// KV is the shared small-state store decisions, grants, reports and credentials live in (keys.go lists them).
// *cache.Memory, *cache.Redis and *cache.Tiered implement it.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

var (
	_ KV = (*cache.Memory)(nil)
	_ KV = (*cache.Redis)(nil)
	_ KV = (*cache.Tiered)(nil)
)

// isNotFound reports whether a KV error means the key is absent (a shared-store outage behind a local tier reads as
// absent too; callers that must tell the two apart check cache.ErrUnavailable first).
func isNotFound(err error) bool { return errors.Is(err, cache.ErrNotFound) }
