package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// RunKV runs the KV conformance suite. newKV is called once per subtest and must return an empty store
// (for a shared server, use a fresh key prefix); RunKV closes each store it gets.
func RunKV(t *testing.T, newKV func(t *testing.T) cache.KV) {
	t.Helper()
	subtests := []struct {
		name string
		fn   func(t *testing.T, kv cache.KV)
	}{
		{"get missing", testGetMissing},
		{"set get", testSetGet},
		{"overwrite", testOverwrite},
		{"delete", testDelete},
		{"delete missing", testDeleteMissing},
		{"ttl expiry", testTTLExpiry},
		{"overwrite replaces ttl", testOverwriteTTL},
		{"zero ttl never expires", testZeroTTL},
		{"binary values", testBinary},
		{"empty value", testEmpty},
		{"large value", testLarge},
		{"concurrent", testConcurrent},
		{"odd keys", testOddKeys},
	}
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) {
			kv := newKV(t)
			t.Cleanup(func() { _ = kv.Close() })
			st.fn(t, kv)
		})
	}
}

func mustSet(t *testing.T, kv cache.KV, key string, val []byte, ttl time.Duration) {
	t.Helper()
	if err := kv.Set(context.Background(), key, val, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantValue(t *testing.T, kv cache.KV, key string, want []byte) {
	t.Helper()
	got, err := kv.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q (len %d), want %q (len %d)", key, trunc(got), len(got), trunc(want), len(want))
	}
}

func wantMissing(t *testing.T, kv cache.KV, key string) {
	t.Helper()
	got, err := kv.Get(context.Background(), key)
	if !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, trunc(got), err)
	}
}

func trunc(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// eventuallyMissing polls until key is gone: TTLs are real time, so the suite never sleeps an exact amount.
func eventuallyMissing(t *testing.T, kv cache.KV, key string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := kv.Get(context.Background(), key)
		if errors.Is(err, cache.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatalf("Get(%q): %v", key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get(%q) still present %v after its TTL", key, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testGetMissing(t *testing.T, kv cache.KV) {
	wantMissing(t, kv, "missing")
}

func testSetGet(t *testing.T, kv cache.KV) {
	mustSet(t, kv, "tag:library/alpine:3.20", []byte("sha256:abc"), time.Minute)
	wantValue(t, kv, "tag:library/alpine:3.20", []byte("sha256:abc"))
	wantMissing(t, kv, "tag:library/alpine:3.19")
}

func testOverwrite(t *testing.T, kv cache.KV) {
	mustSet(t, kv, "k", []byte("one"), time.Minute)
	mustSet(t, kv, "k", []byte("two"), time.Minute)
	wantValue(t, kv, "k", []byte("two"))
}

func testDelete(t *testing.T, kv cache.KV) {
	mustSet(t, kv, "k", []byte("v"), 0)
	mustSet(t, kv, "other", []byte("w"), 0)
	if err := kv.Delete(context.Background(), "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantMissing(t, kv, "k")
	wantValue(t, kv, "other", []byte("w"))
}

func testDeleteMissing(t *testing.T, kv cache.KV) {
	if err := kv.Delete(context.Background(), "never-set"); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
}

func testTTLExpiry(t *testing.T, kv cache.KV) {
	mustSet(t, kv, "short", []byte("v"), 300*time.Millisecond)
	mustSet(t, kv, "long", []byte("v"), time.Minute)
	wantValue(t, kv, "short", []byte("v"))
	eventuallyMissing(t, kv, "short", 3*time.Second)
	wantValue(t, kv, "long", []byte("v"))

	// Sub-second TTLs keep millisecond precision (Redis PX, not EX).
	mustSet(t, kv, "ms", []byte("v"), 50*time.Millisecond)
	eventuallyMissing(t, kv, "ms", 1500*time.Millisecond)
}

func testOverwriteTTL(t *testing.T, kv cache.KV) {
	mustSet(t, kv, "k", []byte("old"), 100*time.Millisecond)
	mustSet(t, kv, "k", []byte("new"), 0)
	time.Sleep(250 * time.Millisecond)
	wantValue(t, kv, "k", []byte("new"))

	mustSet(t, kv, "j", []byte("old"), 0)
	mustSet(t, kv, "j", []byte("new"), 100*time.Millisecond)
	eventuallyMissing(t, kv, "j", 3*time.Second)
}

func testZeroTTL(t *testing.T, kv cache.KV) {
	mustSet(t, kv, "zero", []byte("v"), 0)
	mustSet(t, kv, "negative", []byte("v"), -time.Second)
	mustSet(t, kv, "short", []byte("v"), 50*time.Millisecond)
	eventuallyMissing(t, kv, "short", 3*time.Second) // the clock did move on
	wantValue(t, kv, "zero", []byte("v"))
	wantValue(t, kv, "negative", []byte("v"))
}

func testBinary(t *testing.T, kv cache.KV) {
	val := make([]byte, 256)
	for i := range val {
		val[i] = byte(i)
	}
	mustSet(t, kv, "bin", val, 0)
	wantValue(t, kv, "bin", val)

	// The store keeps its own copy: changing the caller's slices changes nothing stored.
	orig := bytes.Clone(val)
	val[0] = 0xff
	wantValue(t, kv, "bin", orig)
	got, err := kv.Get(context.Background(), "bin")
	if err != nil {
		t.Fatal(err)
	}
	got[1] = 0xff
	wantValue(t, kv, "bin", orig)
}

func testEmpty(t *testing.T, kv cache.KV) {
	mustSet(t, kv, "empty", nil, 0)
	wantValue(t, kv, "empty", []byte{})
}

func testLarge(t *testing.T, kv cache.KV) {
	val := make([]byte, 1<<20)
	for i := range val {
		val[i] = byte(i * 7)
	}
	mustSet(t, kv, "large", val, time.Minute)
	wantValue(t, kv, "large", val)
}

func testConcurrent(t *testing.T, kv cache.KV) {
	const workers, rounds = 20, 25
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("own-%d", w)
				val := fmt.Appendf(nil, "%d-%d", w, i)
				if err := kv.Set(ctx, key, val, time.Minute); err != nil {
					errs <- err
					return
				}
				got, err := kv.Get(ctx, key)
				if err != nil || !bytes.Equal(got, val) {
					errs <- fmt.Errorf("Get(%q) = %q, %v; want %q", key, got, err, val)
					return
				}
				if err := kv.Set(ctx, "shared", fmt.Appendf(nil, "w%d", w), time.Minute); err != nil {
					errs <- err
					return
				}
				if _, err := kv.Get(ctx, "shared"); err != nil {
					errs <- fmt.Errorf("Get(shared): %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := kv.Get(ctx, "shared")
	if err != nil || !bytes.HasPrefix(got, []byte("w")) {
		t.Fatalf("Get(shared) = %q, %v; want one writer's value", got, err)
	}
}

func testOddKeys(t *testing.T, kv cache.KV) {
	keys := []string{
		"a/b/c",
		"ns:docker.io:library/alpine",
		"ghcr.io/acme/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"with spaces and\ttabs",
		"ünïcødé/日本語/🚀",
		"*?[glob]{chars}",
		"",
	}
	for i, k := range keys {
		mustSet(t, kv, k, fmt.Appendf(nil, "v%d", i), time.Minute)
	}
	for i, k := range keys {
		wantValue(t, kv, k, fmt.Appendf(nil, "v%d", i))
	}
	if err := kv.Delete(context.Background(), keys[2]); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, kv, keys[2])
	wantValue(t, kv, keys[1], []byte("v1"))
}
