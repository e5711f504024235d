package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

func TestRedisConformance(t *testing.T) {
	addr := cachetest.StartRedis(t)
	var n atomic.Int64
	cachetest.RunKV(t, func(t *testing.T) cache.KV {
		client := cache.RedisClient([]string{addr}, "", "", "", 0)
		// One server for the whole suite: a prefix per subtest keeps them apart.
		return cache.NewRedis(client, cache.WithKeyPrefix(fmt.Sprintf("test%d:", n.Add(1))))
	})
}

func TestRedisKeyPrefix(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	a := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix("a:"))
	defer a.Close()
	b := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix("b:"))
	defer b.Close()
	def := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0))
	defer def.Close()

	if err := a.Set(ctx, "k", []byte("from a"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("prefix b sees prefix a's key: %v", err)
	}
	if err := def.Set(ctx, "k", []byte("default"), 0); err != nil {
		t.Fatal(err)
	}
	raw := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix(""))
	defer raw.Close()
	if got, err := raw.Get(ctx, "portcullis:k"); err != nil || string(got) != "default" {
		t.Errorf("default prefix: Get(portcullis:k) = %q, %v; want %q", got, err, "default")
	}
}

func TestRedisOutage(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	kv := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0))
	defer kv.Close()
	if err := kv.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}

	admin := cache.RedisClient([]string{addr}, "", "", "", 0)
	defer admin.Close()
	_ = admin.ShutdownNoSave(ctx).Err() // the server hangs up instead of answering

	start := time.Now()
	ops := []struct {
		name string
		do   func() error
	}{
		{"get", func() error { _, err := kv.Get(ctx, "k"); return err }},
		{"set", func() error { return kv.Set(ctx, "k", []byte("v"), time.Minute) }},
		{"delete", func() error { return kv.Delete(ctx, "k") }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			err := op.do()
			if !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("%s during an outage: %v; want an error wrapping ErrUnavailable", op.name, err)
			}
			if errors.Is(err, cache.ErrNotFound) {
				t.Errorf("outage reported as ErrNotFound: %v", err)
			}
		})
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("outage errors took %v; the client should fail fast", d)
	}
}

func TestRedisClosedClient(t *testing.T) {
	addr := cachetest.StartRedis(t)
	kv := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0))
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), "k"); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("Get on a closed client: %v; want ErrUnavailable", err)
	}
}

// A key in its last millisecond has PTTL 0, which must not read as "no expiry": a Tiered would then keep its copy
// for maxLocal after the key expired (seen once in CI as TestTieredInvalidationConformance/ttl_expiry).
func TestRedisTTLLastMillisecond(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	r := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix("lastms:"))
	defer r.Close()
	reads := map[string]func(key string) (time.Duration, error){
		"GetTTL": func(key string) (time.Duration, error) {
			_, left, err := r.GetTTL(ctx, key)
			return left, err
		},
		"GetBatch": func(key string) (time.Duration, error) {
			e, err := r.GetBatch(ctx, []string{key})
			if err != nil {
				return 0, err
			}
			return e[0].TTL, e[0].Err
		},
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			// Poll keys with a few milliseconds to live until they are gone, until some read landed in a key's
			// last millisecond.
			lastMs := 0
			deadline := time.Now().Add(10 * time.Second)
			for i := 0; lastMs < 3 && time.Now().Before(deadline); i++ {
				key := fmt.Sprintf("%s%d", name, i)
				if err := r.Set(ctx, key, []byte("v"), 3*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				for {
					left, err := read(key)
					if errors.Is(err, cache.ErrNotFound) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					if left <= 0 {
						t.Fatalf("a key set with a 3ms TTL read with %v left, which means no expiry", left)
					}
					if left <= time.Millisecond {
						lastMs++
					}
				}
			}
			if lastMs == 0 {
				t.Fatal("no read landed in a key's last millisecond in 10s")
			}
		})
	}
}
