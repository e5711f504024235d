package admission

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// ErrNoFacts means the gate keeps no facts epochs (WithReports), so it cannot forget decisions.
var ErrNoFacts = errors.New("the gate keeps no facts epochs (no report store), so it cannot forget decisions")

// Forget makes every decision cached about dgst stale at once, on every replica and under every policy, in every
// repository: it moves the digest's facts epoch, which is part of every decision key (keys.go), and every grant
// resting on the digest (its blobs, its children, its artifacts) holds only while the epoch it was made under
// stands. The next pull of the digest, or of anything admitted through it, decides afresh. Decisions made while
// the shared state was unreadable (keyed by the unknown epoch) are never read once it is readable again.
func (g *Gate) Forget(ctx context.Context, dgst digest.Digest) error {
	if g.reports == nil {
		return ErrNoFacts
	}
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", dgst, err)
	}
	return g.reports.bump(ctx, dgst)
}

// ForgetRepository forgets (Forget) every digest of upstream/repo in the pull log's newest MaxRecentPulls records,
// and returns them. A digest decided but not recorded (the log dropped it, or it fell out of the window) keeps its
// decisions until they lapse (an hour for an admission, a minute for a denial by default). On an error the digests
// forgotten so far are returned with it.
func (g *Gate) ForgetRepository(ctx context.Context, upstream, repo string) ([]digest.Digest, error) {
	if g.reports == nil {
		return nil, ErrNoFacts
	}
	pulls, err := g.RecentPulls(ctx, time.Time{})
	if err != nil {
		return nil, err
	}
	var done []digest.Digest
	seen := map[digest.Digest]bool{}
	for _, p := range pulls {
		if !strings.EqualFold(p.Upstream, upstream) || p.Repository != repo || seen[p.Digest] {
			continue
		}
		seen[p.Digest] = true
		if err := g.reports.bump(ctx, p.Digest); err != nil {
			return done, fmt.Errorf("forget %s: %w", p.Image(), err)
		}
		done = append(done, p.Digest)
	}
	return done, nil
}
