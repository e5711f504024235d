package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// pulled returns the images in the pull log, oldest first, after the writes under way.
func pulled(t *testing.T, g *Gate, j *memJournal) []string {
	t.Helper()
	_ = g.Close()
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []string
	for _, b := range j.recs[pullJournal] {
		var p PulledImage
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Repository+":"+p.Tag+"@"+p.Digest.Encoded()[:6])
	}
	return out
}

// The pull log records each image decided on its own for a pull, once an hour at most: admitted, denied or
// decided by a list, but not a child admitted through its index (which follows its index).
func TestPullLogRecordsOncePerImagePerHour(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	j := &memJournal{}
	lists := NewLists(newMemCollections(), &memBus{})
	f := newGateFixture(t, nil, WithPullLog(j), WithClock(clock.Now), WithLists(lists))
	ctx := context.Background()
	signed, unsigned := image(t, "v1", digest.FromString("a")), image(t, "v2", digest.FromString("b"))
	f.ev.signed[signed.Digest] = true
	child := image(t, "", digest.FromString("c"))
	idx := index(t, "multi", child)
	f.ev.signed[idx.Digest] = true
	listed := image(t, "v3", digest.FromString("d"))
	if _, err := lists.Add(ctx, ListDeny, "ghcr.io/acme/app:v3", "no", time.Time{}, "alice"); err != nil {
		t.Fatal(err)
	}
	short := func(s Subject) string { return s.Repository + ":" + s.Tag + "@" + s.Digest.Encoded()[:6] }
	for range 3 {
		for _, s := range []Subject{signed, unsigned, idx, child, listed} {
			f.admit(t, s)
		}
	}
	// Records are written in the background, in any order.
	want := []string{short(signed), short(unsigned), short(idx), short(listed)}
	slices.Sort(want)
	if got := pulled(t, f.g, j); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Fatalf("pull log %q, want %q", got, want)
	}
	clock.Add(59 * time.Minute)
	f.admit(t, signed)
	clock.Add(2 * time.Minute)
	f.admit(t, signed)
	want = append(want, short(signed))
	slices.Sort(want)
	if got := pulled(t, f.g, j); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Fatalf("an hour later: pull log %q, want %q", got, want)
	}
	recent, err := f.g.RecentPulls(ctx, clock.Now().Add(-30*time.Minute))
	if err != nil || len(recent) != 1 || recent[0].Digest != signed.Digest || recent[0].Tag != "v1" || recent[0].MediaType == "" {
		t.Errorf("pulled in the last half hour: %+v %v", recent, err)
	}
	if recent, _ := f.g.RecentPulls(ctx, time.Time{}); len(recent) != 4 {
		t.Errorf("distinct images ever: %d, want 4", len(recent))
	}
}

// failingJournal refuses every record.
type failingJournal struct{ memJournal }

func (*failingJournal) Append(context.Context, string, []byte) error { return cache.ErrUnavailable }

// A pull record the journal refused is counted and tried again on the next pull, and the pull is served anyway.
func TestPullLogFailureDoesNotStopPulls(t *testing.T) {
	m := NewMetrics(nil)
	f := newGateFixture(t, nil, WithPullLog(&failingJournal{}), WithMetrics(m))
	s := image(t, "v1", digest.FromString("a"))
	f.ev.signed[s.Digest] = true
	for range 2 {
		if v := f.admit(t, s); !v.Allowed {
			t.Fatal(v.Reason)
		}
		_ = f.g.Close()
	}
	if n := testutil.ToFloat64(m.pullLogDropped); n != 2 {
		t.Errorf("dropped %v records, want 2 (each pull tries again)", n)
	}
	if _, err := f.g.RecentPulls(context.Background(), time.Time{}); err != nil {
		t.Errorf("RecentPulls: %v", err)
	}
	g, _ := NewGate(f.g.Policy(), f.ev, f.kv)
	if _, err := g.RecentPulls(context.Background(), time.Time{}); !errors.Is(err, ErrNoPullLog) {
		t.Errorf("without a pull log: %v", err)
	}
}

