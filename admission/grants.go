package admission

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/manifest"
)

// An admission that was not evaluated on its own facts (an index's child, an image's signature) rests on the
// decisions it came through: its anchors. An anchor is an evaluated manifest and the facts epoch it was decided
// under (or, for a break-glass admission, the allow-list entry). It holds while no deny-list entry names that
// digest, that digest's epoch is unchanged and its decision under that epoch, if still cached, is not a denial
// (or the allow entry is still in force): a deny, a report posted for the image, the removal of an allow entry,
// or a refresh that now denies it withdraws everything admitted through it at once, cached or not.
type anchor struct {
	Digest digest.Digest `json:"d"`
	Epoch  string        `json:"e,omitempty"`
	// Allow, when set, names the allow-list entry the admission came through instead of a decision: the anchor
	// holds while that entry is in force.
	Allow string `json:"allow,omitempty"`
}

// grant is one admitted manifest's permission for a blob or a child manifest: who granted it (By, the manifest
// that names the item), a line for logs (Via), and the anchors that must hold for it to count.
type grant struct {
	By      digest.Digest `json:"by"`
	Via     string        `json:"via"`
	Anchors []anchor      `json:"anchors"`
	// Tag is the cosign tag (sha256-<hex>.sig, .att, .sbom) a signature or attestation was admitted by, so that
	// deciding it again after a policy reload (PriorGrants) finds its image the same way; empty otherwise.
	Tag string `json:"tag,omitempty"`
}

// grantSet is what the KV holds for one item: the grants of the manifests that name it, newest first. A layer
// shared by several images is granted by each of them, so withdrawing one image does not strand the others.
type grantSet struct {
	Grants []grant `json:"grants"`
}

// maxGrantsPerItem bounds a grant set; the oldest grant goes first (its manifest re-grants when next pulled).
const maxGrantsPerItem = 8

// Grant kinds: blobs (config, layers, artifact blobs) and child manifests (an index's entries).
const (
	grantBlob  = "blob"
	grantChild = "child"
)

// anchorsHold reports whether every anchor still holds.
func (g *view) anchorsHold(ctx context.Context, upstream, repo string, anchors []anchor) bool {
	for _, a := range anchors {
		if !g.anchorHolds(ctx, upstream, repo, a) {
			return false
		}
	}
	return true
}

func (g *view) anchorHolds(ctx context.Context, upstream, repo string, a anchor) bool {
	if g.lists.match(ListDeny, upstream, repo, "", a.Digest) != nil {
		return false // denied since: nothing admitted through it is served
	}
	if a.Allow != "" {
		return g.lists.allowActive(a.Allow)
	}
	epoch, known := g.epoch(ctx, a.Digest)
	if !known {
		// Shared state is down: only what was decided afresh during the outage (under the unknown epoch) counts.
		return a.Epoch == unknownEpoch
	}
	if epoch != a.Epoch {
		return false
	}
	d, ok := g.load(ctx, decisionKey(g.ns, upstream, repo, a.Digest, epoch))
	return !ok || d.Allowed
}

// recordContents grants what an admitted manifest lets through, resting on anchors: its config and layers (or
// artifact blobs) as blobs and, for an index that was itself evaluated, its children as manifests. An artifact or
// a child never grants children. Grants are kept twice as long as an admission, so that a client that got the
// manifest just before the decision lapsed can still fetch its blobs.
func (g *view) recordContents(ctx context.Context, s Subject, c manifest.Contents, anchors []anchor, children bool) {
	gr := grant{By: s.Digest, Via: s.Image(), Anchors: anchors}
	if artifactTag.MatchString(s.Tag) {
		gr.Tag = s.Tag
	}
	for _, b := range c.Blobs() {
		g.addGrant(ctx, grantBlob, s.Upstream, s.Repository, b.Digest, gr)
	}
	if !children {
		return
	}
	for _, m := range c.Manifests {
		g.addGrant(ctx, grantChild, s.Upstream, s.Repository, m.Digest, gr)
	}
}

// ensureContents re-grants an admitted manifest's contents when its grants are gone (evicted, or pushed out of
// a shared layer's set). One read when they are there.
func (g *view) ensureContents(ctx context.Context, s Subject, c manifest.Contents, anchors []anchor, children bool) {
	kind, probe, ok := grantProbe(c, children)
	if !ok {
		return
	}
	set, _ := g.grants(ctx, kind, s.Upstream, s.Repository, probe)
	if slices.ContainsFunc(set.Grants, func(gr grant) bool { return gr.By == s.Digest && slices.Equal(gr.Anchors, anchors) }) {
		return
	}
	g.recordContents(ctx, s, c, anchors, children)
}

// addGrant puts gr first in the item's grant set, replacing an older grant by the same manifest.
func (g *view) addGrant(ctx context.Context, kind, upstream, repo string, item digest.Digest, gr grant) {
	set, _ := g.grants(ctx, kind, upstream, repo, item)
	set.Grants = slices.DeleteFunc(set.Grants, func(o grant) bool { return o.By == gr.By })
	set.Grants = append([]grant{gr}, set.Grants...)
	if len(set.Grants) > maxGrantsPerItem {
		set.Grants = set.Grants[:maxGrantsPerItem]
	}
	b, _ := json.Marshal(set)
	g.set(ctx, grantKey(kind, g.ns, upstream, repo, item), b, g.grantTTL())
}

// grants reads an item's grant set; a missing or unreadable set is empty, and err says which it was.
func (g *view) grants(ctx context.Context, kind, upstream, repo string, item digest.Digest) (grantSet, error) {
	return g.grantsIn(ctx, g.ns, kind, upstream, repo, item)
}

// grantsIn is grants under the policy ns (PriorGrants reads an earlier policy's).
func (g *Gate) grantsIn(ctx context.Context, ns, kind, upstream, repo string, item digest.Digest) (grantSet, error) {
	var set grantSet
	b, err := g.kv.Get(ctx, grantKey(kind, ns, upstream, repo, item))
	if err != nil {
		if isNotFound(err) {
			err = nil
		}
		return set, err
	}
	if json.Unmarshal(b, &set) != nil {
		return grantSet{}, nil
	}
	return set, nil
}

// granted returns the first grant of the item whose anchors all hold. The error is a KV failure other than
// absence: the caller then refuses (fail closed).
func (g *view) granted(ctx context.Context, kind, upstream, repo string, item digest.Digest) (grant, bool, error) {
	set, err := g.grants(ctx, kind, upstream, repo, item)
	if err != nil {
		return grant{}, false, err
	}
	for _, gr := range set.Grants {
		if g.anchorsHold(ctx, upstream, repo, gr.Anchors) {
			return gr, true, nil
		}
	}
	return grant{}, false, nil
}

func (g *Gate) grantTTL() time.Duration { return 2 * g.allowTTL }
