package proxy

import (
	"container/list"
	"sync"

	"github.com/opencontainers/go-digest"
)

// DefaultManifestCacheSize is the memory WithManifestCacheSize defaults to: 16 MiB of manifest bytes.
const DefaultManifestCacheSize = 16 << 20

// manifestCache keeps the most recently served verified manifests in memory, by digest, up to a byte budget (least
// recently used out first). A manifest is content-addressed and was verified against its digest before it got
// here, so a copy never goes stale; it spares a warm manifest request the content store's open, read and re-hash.
// It caches bytes only: every request is still decided (Admit) on its own.
type manifestCache struct {
	max int64

	mu    sync.Mutex
	size  int64
	lru   *list.List // of *verifiedManifest, most recent at the front
	items map[digest.Digest]*list.Element
}

func newManifestCache(max int64) *manifestCache {
	return &manifestCache{max: max, lru: list.New(), items: map[digest.Digest]*list.Element{}}
}

func (c *manifestCache) get(d digest.Digest) (verifiedManifest, bool) {
	if c.max <= 0 {
		return verifiedManifest{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[d]
	if !ok {
		return verifiedManifest{}, false
	}
	c.lru.MoveToFront(e)
	return *e.Value.(*verifiedManifest), true
}

// add keeps m, which must have been verified against m.dgst.
func (c *manifestCache) add(m verifiedManifest) {
	n := int64(len(m.body))
	if n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[m.dgst]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.items[m.dgst] = c.lru.PushFront(&m)
	c.size += n
	for c.size > c.max {
		last := c.lru.Back()
		old := last.Value.(*verifiedManifest)
		c.lru.Remove(last)
		delete(c.items, old.dgst)
		c.size -= int64(len(old.body))
	}
}
