package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

func TestSignedKVConformance(t *testing.T) {
	sign := func(t *testing.T, kv cache.KV) cache.KV {
		s, err := cache.NewSigned(kv, testKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("memory", func(t *testing.T) {
		cachetest.RunKV(t, func(t *testing.T) cache.KV { return sign(t, cache.NewMemory()) })
	})
	t.Run("redis", func(t *testing.T) {
		addr := cachetest.StartRedis(t)
		var n atomic.Int64
		cachetest.RunKV(t, func(t *testing.T) cache.KV {
			return sign(t, cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix(fmt.Sprintf("signed%d:", n.Add(1)))))
		})
	})
	t.Run("tiered over signed redis", func(t *testing.T) {
		addr := cachetest.StartRedis(t)
		var n atomic.Int64
		cachetest.RunKV(t, func(t *testing.T) cache.KV {
			shared := sign(t, cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix(fmt.Sprintf("tsigned%d:", n.Add(1)))))
			return cache.NewTiered(cache.NewMemory(), shared, time.Minute)
		})
	})
}

func TestNewSignedNeedsAKey(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("short"), make([]byte, 31)} {
		if _, err := cache.NewSigned(cache.NewMemory(), key); err == nil || !strings.Contains(err.Error(), "head -c 32 /dev/urandom") {
			t.Errorf("NewSigned with a %d-byte key: %v; want an error saying how to make one", len(key), err)
		}
		if _, err := cache.NewSignedCollections(cache.NewRedisCollections(nil), key); err == nil {
			t.Errorf("NewSignedCollections with a %d-byte key succeeded", len(key))
		}
	}
}

// logBuffer is a slog handler's output, safe for the goroutines that log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// A party that can write to Redis but lacks the state key cannot make Portcullis accept a value: not a forged one,
// not a valid one moved to another key, not one kept past the expiry it was signed with.
func TestSignedKVRejectsForgeries(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	var logs logBuffer
	redisKV := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0))
	kv, err := cache.NewSigned(redisKV, testKey,
		cache.WithSignedLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		cache.WithSignedClock(func() time.Time { return *clock.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	// The attacker writes under the same prefix, raw.
	attacker := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0))
	defer attacker.Close()
	otherMem := cache.NewMemory()
	other, err := cache.NewSigned(otherMem, bytes.Repeat([]byte{7}, 32)) // a state key that is not ours
	if err != nil {
		t.Fatal(err)
	}

	const allow = `{"allowed":true}`
	if err := kv.Set(ctx, "decision/ok", []byte(allow), time.Hour); err != nil {
		t.Fatal(err)
	}
	valid, err := attacker.Get(ctx, "decision/ok")
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		raw  func(key string) []byte
	}{
		{"plain value", func(string) []byte { return []byte(allow) }},
		{"value with a made-up MAC", func(string) []byte { return append([]byte(allow), make([]byte, 40)...) }},
		{"valid value moved to another key", func(string) []byte { return valid }},
		{"valid value with one bit changed", func(string) []byte {
			v := bytes.Clone(valid)
			v[2] ^= 1
			return v
		}},
		{"value with a later expiry", func(string) []byte {
			v := bytes.Clone(valid)
			v[len(allow)] ^= 0x40 // the expiry's high bytes
			return v
		}},
		{"value signed with another state key", func(key string) []byte {
			if err := other.Set(ctx, key, []byte(allow), time.Hour); err != nil {
				t.Fatal(err)
			}
			v, _ := otherMem.Get(ctx, key)
			return v
		}},
		{"empty", func(string) []byte { return nil }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("decision/forged%d", i)
			if err := attacker.Set(ctx, key, tc.raw(key), time.Hour); err != nil {
				t.Fatal(err)
			}
			before := kv.Rejected()
			if v, err := kv.Get(ctx, key); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Get = %q, %v; want ErrNotFound", v, err)
			}
			if _, _, err := kv.GetTTL(ctx, key); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("GetTTL: %v; want ErrNotFound", err)
			}
			if got := kv.Rejected() - before; got != 2 {
				t.Errorf("Rejected grew by %d; want 2", got)
			}
		})
	}
	// The valid value under its own key still reads.
	if v, err := kv.Get(ctx, "decision/ok"); err != nil || string(v) != allow {
		t.Errorf("the valid value: %q, %v", v, err)
	}

	// Kept alive past its signed expiry (PERSIST): absent, and counted once it is clearly not clock skew.
	if err := kv.Set(ctx, "decision/short", []byte(allow), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	admin := cache.RedisClient([]string{addr}, "", "", "", 0)
	defer admin.Close()
	if err := admin.Persist(ctx, "portcullis:decision/short").Err(); err != nil {
		t.Fatal(err)
	}
	later := now.Add(3 * time.Second)
	clock.Store(&later)
	before := kv.Rejected()
	if _, err := kv.Get(ctx, "decision/short"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("just past its expiry: %v; want ErrNotFound", err)
	}
	if kv.Rejected() != before {
		t.Error("a value just past its expiry counted as rejected (replica clocks differ a little)")
	}
	much := now.Add(time.Hour)
	clock.Store(&much)
	if _, err := kv.Get(ctx, "decision/short"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("long past its expiry: %v; want ErrNotFound", err)
	}
	if kv.Rejected() != before+1 {
		t.Error("a value kept long past its signed expiry was not counted")
	}

	// Logged once, then at most once a minute: a flood of forgeries cannot flood the log.
	lines := logs.lines()
	if len(lines) != 2 || !strings.Contains(lines[0], "integrity") || !strings.Contains(lines[1], "rejectedSinceLastReport=") {
		t.Errorf("log lines: %q; want the first rejection and, an hour later, one line with the count", lines)
	}
}

