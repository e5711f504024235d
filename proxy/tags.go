package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/internal/manifest"
	"github.com/portcullis/portcullis/upstream"
)

// tagEntry is a tag's resolution as shared between replicas.
type tagEntry struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	// Resolved is when the upstream last confirmed the mapping.
	Resolved time.Time `json:"resolved"`
}

// resolution is a tag's digest and how it was found.
type resolution struct {
	desc ocispec.Descriptor
	// source is fresh (asked upstream now), cached (within the TTL) or stale (upstream down, last known).
	source string
	age    time.Duration
}

// tagKey names a tag's resolution in the KV. A tag names one manifest whatever the client accepts, so every tag is
// resolved with the full Accept list (manifest.AcceptTypes) and one entry serves all clients.
func tagKey(r route) string {
	return "tag/" + r.key() + ":" + r.ref
}

// resolveTag turns a tag into a digest: from the shared KV within the TTL, otherwise with one upstream HEAD however
// many requests ask at once; when the upstream is unreachable, from the last known mapping if stale-if-error allows.
func (p *Proxy) resolveTag(ctx context.Context, r route) (resolution, error) {
	key := tagKey(r)
	prev, havePrev := p.loadTag(ctx, key)
	now := p.now()
	if havePrev && now.Sub(prev.Resolved) < p.tagTTL {
		p.metrics.cache.WithLabelValues("tag", "hit").Inc()
		return resolution{desc: prev.descriptor(), source: "cached", age: now.Sub(prev.Resolved)}, nil
	}
	v, err, _ := p.tags.Do(key, func() (any, error) {
		// Detached: one caller hanging up must not fail the others sharing this lookup.
		ctx := context.WithoutCancel(ctx)
		// A flight that ended between our miss and this one has resolved it: look again before asking upstream.
		fresh := func() (tagEntry, bool) {
			e, ok := p.loadTag(ctx, key)
			return e, ok && p.now().Sub(e.Resolved) < p.tagTTL
		}
		if e, ok := fresh(); ok {
			return e, nil
		}
		// Another replica may be asking right now: wait for its answer rather than ask too.
		lease := p.fleetOnce(ctx, key, p.leaseWait, func() bool { _, ok := fresh(); return ok })
		if lease == nil {
			e, _ := fresh()
			return e, nil
		}
		defer lease.Release(ctx)
		desc, err := r.upstream.Registry.Resolve(ctx, r.repo, r.ref, manifest.AcceptTypes())
		if err != nil {
			return nil, err
		}
		e := tagEntry{Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size, Resolved: p.now()}
		p.storeTag(ctx, key, e)
		return e, nil
	})
	if err == nil {
		p.metrics.cache.WithLabelValues("tag", "miss").Inc()
		return resolution{desc: v.(tagEntry).descriptor(), source: "fresh"}, nil
	}
	if havePrev && p.staleIfError && errors.Is(err, upstream.ErrUnavailable) && now.Sub(prev.Resolved) < p.maxStale {
		p.metrics.cache.WithLabelValues("tag", "stale").Inc()
		p.log.Warn("upstream unavailable; serving last known tag resolution", "upstream", r.upstream.Name,
			"repository", r.repo, "tag", r.ref, "digest", prev.Digest, "age", now.Sub(prev.Resolved).Round(time.Second), "error", err)
		return resolution{desc: prev.descriptor(), source: "stale", age: now.Sub(prev.Resolved)}, nil
	}
	return resolution{}, err
}

func (e tagEntry) descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{Digest: e.Digest, MediaType: e.MediaType, Size: e.Size}
}

// loadTag reads a resolution. A broken KV is a miss: the proxy keeps working without shared state.
func (p *Proxy) loadTag(ctx context.Context, key string) (tagEntry, bool) {
	b, err := p.kv.Get(ctx, key)
	if err != nil {
		if !isNotFound(err) {
			p.log.Warn("shared cache read failed; treating as a miss", "key", key, "error", err)
		}
		return tagEntry{}, false
	}
	var e tagEntry
	if err := json.Unmarshal(b, &e); err != nil || e.Digest.Validate() != nil {
		p.log.Warn("ignoring a malformed tag entry in the shared cache", "key", key)
		return tagEntry{}, false
	}
	return e, true
}

func (p *Proxy) storeTag(ctx context.Context, key string, e tagEntry) {
	b, _ := json.Marshal(e)
	// Kept as long as it may serve stale-if-error; freshness is judged from Resolved.
	ttl := p.tagTTL
	if p.staleIfError && p.maxStale > ttl {
		ttl = p.maxStale
	}
	if err := p.kv.Set(ctx, key, b, ttl); err != nil {
		p.log.Warn("shared cache write failed", "key", key, "error", err)
	}
}
