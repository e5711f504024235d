package proxy

import (
	"fmt"
	"sync"
)

// storeHealth remembers whether the last write to the content store failed (a full disk, a read-only mount, S3
// refusing), so that /readyz can say the replica serves uncached. The next write that succeeds clears it.
type storeHealth struct {
	mu  sync.Mutex
	err error
}

func (h *storeHealth) record(err error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
}

// Healthy reports whether the content store took the last blob or manifest written to it: nil if it did (or
// nothing was written yet), else an error saying blobs are served from the upstream uncached. It answers at once,
// for every /readyz; a failing store degrades the replica, it does not take it out of service.
func (p *Proxy) Healthy() error {
	p.storeHealth.mu.Lock()
	defer p.storeHealth.mu.Unlock()
	if p.storeHealth.err != nil {
		return fmt.Errorf("content store: the last write failed, content is served uncached: %w", p.storeHealth.err)
	}
	return nil
}