func TestSignedCollectionsRejectsForgeries(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	client := cache.RedisClient([]string{addr}, "", "", "", 0)
	defer client.Close()
	var logs logBuffer
	c, err := cache.NewSignedCollections(cache.NewRedisCollections(client), testKey,
		cache.WithSignedLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	raw := cache.NewRedisCollections(client) // the attacker's view: same keys, no MAC
	if err := c.Put(ctx, "allow", "sha256:good", []byte("alice")); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "deny", "sha256:bad", []byte("bob")); err != nil {
		t.Fatal(err)
	}
	good, _ := raw.All(ctx, "allow")
	deny, _ := raw.All(ctx, "deny")

	forge := []struct {
		name, coll, id string
		val            []byte
	}{
		{"plain record", "allow", "sha256:evil1", []byte("mallory")},
		{"made-up MAC", "allow", "sha256:evil2", append([]byte("mallory"), make([]byte, 32)...)},
		{"valid record under another id", "allow", "sha256:evil3", good["sha256:good"]},
		{"valid record from another collection", "allow", "sha256:bad", deny["sha256:bad"]},
		{"short", "allow", "sha256:evil4", []byte("x")},
	}
	for _, f := range forge {
		if err := raw.Put(ctx, f.coll, f.id, f.val); err != nil {
			t.Fatal(err)
		}
	}
	all, err := c.All(ctx, "allow")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]byte{"sha256:good": []byte("alice")}, all); diff != "" {
		t.Errorf("All(allow) with forged records (-want +got):\n%s", diff)
	}
	if c.Rejected() != int64(len(forge)) {
		t.Errorf("Rejected() = %d; want %d", c.Rejected(), len(forge))
	}
	if lines := logs.lines(); len(lines) != 1 {
		t.Errorf("%d log lines for %d forged records; want one: %q", len(lines), len(forge), lines)
	}
	// A forged record can still be deleted through the API (it is there, just not believed).
	if err := c.Delete(ctx, "allow", "sha256:evil1"); err != nil {
		t.Errorf("Delete of a forged record: %v", err)
	}
}
