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

// drop forgets s.
func (h *hotSet) drop(s Subject) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.items, s.Image())
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
// verification on a pull. It also decides again on the images decided while the shared state was down (their
// decisions are kept locally, briefly, under an unknown facts epoch) once it is back, so that those decisions reach
// the shared state and the other replicas. It returns how many it decided.
func (g *Gate) Refresh(ctx context.Context, margin time.Duration) int {
	return g.view().refresh(ctx, margin)
}

func (g *view) refresh(ctx context.Context, margin time.Duration) int {
	n := g.share(ctx)
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

// RunRefresher calls Refresh every interval until ctx ends, and shares the decisions made while the shared state was
// down every 5 seconds (or interval, if shorter). Default interval (<= 0): 1 minute, with a margin of twice the
// interval.
func (g *Gate) RunRefresher(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	// Decisions made while the shared state was down are shared sooner than the refresh interval.
	back := time.NewTicker(min(interval, 5*time.Second))
	defer back.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-back.C:
			if n := g.view().share(ctx); n > 0 {
				g.log.Info("shared admission decisions made while the shared state was down", "count", n)
			}
		case <-t.C:
			if n := g.Refresh(ctx, 2*interval); n > 0 {
				g.log.Info("refreshed admission decisions before they lapse", "count", n)
			}
		}
	}
}

// share decides again on the images decided in the last hour while the facts epoch was unreadable, for those whose
// epoch can be read now and that have no decision under it yet: the decision is stored, and so shared, as any is.
// An image whose epoch is still unreadable waits for the next call.
func (g *view) share(ctx context.Context) int {
	n := 0
	for _, s := range g.outage.snapshot(g.now().Add(-time.Hour)) {
		if ctx.Err() != nil {
			break
		}
		epoch, known := g.epoch(ctx, s.Digest)
		if !known {
			continue
		}
		g.outage.drop(s)
		if _, ok := g.load(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch)); ok {
			continue
		}
		if _, err := g.evaluate(ctx, s, 0); err != nil {
			g.log.Warn("could not decide again after the shared state came back", "image", s.Image(), "error", err)
			continue
		}
		n++
	}
	return n
}
