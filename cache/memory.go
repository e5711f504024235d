package cache

import (
	"container/heap"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

const (
	defaultMaxEntries = 100000
	// defaultSweepInterval is how often the janitor drops expired keys. Reads check expiry themselves, so
	// this only bounds how long expired values hold memory.
	defaultSweepInterval = 5 * time.Second
)

// MemoryOption configures a Memory.
type MemoryOption func(*Memory)

// WithMaxEntries caps the number of keys a Memory holds. When a new key would exceed it, the key that
// expires soonest is evicted (keys without a TTL go last, oldest write first). n <= 0 keeps the default,
// 100000.
func WithMaxEntries(n int) MemoryOption {
	return func(m *Memory) {
		if n > 0 {
			m.max = n
		}
	}
}

// WithClock sets the clock used for TTLs, for tests. Default: time.Now.
func WithClock(now func() time.Time) MemoryOption {
	return func(m *Memory) {
		if now != nil {
			m.now = now
		}
	}
}

// Memory is an in-process KV: a map with per-key expiry, bounded in entries. A janitor goroutine sweeps
// expired keys until Close. It is safe for concurrent use.
type Memory struct {
	max   int
	now   func() time.Time
	sweep time.Duration

	mu    sync.Mutex
	items map[string]*memItem
	order memHeap // eviction order: soonest expiry first, then oldest write
	seq   uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	leases memLeases
}

type memItem struct {
	key     string
	val     []byte
	expires time.Time // zero: never
	seq     uint64    // write order, for ties and keys without TTL
	index   int       // position in Memory.order
}

// NewMemory returns an empty Memory and starts its janitor; call Close to stop it.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{
		max:   defaultMaxEntries,
		now:   time.Now,
		sweep: defaultSweepInterval,
		items: make(map[string]*memItem),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	go m.janitor()
	return m
}

// Get implements KV. The returned slice is a copy the caller may keep.
func (m *Memory) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.items[key]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	if it.expired(m.now()) {
		m.removeLocked(it)
		return nil, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return append([]byte(nil), it.val...), nil
}

// Set implements KV. It stores a copy of val.
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	now := m.now()
	var expires time.Time
	if ttl > 0 {
		expires = now.Add(ttl)
	}
	val = append(make([]byte, 0, len(val)), val...)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	if it, ok := m.items[key]; ok {
		it.val, it.expires, it.seq = val, expires, m.seq
		heap.Fix(&m.order, it.index)
		return nil
	}
	if len(m.items) >= m.max {
		m.sweepLocked(now)
		for len(m.items) >= m.max {
			m.removeLocked(m.order[0])
		}
	}
	it := &memItem{key: key, val: val, expires: expires, seq: m.seq}
	m.items[key] = it
	heap.Push(&m.order, it)
	return nil
}

// Delete implements KV.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if it, ok := m.items[key]; ok {
		m.removeLocked(it)
	}
	return nil
}

// DropLocal deletes every key that starts with one of prefixes, and returns how many it deleted. It reads every key
// once, under the lock: for rare bulk changes (a superseded policy's entries), not for the request path.
func (m *Memory) DropLocal(prefixes ...string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for key, it := range m.items {
		for _, p := range prefixes {
			if strings.HasPrefix(key, p) {
				m.removeLocked(it)
				n++
				break
			}
		}
	}
	return n
}

// Len returns the number of keys held, expired ones not yet swept included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.items)
}

// Close stops the janitor. It is idempotent; the map stays usable.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.done
	})
	return nil
}

func (m *Memory) janitor() {
	defer close(m.done)
	t := time.NewTicker(m.sweep)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.mu.Lock()
			m.sweepLocked(m.now())
			m.mu.Unlock()
		}
	}
}

// sweepLocked drops expired keys; they sit at the top of the heap, so this costs O(expired * log n).
func (m *Memory) sweepLocked(now time.Time) {
	for len(m.order) > 0 && m.order[0].expired(now) {
		m.removeLocked(m.order[0])
	}
}

func (m *Memory) removeLocked(it *memItem) {
	heap.Remove(&m.order, it.index)
	delete(m.items, it.key)
}

func (it *memItem) expired(now time.Time) bool {
	return !it.expires.IsZero() && !now.Before(it.expires)
}

// memHeap orders items for eviction: items with a TTL before items without, sooner expiry first, then
// older writes first.
type memHeap []*memItem

func (h memHeap) Len() int { return len(h) }

func (h memHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	switch {
	case a.expires.IsZero() != b.expires.IsZero():
		return !a.expires.IsZero()
	case !a.expires.Equal(b.expires):
		return a.expires.Before(b.expires)
	default:
		return a.seq < b.seq
	}
}

func (h memHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *memHeap) Push(x any) {
	it := x.(*memItem)
	it.index = len(*h)
	*h = append(*h, it)
}

func (h *memHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.index = -1
	return it
}
