package admission

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// PulledImage is one image the gate decided on its own for a pull, as the pull log keeps it: what a policy preview
// replays and what forgetting a repository's decisions forgets. A child admitted through its index and an artifact
// admitted through its image are not recorded: they follow the image they came through.
type PulledImage struct {
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	// Tag is the tag the pull asked for (the first in the hour the record stands for); empty for a pull by digest.
	Tag       string        `json:"tag,omitempty"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType,omitempty"`
	// Time is when the pull was decided.
	Time time.Time `json:"time"`
}

// Image names the pulled image: upstream/repository@digest.
func (p PulledImage) Image() string { return imageRef(p.Upstream, p.Repository, p.Digest) }

// Subject is the pulled image as the gate decides on it, without its manifest's bytes.
func (p PulledImage) Subject() Subject {
	return Subject{Upstream: p.Upstream, Repository: p.Repository, Tag: p.Tag, Digest: p.Digest, MediaType: p.MediaType}
}

// Limits of the pull log.
const (
	// pullJournal is the Journal name of the pull log.
	pullJournal = "pulls"
	// MaxRecentPulls is how many of the newest pull records RecentPulls reads: the window a preview replays and a
	// repository's decisions are forgotten over is at most this many records long, whatever the journal keeps.
	MaxRecentPulls = 10000
	// pullEvery is how often one image is recorded at most, per replica.
	pullEvery = time.Hour
	// pullWrites is how many pull records may be on their way to the journal at once; past it a record is
	// dropped (and counted), so that a slow journal never holds up a pull.
	pullWrites = 64
	// pullWriteTimeout bounds one record's write.
	pullWriteTimeout = 5 * time.Second
	// pullSkew is how far out of time order records may be (replicas' clocks, writes in the background).
	pullSkew = 5 * time.Minute
)

// ErrNoPullLog means the gate keeps no pull log (WithPullLog), so it cannot say what was pulled.
var ErrNoPullLog = errors.New("no pull log is kept (the gate has no journal for it)")

// pullLog writes pull records to the journal in the background, once per image per hour.
type pullLog struct {
	journal Journal
	slots   chan struct{}
	wg      sync.WaitGroup

	mu   sync.Mutex
	seen map[string]time.Time // image -> when last recorded
}

// WithPullLog records every image the gate decides on its own for a pull (upstream, repository, tag, digest, media
// type, time) in the journal j under the name "pulls", at most once per image per hour on each replica, without
// holding up the pull: the write happens in the background, and is dropped (and counted) when 64 are already under
// way. Policy previews replay these images; forgetting a repository's decisions forgets these digests. Default: no
// pull log (preview and forgetting by repository are then unavailable).
func WithPullLog(j Journal) Option {
	return func(g *Gate) error {
		if j == nil {
			return errors.New("gate: the pull log needs a journal")
		}
		g.pulls = &pullLog{journal: j, slots: make(chan struct{}, pullWrites), seen: map[string]time.Time{}}
		return nil
	}
}

// recordPull records s in the pull log unless it was recorded within the hour.
func (g *Gate) recordPull(ctx context.Context, s Subject) {
	p := g.pulls
	if p == nil {
		return
	}
	now := g.now()
	key := s.Image()
	if !p.first(key, now) {
		return
	}
	select {
	case p.slots <- struct{}{}:
	default:
		p.forget(key)
		g.metrics.pullLogDropped.Inc()
		return
	}
	rec, _ := json.Marshal(PulledImage{Upstream: s.Upstream, Repository: s.Repository, Tag: s.Tag, Digest: s.Digest, MediaType: s.MediaType, Time: now.UTC()})
	p.wg.Go(func() {
		defer func() { <-p.slots }()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullWriteTimeout)
		defer cancel()
		if err := p.journal.Append(ctx, pullJournal, rec); err != nil {
			p.forget(key) // the next pull tries again
			g.metrics.pullLogDropped.Inc()
			g.log.Warn("pull log write failed; previews and forgetting by repository will not see this pull", "image", key, "error", err)
		}
	})
}

// first reports whether key was not recorded within pullEvery, and marks it recorded at now.
func (p *pullLog) first(key string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.seen[key]; ok && now.Sub(last) < pullEvery {
		return false
	}
	if len(p.seen) >= 2*MaxRecentPulls {
		for k, t := range p.seen {
			if now.Sub(t) >= pullEvery {
				delete(p.seen, k)
			}
		}
		if len(p.seen) >= 2*MaxRecentPulls {
			clear(p.seen) // more images than that in an hour: record some twice rather than grow without bound
		}
	}
	p.seen[key] = now
	return true
}

func (p *pullLog) forget(key string) {
	p.mu.Lock()
	delete(p.seen, key)
	p.mu.Unlock()
}

// RecentPulls returns the distinct images (by upstream, repository and digest) pulled since the given time, newest
// first, each with its latest record, read from the newest MaxRecentPulls records of the pull log. Records that do
// not parse are skipped.
func (g *Gate) RecentPulls(ctx context.Context, since time.Time) ([]PulledImage, error) {
	if g.pulls == nil {
		return nil, ErrNoPullLog
	}
	var out []PulledImage
	seen := map[string]bool{}
	read := 0
	err := g.pulls.journal.Range(ctx, pullJournal, func(b []byte) bool {
		read++
		var p PulledImage
		if json.Unmarshal(b, &p) != nil || p.Digest.Validate() != nil || p.Upstream == "" || p.Repository == "" {
			return read < MaxRecentPulls
		}
		if p.Time.Before(since) {
			// Newest first, but replicas append in their own time: only well past the window is the rest older.
			return p.Time.After(since.Add(-pullSkew)) && read < MaxRecentPulls
		}
		if k := p.Image(); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
		return read < MaxRecentPulls
	})
	return out, err
}

// Close waits for the pull records on their way to the journal. The gate keeps deciding; call it when the process
// stops.
func (g *Gate) Close() error {
	if g.pulls != nil {
		g.pulls.wg.Wait()
	}
	return nil
}
