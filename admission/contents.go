package admission

import (
	"bytes"
	"context"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/manifest"
)

// parsedMaxBytes bounds the manifest bytes the gate keeps parsed: 8 MiB, a few thousand images.
const parsedMaxBytes = 8 << 20

// parsedManifests remembers manifest.Parse of the manifests the gate admitted recently, by digest, so that a cached
// decision (the warm pull path) does not parse the manifest again to re-check its grants. An entry is used only
// when the bytes are the very ones it was parsed from, so a caller's Subject whose bytes do not match its digest
// never gets another manifest's contents.
type parsedManifests struct {
	mu    sync.Mutex
	size  int64
	items map[digest.Digest]parsedManifest
}

type parsedManifest struct {
	raw []byte
	c   manifest.Contents
}

// parse returns manifest.Parse(s.Manifest), from memory when it was parsed before. Callers must not modify the
// Contents' slices.
func (p *parsedManifests) parse(s Subject) (manifest.Contents, error) {
	p.mu.Lock()
	e, ok := p.items[s.Digest]
	p.mu.Unlock()
	if ok && bytes.Equal(e.raw, s.Manifest) {
		return e.c, nil
	}
	c, err := manifest.Parse(s.Manifest)
	if err != nil || len(s.Manifest) > parsedMaxBytes/64 {
		return c, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.items == nil {
		p.items = map[digest.Digest]parsedManifest{}
	}
	if old, ok := p.items[s.Digest]; ok {
		p.size -= int64(len(old.raw))
	}
	for d, old := range p.items { // over budget: drop some (map order is random enough for a cache)
		if p.size+int64(len(s.Manifest)) <= parsedMaxBytes {
			break
		}
		delete(p.items, d)
		p.size -= int64(len(old.raw))
	}
	p.items[s.Digest] = parsedManifest{raw: bytes.Clone(s.Manifest), c: c}
	p.size += int64(len(s.Manifest))
	return c, nil
}

// grantProbe is the item whose grant set ensureContents reads to tell whether a manifest's grants are in place:
// its first blob or, for an index that grants children, its first child.
func grantProbe(c manifest.Contents, children bool) (kind string, item digest.Digest, ok bool) {
	switch blobs := c.Blobs(); {
	case len(blobs) > 0:
		return grantBlob, blobs[0].Digest, true
	case children && len(c.Manifests) > 0:
		return grantChild, c.Manifests[0].Digest, true
	}
	return "", "", false
}

// maxPrefetchBlobs bounds the blob grants one prefetch reads: images rarely have more layers.
const maxPrefetchBlobs = 64

// prefetch fills the local tier of a tiered KV (cache.Prefetcher) with what a cached Admit of s reads (the facts
// epoch, the decision under it, its blobs' grants) in one round trip, so that a decision another replica made costs
// this one a single round trip and a decision found locally none. It reads the epoch's local copy to key the
// decision; when there is none it fetches the epoch and guesses "0" (no report posted), the common case.
func (g *view) prefetch(ctx context.Context, s Subject, c manifest.Contents, parsed bool) {
	pf, ok := g.kv.(cache.Prefetcher)
	if !ok {
		return
	}
	epoch := "0"
	var keys []string
	if g.reports != nil {
		switch v, hit, err := pf.Peek(ctx, epochKey(s.Digest)); {
		case !hit:
			keys = append(keys, epochKey(s.Digest))
		case err == nil:
			epoch = string(v)
		}
	}
	keys = append(keys, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch))
	if parsed {
		// The grants of its blobs too: the client asks for them next (AllowBlob), on this replica as a rule.
		for i, b := range c.Blobs() {
			if i == maxPrefetchBlobs {
				break
			}
			keys = append(keys, grantKey(grantBlob, g.ns, s.Upstream, s.Repository, b.Digest))
		}
		if kind, item, ok := grantProbe(c, true); ok && kind == grantChild {
			keys = append(keys, grantKey(kind, g.ns, s.Upstream, s.Repository, item))
		}
	}
	pf.Prefetch(ctx, keys...)
}
