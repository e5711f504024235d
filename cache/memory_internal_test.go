package cache

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestMemoryJanitorSweeps(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := NewMemory(WithClock(clock), func(m *Memory) { m.sweep = 5 * time.Millisecond })
	defer m.Close()
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if err := m.Set(ctx, k, []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set(ctx, "keep", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()

	deadline := time.Now().Add(5 * time.Second)
	for m.Len() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Len() = %d after sweeps, want 1: expired keys were not swept", m.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
