package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

func TestMemoryConformance(t *testing.T) {
	cachetest.RunKV(t, func(t *testing.T) cache.KV { return cache.NewMemory() })
}

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// present lists which of keys a KV holds.
func present(t *testing.T, kv cache.KV, keys ...string) []string {
	t.Helper()
	var got []string
	for _, k := range keys {
		_, err := kv.Get(context.Background(), k)
		switch {
		case err == nil:
			got = append(got, k)
		case !errors.Is(err, cache.ErrNotFound):
			t.Fatalf("Get(%q): %v", k, err)
		}
	}
	return got
}

func TestMemoryClockExpiry(t *testing.T) {
	clock := newFakeClock()
	m := cache.NewMemory(cache.WithClock(clock.Now))
	defer m.Close()
	ctx := context.Background()
	for _, kt := range []struct {
		key string
		ttl time.Duration
	}{{"a", time.Second}, {"b", time.Minute}, {"c", 0}} {
		if err := m.Set(ctx, kt.key, []byte(kt.key), kt.ttl); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		advance time.Duration
		want    []string
	}{
		{"fresh", 0, []string{"a", "b", "c"}},
		{"just before a expires", 999 * time.Millisecond, []string{"a", "b", "c"}},
		{"a expires at its deadline", time.Millisecond, []string{"b", "c"}},
		{"b expires", time.Minute, []string{"c"}},
		{"no ttl stays", 24 * 365 * time.Hour, []string{"c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Advance(tt.advance)
			if diff := cmp.Diff(tt.want, present(t, m, "a", "b", "c")); diff != "" {
				t.Errorf("present keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMemoryMaxEntries(t *testing.T) {
	ctx := context.Background()
	type set struct {
		key string
		ttl time.Duration
	}
	tests := []struct {
		name    string
		max     int
		sets    []set
		advance time.Duration // before the last set
		want    []string
	}{
		{
			name: "oldest without ttl goes first",
			max:  3,
			sets: []set{{"a", 0}, {"b", 0}, {"c", 0}, {"d", 0}},
			want: []string{"b", "c", "d"},
		},
		{
			name: "soonest expiring goes before keys without ttl",
			max:  3,
			sets: []set{{"a", 0}, {"b", time.Hour}, {"c", time.Minute}, {"d", 0}},
			want: []string{"a", "b", "d"},
		},
		{
			name:    "expired keys are swept before anything live is evicted",
			max:     3,
			sets:    []set{{"a", time.Second}, {"b", time.Second}, {"c", 0}, {"d", 0}},
			advance: 2 * time.Second,
			want:    []string{"c", "d"},
		},
		{
			name: "overwrite does not count as a new entry",
			max:  2,
			sets: []set{{"a", 0}, {"b", 0}, {"a", 0}, {"a", 0}},
			want: []string{"a", "b"},
		},
		{
			name: "overwrite makes a key young again",
			max:  2,
			sets: []set{{"a", 0}, {"b", 0}, {"a", 0}, {"c", 0}},
			want: []string{"a", "c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			m := cache.NewMemory(cache.WithMaxEntries(tt.max), cache.WithClock(clock.Now))
			defer m.Close()
			for i, s := range tt.sets {
				if i == len(tt.sets)-1 {
					clock.Advance(tt.advance)
				}
				if err := m.Set(ctx, s.key, []byte(s.key), s.ttl); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tt.want, present(t, m, "a", "b", "c", "d")); diff != "" {
				t.Errorf("present keys (-want +got):\n%s", diff)
			}
			if m.Len() > tt.max {
				t.Errorf("Len() = %d, want <= %d", m.Len(), tt.max)
			}
		})
	}
}

func TestMemoryManyEntriesBounded(t *testing.T) {
	m := cache.NewMemory(cache.WithMaxEntries(100))
	defer m.Close()
	ctx := context.Background()
	for i := range 1000 {
		if err := m.Set(ctx, fmt.Sprint(i), []byte("v"), time.Duration(i%7)*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if got := m.Len(); got != 100 {
		t.Errorf("Len() = %d, want 100", got)
	}
	if _, err := m.Get(ctx, "999"); err != nil {
		t.Errorf("the newest key was evicted: %v", err)
	}
}

func TestMemoryCloseIdempotent(t *testing.T) {
	m := cache.NewMemory()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// DropLocal deletes the keys under the prefixes and only those, from a Memory and from a Tiered's local tier (the
// shared tier keeps them).
func TestDropLocal(t *testing.T) {
	ctx := context.Background()
	keys := []string{"decision/aa/x", "blob/aa/y", "decision/bb/x", "tag/x"}
	fill := func(t *testing.T, kv cache.KV) {
		for _, k := range keys {
			if err := kv.Set(ctx, k, []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("memory", func(t *testing.T) {
		m := cache.NewMemory()
		defer m.Close()
		fill(t, m)
		if n := m.DropLocal("decision/aa/", "blob/aa/"); n != 2 {
			t.Errorf("dropped %d keys, want 2", n)
		}
		if diff := cmp.Diff([]string{"decision/bb/x", "tag/x"}, present(t, m, keys...)); diff != "" {
			t.Errorf("present keys (-want +got):\n%s", diff)
		}
		if m.Len() != 2 {
			t.Errorf("Len %d after the drop", m.Len())
		}
	})
	t.Run("tiered", func(t *testing.T) {
		local, shared := cache.NewMemory(), cache.NewMemory()
		tv := cache.NewTiered(local, shared, time.Minute)
		defer tv.Close()
		fill(t, tv)
		if n := tv.DropLocal("decision/aa/"); n != 1 {
			t.Errorf("dropped %d keys, want 1", n)
		}
		if diff := cmp.Diff([]string{"blob/aa/y", "decision/bb/x", "tag/x"}, present(t, local, keys...)); diff != "" {
			t.Errorf("local keys (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(keys, present(t, shared, keys...)); diff != "" {
			t.Errorf("shared keys (-want +got):\n%s", diff)
		}
	})
}