// Forget makes a digest's cached decisions stale, and everything admitted through it; forgetting a repository
// forgets the digests pulled from it and no others.
func TestForget(t *testing.T) {
	j := &memJournal{}
	f := newGateFixture(t, nil, WithPullLog(j))
	ctx := context.Background()
	child := image(t, "", digest.FromString("child"))
	idx := index(t, "v1", child)
	img := image(t, "v2", digest.FromString("img"))
	other := image(t, "v3", digest.FromString("other"))
	other.Repository = "acme/other"
	for _, s := range []Subject{idx, img, other} {
		f.ev.signed[s.Digest] = true
		f.admit(t, s)
	}
	if v := f.admit(t, child); !v.Allowed {
		t.Fatal(v.Reason)
	}
	calls := func() [3]int { return [3]int{f.ev.n(idx.Digest), f.ev.n(img.Digest), f.ev.n(other.Digest)} }
	before := calls()

	if err := f.g.Forget(ctx, idx.Digest); err != nil {
		t.Fatal(err)
	}
	f.ev.signed[idx.Digest] = false // the index is judged again, now unsigned
	if ok, _ := f.g.AllowBlob(ctx, "ghcr.io", "acme/app", digest.FromString("child")); ok {
		t.Error("the child's layer is still served after its index was forgotten")
	}
	if v := f.admit(t, idx); v.Allowed {
		t.Error("a forgotten decision was served from the cache")
	}
	if v := f.admit(t, child); v.Allowed {
		t.Errorf("the child is still admitted through its forgotten index: %s", v.Reason)
	}
	_ = f.g.Close()
	got, err := f.g.ForgetRepository(ctx, "GHCR.io", "acme/app")
	if err != nil {
		t.Fatal(err)
	}
	// The child, admitted through its index before, was decided on its own facts just now, and so recorded.
	want := []digest.Digest{idx.Digest, img.Digest, child.Digest}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("forgot %v, want %v", got, want)
	}
	f.admit(t, img)
	f.admit(t, other)
	after := calls()
	if after[1] != before[1]+1 || after[2] != before[2] {
		t.Errorf("evidence gathered %v before, %v after: want img again, other not", before, after)
	}
	g, _ := NewGate(f.g.Policy(), f.ev, f.kv)
	if err := g.Forget(ctx, img.Digest); !errors.Is(err, ErrNoFacts) {
		t.Errorf("without a report store: %v", err)
	}
	if err := f.g.Forget(ctx, "sha256:nope"); err == nil {
		t.Error("a bad digest was forgotten")
	}
}

