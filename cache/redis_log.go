package cache

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetRedisLogger sends the Redis client library's own messages (a dial that failed, a pool that was closed) to
// log at debug level, instead of to the standard error as plain lines: Portcullis reports what an outage does to
// pulls itself (at warn, once per state change), and the library repeats each failed dial. The library's logger
// is process-wide, so this is called once, by serve.
func SetRedisLogger(log *slog.Logger) {
	redis.SetLogger(redisLog{log: log.With("component", "redis-client")})
}

type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
