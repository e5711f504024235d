package admission

import (
	"context"
	"sync"
	"time"
)

// hotSet remembers the admitted images with a scan gate that clients pulled recently, for the refresher.
type hotSet struct {
	mu    sync.Mutex
	max   int
	items map[string]hotItem
}

type hotItem struct {
	s    Subject
	seen time.Time
}

func newHotSet(max int) *hotSet { return &hotSet{max: max, items: map[string]hotItem{}} }

func (h *hotSet) touch(s Subject, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := s.Image()
	if _, ok := h.items[key]; !ok && len(h.items) >= h.max {
		var oldest string
		for k, it := range h.items {
			if oldest == "" || it.seen.Before(h.items[oldest].seen) {
				oldest = k
			}
		}
		delete(h.items, oldest)
	}
	h.items[key] = hotItem{s: s, seen: now}
}

func (h *hotSet) snapshot(since time.Time) []Subject {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Subject
	for k, it := range h.items {
		if it.seen.Before(since) {
			delete(h.items, k)
			continue
		}
		out = append(out, it.s)
	}
	return out
}

// Refresh decides again, in the background, on every hot image (admitted with a scan gate and pulled within the
// last hour) whose cached decision lapses within margin, so that a busy image never waits for a report or a
// verification on a pull. It returns how many it refreshed.
func (g *Gate) Refresh(ctx context.Context, margin time.Duration) int {
	return g.view().refresh(ctx, margin)
}

func (g *view) refresh(ctx context.Context, margin time.Duration) int {
	n := 0
	for _, s := range g.hot.snapshot(g.now().Add(-time.Hour)) {
		if ctx.Err() != nil {
			break
		}
		epoch, _ := g.epoch(ctx, s.Digest)
		if d, ok := g.load(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch)); ok && d.Expires.Sub(g.now()) > margin {
			continue
		}
		if _, err := g.evaluate(ctx, s, margin); err != nil {
			g.log.Warn("refresh could not decide", "image", s.Image(), "error", err)
			continue
		}
		n++
	}
	return n
}

// RunRefresher calls Refresh every interval until ctx ends. Default interval (<= 0): 1 minute, with a margin of
// twice the interval.
func (g *Gate) RunRefresher(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := g.Refresh(ctx, 2*interval); n > 0 {
				g.log.Info("refreshed admission decisions before they lapse", "count", n)
			}
		}
	}
}