// twoPolicies are policies whose rules name them, so that a verdict says which policy made it: under a every image
// needs a release signature (and the test's are unsigned), under b none.
func twoPolicies(t *testing.T) (a, b *policy.Policy) {
	t.Helper()
	var err error
	doc := strings.Replace(grantsPolicy, "default:\n  signedBy:", "rules:\n  - name: policy-a\n    match: {repository: \"**\"}\n    signedBy:", 1)
	doc = strings.Replace(doc, "\n  scan:", "\n    scan:", 1)
	if a, err = policy.Parse([]byte(doc), "a.yaml", nil); err != nil {
		t.Fatal(err)
	}
	if b, err = policy.Parse([]byte("rules:\n  - name: policy-b\n    match: {repository: \"**\"}\n"), "b.yaml", nil); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// A policy swapped under concurrent pulls takes effect whole: no decision made under one policy is stored under
// the other's keys, and every verdict is one of the two policies' (run with -race).
func TestSetPolicyUnderConcurrentAdmits(t *testing.T) {
	a, b := twoPolicies(t)
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	ev := &signedEvidence{signed: map[digest.Digest]bool{}, calls: map[digest.Digest]int{}}
	g, err := NewGate(a, ev, kv)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 40
	subjects := make([]Subject, workers*each)
	for i := range subjects {
		subjects[i] = image(t, "v1", digest.FromString(fmt.Sprint("layer ", i)))
	}
	ctx := context.Background()
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				swapped <- n
				return
			default:
			}
			next := a
			if g.Policy() == a {
				next = b
			}
			if _, err := g.SetPolicy(next, ev); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for _, s := range subjects[w*each : (w+1)*each] {
				for range 2 {
					v, err := g.Admit(ctx, s)
					if err != nil {
						t.Error(err)
						return
					}
					if (v.Rule == "policy-a" && v.Allowed) || (v.Rule == "policy-b" && !v.Allowed) || (v.Rule != "policy-a" && v.Rule != "policy-b") {
						t.Errorf("verdict %+v is neither policy's", v)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if n := <-swapped; n < 10 {
		t.Logf("only %d swaps during the pulls", n)
	}
	for name, pol := range map[string]*policy.Policy{"policy-a": a, "policy-b": b} {
		for _, s := range subjects {
			raw, err := kv.Get(ctx, decisionKey(policyNS(pol), s.Upstream, s.Repository, s.Digest, "0"))
			if err != nil {
				continue
			}
			var cv cachedVerdict
			if err := json.Unmarshal(raw, &cv); err != nil || cv.Rule != name {
				t.Fatalf("under %s's keys: a verdict of %q (%v)", name, cv.Rule, err)
			}
		}
	}
	if _, err := g.SetPolicy(nil, ev); err == nil {
		t.Error("SetPolicy(nil) accepted")
	}
}

// manifestMap serves manifests by digest; an absent one is not found.
type manifestMap struct {
	mu    sync.Mutex
	m     map[digest.Digest]Subject
	block chan struct{} // when set, every fetch waits for it
}

func (mm *manifestMap) Manifest(ctx context.Context, upstream, repo string, d digest.Digest) ([]byte, string, error) {
	if mm.block != nil {
		select {
		case <-mm.block:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
	mm.mu.Lock()
	defer mm.mu.Unlock()
	s, ok := mm.m[d]
	if !ok {
		return nil, "", fmt.Errorf("manifest %s/%s@%s: not found", upstream, repo, d)
	}
	return s.Manifest, s.MediaType, nil
}

// candidatePolicy denies acme/app unless it has a clean CI report besides its signature, and admits everything
// else unsigned.
var candidatePolicy = strings.Replace(grantsPolicy, `default:
  signedBy: {anyOf: [release]}
  scan: {maxSeverity: medium, sources: [ci], onMissing: allow}
`, `rules:
  - name: strict
    match: {repository: acme/app}
    signedBy: {anyOf: [release]}
    scan: {maxSeverity: medium, sources: [ci]}
default: {}
`, 1)

// A preview replays what was pulled in the window under both policies and reports what would change, counts what
// would not and what could not be replayed, and changes nothing a pull sees.
func TestPreview(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	j := &memJournal{}
	lists := NewLists(newMemCollections(), &memBus{})
	mem := cache.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	kv := &writeCountingKV{KV: mem}
	f := newGateFixture(t, kv, WithPullLog(j), WithClock(clock.Now), WithLists(lists))
	ctx := context.Background()
	signed := image(t, "v1", digest.FromString("signed")) // allowed now, denied by the candidate (no report)
	unsigned := image(t, "v1", digest.FromString("unsigned"))
	unsigned.Repository = "acme/tool"                     // denied now, allowed by the candidate (no rule needs a signature there)
	same := image(t, "v2", digest.FromString("same"))     // unsigned in acme/app: denied by both
	gone := image(t, "v3", digest.FromString("gone"))     // no longer upstream
	old := image(t, "v4", digest.FromString("old"))       // pulled before the window
	listed := image(t, "v5", digest.FromString("listed")) // unsigned, allow-listed: a change that pulls will not see
	listed.Repository = "acme/tool"
	f.ev.signed[signed.Digest] = true
	f.admit(t, old)
	// Let its record reach the journal before the clock jumps: records are written in the background, and in real
	// time one lands within seconds of its pull, not a day after younger ones.
	_ = f.g.Close()
	clock.Add(25 * time.Hour)
	if _, err := lists.Add(ctx, ListAllow, "ghcr.io/acme/tool:v5", "incident 7", time.Time{}, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Subject{signed, unsigned, same, gone, listed} {
		f.admit(t, s)
	}
	_ = f.g.Close()
	mm := &manifestMap{m: map[digest.Digest]Subject{}}
	for _, s := range []Subject{signed, unsigned, same, old, listed} {
		mm.m[s.Digest] = s
	}
	cand, err := policy.Parse([]byte(candidatePolicy), "candidate.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	sets := kv.sets.Load()
	calls := f.ev.n(signed.Digest)
	p, err := f.g.Preview(ctx, Candidate{Policy: cand, Evidence: f.ev}, mm, PreviewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := kv.sets.Load() - sets; n != 0 {
		t.Errorf("the preview wrote %d keys", n)
	}
	if f.ev.n(signed.Digest) != calls+2 {
		t.Errorf("evidence gathered %d times for one image, want twice (once per policy)", f.ev.n(signed.Digest)-calls)
	}
	if p.Replayed != 5 || p.Unchanged != 1 || p.NewlyDenied != 1 || p.NewlyAllowed != 2 || p.Errors != 1 || p.Skipped != 0 {
		t.Errorf("counts: replayed %d, unchanged %d, newly denied %d, newly allowed %d, errors %d, skipped %d",
			p.Replayed, p.Unchanged, p.NewlyDenied, p.NewlyAllowed, p.Errors, p.Skipped)
	}
	if p.Policy != f.g.Policy().Hash() || p.Candidate != cand.Hash() || !p.Since.Equal(clock.Now().Add(-24*time.Hour)) {
		t.Errorf("preview of %s -> %s since %s", p.Policy, p.Candidate, p.Since)
	}
	if len(p.Changes) != 3 {
		t.Fatalf("changes: %+v", p.Changes)
	}
	first := p.Changes[0]
	if first.Image.Digest != signed.Digest || !first.NewlyDenied() || first.After.Rule != "strict" ||
		!strings.Contains(strings.Join(first.After.Failures, ";"), "scan: no scan report") || first.List != nil {
		t.Errorf("newly denied: %+v", first)
	}
	var allowed []digest.Digest
	for _, c := range p.Changes[1:] {
		allowed = append(allowed, c.Image.Digest)
		if c.NewlyDenied() || !strings.Contains(strings.Join(c.Before.Failures, ";"), "not signed by release") {
			t.Errorf("newly allowed: %+v", c)
		}
		if (c.Image.Digest == listed.Digest) != (c.List != nil && c.List.Kind == ListAllow) {
			t.Errorf("list entry of %s: %+v", c.Image.Image(), c.List)
		}
	}
	if !slices.Contains(allowed, unsigned.Digest) || !slices.Contains(allowed, listed.Digest) {
		t.Errorf("newly allowed %v", allowed)
	}
	if len(p.Failures) != 1 || p.Failures[0].Image.Digest != gone.Digest || !strings.Contains(p.Failures[0].Error, "not found") {
		t.Errorf("failures: %+v", p.Failures)
	}

	t.Run("at most MaxImages, the most recent", func(t *testing.T) {
		p, err := f.g.Preview(ctx, Candidate{Policy: cand, Evidence: f.ev}, mm, PreviewOptions{MaxImages: 2, Since: 48 * time.Hour})
		if err != nil || p.Replayed != 2 || p.Skipped != 4 {
			t.Errorf("replayed %d, skipped %d (%v)", p.Replayed, p.Skipped, err)
		}
	})
	t.Run("one at a time", func(t *testing.T) {
		blocked := &manifestMap{m: mm.m, block: make(chan struct{})}
		done := make(chan error)
		go func() {
			_, err := f.g.Preview(ctx, Candidate{Policy: cand, Evidence: f.ev}, blocked, PreviewOptions{})
			done <- err
		}()
		deadline := time.Now().Add(5 * time.Second)
		for !f.g.preview.Load() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if _, err := f.g.Preview(ctx, Candidate{Policy: cand, Evidence: f.ev}, mm, PreviewOptions{}); !errors.Is(err, ErrPreviewRunning) {
			t.Errorf("a second preview at once: %v", err)
		}
		close(blocked.block)
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	t.Run("an image that takes too long is a failure", func(t *testing.T) {
		slow := &manifestMap{m: mm.m, block: make(chan struct{})}
		p, err := f.g.Preview(ctx, Candidate{Policy: cand, Evidence: f.ev}, slow, PreviewOptions{ImageTimeout: 10 * time.Millisecond})
		if err != nil || p.Errors != 5 || !strings.Contains(p.Failures[0].Error, "deadline exceeded") {
			t.Errorf("errors %d: %+v (%v)", p.Errors, p.Failures, err)
		}
	})
}
