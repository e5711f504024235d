package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// blockingEvidence holds every Gather until released, and records how many ran at once.
type blockingEvidence struct {
	release chan struct{}
	running atomic.Int32
	peak    atomic.Int32
	calls   atomic.Int32
}

func (b *blockingEvidence) Gather(ctx context.Context, s Subject, req policy.Requirements, _ GatherOptions) (policy.Facts, error) {
	b.calls.Add(1)
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		return policy.Facts{}, ctx.Err()
	}
	return policy.Facts{Signatures: map[string]policy.SignatureResult{"release": {Verified: true}}}, nil
}

func newBlockingGate(t *testing.T, ev Evidence, opts ...Option) *Gate {
	t.Helper()
	pol, err := policy.Parse([]byte(grantsPolicy), "p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	g, err := NewGate(pol, ev, kv, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Concurrent pulls of one digest share one evaluation.
func TestConcurrentAdmitsOfOneDigestShareOneEvaluation(t *testing.T) {
	ev := &blockingEvidence{release: make(chan struct{})}
	g := newBlockingGate(t, ev)
	s := image(t, "v1", digest.FromString("layer"))
	var wg sync.WaitGroup
	verdicts := make([]Verdict, 50)
	for i := range verdicts {
		wg.Go(func() {
			v, err := g.Admit(context.Background(), s)
			if err != nil {
				t.Error(err)
			}
			verdicts[i] = v
		})
	}
	for ev.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the others join the flight
	close(ev.release)
	wg.Wait()
	if n := ev.calls.Load(); n != 1 {
		t.Errorf("%d evaluations for 50 concurrent pulls of one digest, want 1", n)
	}
	for _, v := range verdicts {
		if !v.Allowed {
			t.Fatalf("verdict %+v", v)
		}
	}
}

// Cold decisions of distinct digests never run more than the cap at once; with no queue wait the excess is refused
// with ErrOverloaded at once and nothing is cached for it, so its retry is evaluated.
func TestColdDecisionsAreCapped(t *testing.T) {
	const limit = 3
	ev := &blockingEvidence{release: make(chan struct{})}
	g := newBlockingGate(t, ev, WithMaxConcurrentDecisions(limit, 0))
	var wg sync.WaitGroup
	var overloaded atomic.Int32
	subjects := make([]Subject, 10)
	for i := range subjects {
		subjects[i] = image(t, fmt.Sprintf("v%d", i), digest.FromString(fmt.Sprint("layer", i)))
	}
	for _, s := range subjects {
		wg.Go(func() {
			if _, err := g.Admit(context.Background(), s); errors.Is(err, ErrOverloaded) {
				overloaded.Add(1)
			} else if err != nil {
				t.Error(err)
			}
		})
	}
	for ev.running.Load() < limit {
		time.Sleep(time.Millisecond)
	}
	for overloaded.Load() < int32(len(subjects)-limit) {
		time.Sleep(time.Millisecond)
	}
	close(ev.release)
	wg.Wait()
	if p := ev.peak.Load(); p != limit {
		t.Errorf("peak evaluations at once %d, want the cap %d", p, limit)
	}
	if n := overloaded.Load(); n != int32(len(subjects)-limit) {
		t.Errorf("%d refused, want %d", n, len(subjects)-limit)
	}
	// Nothing was cached for the refused ones: asked again, each is evaluated.
	before := ev.calls.Load()
	for _, s := range subjects {
		if v, err := g.Admit(context.Background(), s); err != nil || !v.Allowed {
			t.Fatalf("retry: %+v %v", v, err)
		}
	}
	if got := ev.calls.Load() - before; got != int32(len(subjects)-limit) {
		t.Errorf("retries evaluated %d digests, want the %d refused ones", got, len(subjects)-limit)
	}
}

// A decision has a deadline: evidence that never comes is an error, which the rule's onError (deny) decides.
func TestDecisionDeadline(t *testing.T) {
	ev := &blockingEvidence{release: make(chan struct{})} // never released
	g := newBlockingGate(t, ev, WithDecisionTimeout(50*time.Millisecond))
	start := time.Now()
	v, err := g.Admit(context.Background(), image(t, "v1", digest.FromString("layer")))
	if err != nil {
		t.Fatal(err)
	}
	if v.Allowed || time.Since(start) > 5*time.Second {
		t.Fatalf("verdict %+v after %s, want a denial within the deadline", v, time.Since(start))
	}
	if want := "could not decide"; !strings.Contains(v.Reason, want) {
		t.Errorf("reason %q does not say %q", v.Reason, want)
	}
}

// The verdict is cached under exactly (policy, upstream, repository, digest, epoch): another repository, another
// policy or a moved epoch does not see it.
func TestVerdictCacheKey(t *testing.T) {
	f := newGateFixture(t, nil)
	img := image(t, "v1", digest.FromString("layer"))
	f.ev.signed[img.Digest] = true
	f.admit(t, img)
	ctx := context.Background()
	ns := policyNS(f.g.Policy())
	b, err := f.kv.Get(ctx, decisionKey(ns, img.Upstream, img.Repository, img.Digest, "0"))
	if err != nil {
		t.Fatalf("no verdict under the documented key: %v", err)
	}
	var cv cachedVerdict
	if err := json.Unmarshal(b, &cv); err != nil || !cv.Allowed {
		t.Fatalf("cached verdict %s: %v", b, err)
	}
	for name, key := range map[string]string{
		"another repository": decisionKey(ns, img.Upstream, "acme/other", img.Digest, "0"),
		"another upstream":   decisionKey(ns, "docker.io", img.Repository, img.Digest, "0"),
		"another epoch":      decisionKey(ns, img.Upstream, img.Repository, img.Digest, "1"),
	} {
		if _, err := f.kv.Get(ctx, key); err == nil {
			t.Errorf("%s: a verdict is stored under %s", name, key)
		}
	}
	// The same repository under another policy evaluates again.
	pol, _ := policy.Parse([]byte(grantsPolicy+"  mode: warn\n"), "p2.yaml", nil)
	if policyNS(pol) == ns {
		t.Fatal("two policies share a key namespace")
	}
	g2, err := NewGate(pol, f.ev, f.kv, WithReports(f.reports))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g2.Admit(ctx, img); err != nil {
		t.Fatal(err)
	}
	if n := f.ev.n(img.Digest); n != 2 {
		t.Errorf("%d evaluations: the new policy reused the old policy's verdict", n)
	}
	// A report moves the epoch: the next Admit evaluates again and stores under the new epoch.
	f.report(t, img.Digest, "low")
	epoch, _ := f.reports.Epoch(ctx, img.Digest)
	f.admit(t, img)
	if n := f.ev.n(img.Digest); n != 3 {
		t.Errorf("%d evaluations after a report, want 3", n)
	}
	if _, err := f.kv.Get(ctx, decisionKey(ns, img.Upstream, img.Repository, img.Digest, epoch)); err != nil {
		t.Errorf("no verdict under the new epoch %s: %v", epoch, err)
	}
	if _, err := f.kv.Get(ctx, grantKey(grantBlob, ns, img.Upstream, img.Repository, digest.FromString("layer"))); err != nil {
		t.Errorf("no blob grant under the documented key: %v", err)
	}
}
