package admission

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

// Candidate is a policy under consideration, compiled, with the evidence gatherer built for its trust roots: what
// a preview evaluates. It is never in force.
type Candidate struct {
	Policy   *policy.Policy
	Evidence Evidence
}

// Manifests fetches a manifest by digest from a configured upstream, verified against the digest: the upstream
// clients, as `portcullis check` uses them.
type Manifests interface {
	Manifest(ctx context.Context, upstream, repo string, dgst digest.Digest) (body []byte, mediaType string, err error)
}

// PreviewOptions tune a preview; zero fields take their defaults.
type PreviewOptions struct {
	// Since is how far back the pulls replayed go. Default 24h.
	Since time.Duration
	// Concurrency is how many images are replayed at once (each is fetched and evaluated twice). Default 8.
	Concurrency int
	// ImageTimeout bounds one image's replay: the manifest fetch and both evaluations. Default 30s.
	ImageTimeout time.Duration
	// MaxImages is how many images are replayed at most, the most recently pulled first. Default 1000; at most
	// MaxRecentPulls.
	MaxImages int
}

// Preview is what a candidate policy would change for the images pulled in a recent window: each replayed under
// the policy in force and under the candidate, on evidence gathered now.
type Preview struct {
	// Policy and Candidate are the two policies' hashes.
	Policy, Candidate string
	// Since is the start of the window.
	Since time.Time
	// Replayed counts the distinct images replayed; Skipped those pulled in the window but not replayed (past
	// MaxImages, the least recently pulled).
	Replayed, Skipped int
	// Unchanged, NewlyDenied, NewlyAllowed and Errors count the replayed images by outcome: the same verdict under
	// both, allowed now and denied under the candidate, the reverse, and not replayed (see Failures).
	Unchanged, NewlyDenied, NewlyAllowed, Errors int
	// Changes are the images whose verdict would change, the newly denied first, each group by image.
	Changes []PreviewChange
	// Failures are the images that could not be replayed, and why.
	Failures []PreviewFailure
}

// PreviewChange is one image whose verdict a candidate would change.
type PreviewChange struct {
	Image PulledImage
	// Before is its rule's decision under the policy in force, After under the candidate; Checks and Failures say
	// why under each.
	Before, After policy.Decision
	// List is the list entry that decides the image before any policy, if one does: pulls of it do not change
	// while the entry stands.
	List *ListEntry
}

// NewlyDenied reports whether the candidate would deny what the policy in force allows.
func (c PreviewChange) NewlyDenied() bool { return c.Before.Allowed && !c.After.Allowed }

// PreviewFailure is an image a preview could not replay.
type PreviewFailure struct {
	Image PulledImage
	Error string
}

// ErrPreviewRunning means another preview is running on this replica; one at a time, so that previews cannot
// crowd out the upstream the pulls need.
var ErrPreviewRunning = errors.New("a policy preview is already running on this replica; try again when it ends")

// Preview replays the distinct images pulled within opts.Since (the pull log, WithPullLog) under the policy in
// force and under cand, and says which would change from allowed to denied and back, with the decisions under
// both. Each image's manifest is fetched by digest through ms (an image gone from the upstream is a failure), and
// both evaluations gather evidence now through the code a pull uses, without asking a scanner and storing nothing:
// the pulls' decisions, grants and caches are untouched. An image pulled by tag under a rule whose trust data decides
// tags (Docker Content Trust) is denied when that trust data does not sign the tag, as its pull would be. The error means no preview ran: ErrNoPullLog,
// ErrPreviewRunning, the pull log unreadable, or ctx ended.
func (g *Gate) Preview(ctx context.Context, cand Candidate, ms Manifests, opts PreviewOptions) (Preview, error) {
	if cand.Policy == nil || cand.Evidence == nil || ms == nil {
		return Preview{}, errors.New("preview: a candidate policy, its evidence and a manifest source are required")
	}
	if g.pulls == nil {
		return Preview{}, ErrNoPullLog
	}
	if !g.preview.CompareAndSwap(false, true) {
		return Preview{}, ErrPreviewRunning
	}
	defer g.preview.Store(false)
	opts = opts.withDefaults()
	active, candidate := g.view(), g.newView(cand.Policy, cand.Evidence)
	res := Preview{Policy: active.policy.Hash(), Candidate: candidate.policy.Hash(), Since: g.now().Add(-opts.Since).UTC()}
	pulls, err := g.RecentPulls(ctx, res.Since)
	if err != nil {
		return Preview{}, fmt.Errorf("pull log: %w", err)
	}
	if len(pulls) > opts.MaxImages {
		res.Skipped, pulls = len(pulls)-opts.MaxImages, pulls[:opts.MaxImages]
	}
	type outcome struct {
		before, after policy.Decision
		err           error
	}
	outcomes := make([]outcome, len(pulls))
	slots := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	for i, p := range pulls {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			ictx, cancel := context.WithTimeout(ctx, opts.ImageTimeout)
			defer cancel()
			o := &outcomes[i]
			s := p.Subject()
			if s.Manifest, s.MediaType, o.err = ms.Manifest(ictx, p.Upstream, p.Repository, p.Digest); o.err != nil {
				o.err = fmt.Errorf("fetch its manifest: %w", o.err)
				return
			}
			if o.before, o.err = active.evaluatePulled(ictx, s); o.err != nil {
				o.err = fmt.Errorf("under the policy in force: %w", o.err)
				return
			}
			if o.after, o.err = candidate.evaluatePulled(ictx, s); o.err != nil {
				o.err = fmt.Errorf("under the candidate: %w", o.err)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Preview{}, err
	}
	res.Replayed = len(pulls)
	for i, p := range pulls {
		o := outcomes[i]
		switch {
		case o.err != nil:
			res.Errors++
			res.Failures = append(res.Failures, PreviewFailure{Image: p, Error: o.err.Error()})
		case o.before.Allowed == o.after.Allowed:
			res.Unchanged++
		default:
			c := PreviewChange{Image: p, Before: o.before, After: o.after, List: g.listEntry(p.Subject())}
			if c.NewlyDenied() {
				res.NewlyDenied++
			} else {
				res.NewlyAllowed++
			}
			res.Changes = append(res.Changes, c)
		}
	}
	slices.SortStableFunc(res.Changes, func(a, b PreviewChange) int {
		if a.NewlyDenied() != b.NewlyDenied() {
			if a.NewlyDenied() {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Image.Image(), b.Image.Image())
	})
	return res, nil
}

func (o PreviewOptions) withDefaults() PreviewOptions {
	if o.Since <= 0 {
		o.Since = 24 * time.Hour
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.ImageTimeout <= 0 {
		o.ImageTimeout = 30 * time.Second
	}
	if o.MaxImages <= 0 {
		o.MaxImages = 1000
	}
	o.MaxImages = min(o.MaxImages, MaxRecentPulls)
	return o
}
