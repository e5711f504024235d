package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/manifest"
	"github.com/portcullis/portcullis/upstream"
)

// A manifest is kept once, by digest, whichever repository it was fetched for; it is served under a repository only
// once that repository's upstream has been seen to hold it. Otherwise a manifest fetched for one repository (an
// attacker's, and denied there) would be served under any other name, and decided by that name's rule: a lenient
// one (warn mode, an allow-list entry) would admit, under a trusted repository's name, an image that repository
// never had. Distribution links content to each repository for the same reason.
//
// A repository is seen to hold a manifest when its tag resolves to it there, when the manifest is fetched from it,
// or when a HEAD by digest there finds it. The mark is kept in memory and in the KV (heldKey), so that other
// replicas and a restart do not ask again for heldTTL.
//
// Only a gate that decides by repository binds manifests to repositories (a BlobGate, which binds blobs to them
// too): with no policy every image is served and every blob by digest, as a plain pull-through cache, and a stored
// manifest still serves while the upstream is down, after a restart too.

// heldTTL is how long the KV keeps the mark that a repository holds a manifest; after it, one HEAD marks it again.
const heldTTL = 7 * 24 * time.Hour

// maxHeld bounds the marks kept in memory (emptied when full: the KV still has them).
const maxHeld = 1 << 16

// heldKey names the mark that the route's upstream repository holds manifest d.
func heldKey(r route, d digest.Digest) string {
	return "held/" + r.key() + "@" + d.String()
}

// heldSet is the marks this process has seen.
type heldSet struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func (s *heldSet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[key]
	return ok
}

// add reports whether key is new here.
func (s *heldSet) add(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[key]; ok {
		return false
	}
	if s.keys == nil || len(s.keys) >= maxHeld {
		s.keys = map[string]struct{}{}
	}
	s.keys[key] = struct{}{}
	return true
}

// markHeld records that the route's upstream repository holds d: the digest its tag resolved to there, or a
// manifest fetched from it.
func (p *Proxy) markHeld(ctx context.Context, r route, d digest.Digest) {
	if !p.bindsRepositories() {
		return
	}
	key := heldKey(r, d)
	if !p.held.add(key) {
		return
	}
	if err := p.kv.Set(ctx, key, []byte("1"), heldTTL); err != nil {
		p.log.Warn("shared cache write failed", "key", key, "error", err)
	}
}

// holds is checkHeld for a digest not already known to be the route's (inRepo: marked by manifestByDigest).
func (p *Proxy) holds(ctx context.Context, r route, d digest.Digest, inRepo bool) error {
	if inRepo {
		return nil
	}
	return p.checkHeld(ctx, r, d)
}

// checkHeld returns nil when the route's upstream repository is known to hold manifest d, or a HEAD by digest there
// finds it; else the upstream's error (upstream.ErrNotFound: it does not hold it). Many requests at once make one
// HEAD.
func (p *Proxy) checkHeld(ctx context.Context, r route, d digest.Digest) error {
	if !p.bindsRepositories() {
		return nil
	}
	key := heldKey(r, d)
	if p.held.has(key) {
		return nil
	}
	if _, err := p.kv.Get(ctx, key); err == nil {
		p.held.add(key)
		return nil
	}
	_, err, _ := p.manifests.Do(key, func() (any, error) {
		ctx := context.WithoutCancel(ctx)
		desc, err := r.upstream.Registry.Resolve(ctx, r.repo, d.String(), manifest.AcceptTypes())
		switch {
		case err != nil:
			return nil, err
		case desc.Digest != d:
			p.metrics.mismatch.WithLabelValues(r.upstream.Name).Inc()
			return nil, fmt.Errorf("manifest %s: upstream answered for %s: %w", d, desc.Digest, upstream.ErrDigestMismatch)
		}
		p.markHeld(ctx, r, d)
		return nil, nil
	})
	if err != nil {
		p.log.Info("stored manifest not served: the repository's upstream does not hold it, or could not say",
			"upstream", r.upstream.Name, "repository", r.repo, "digest", d, "error", err)
	}
	return err
}

// bindsRepositories reports whether the admitter decides by repository, so that a manifest must be its
// repository's to be served there.
func (p *Proxy) bindsRepositories() bool {
	_, ok := p.admitter.(BlobGate)
	return ok
}
