package admission

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// countingEvidence returns a fixed report and counts how often it was asked.
type countingEvidence struct {
	mu      sync.Mutex
	calls   int
	scanned time.Time
}

func (c *countingEvidence) Gather(context.Context, Subject, policy.Requirements, GatherOptions) (policy.Facts, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return policy.Facts{Scan: &policy.ScanReport{Source: policy.SourceCI, Scanner: "Trivy", ScanTime: c.scanned}}, nil
}

func (c *countingEvidence) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Add(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newScanGate(t *testing.T, clock *fakeClock, ev Evidence) *Gate {
	t.Helper()
	pol, err := policy.Parse([]byte("rules:\n  - name: scanned\n    match: {repository: \"app/**\"}\n    scan: {maxSeverity: medium, maxAge: 7d, sources: [ci]}\n"), "p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	kv := cache.NewMemory(cache.WithClock(clock.Now))
	t.Cleanup(func() { _ = kv.Close() })
	g, err := NewGate(pol, ev, kv, WithClock(clock.Now), WithDecisionTTL(time.Hour, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

var testSubject = Subject{Upstream: "ghcr.io", Repository: "app/web", Digest: digest.FromString("m"), Manifest: []byte(`{}`)}

func TestRefresherDecidesAgainBeforeLapse(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	ev := &countingEvidence{scanned: clock.Now().Add(-time.Hour)}
	g := newScanGate(t, clock, ev)
	ctx := context.Background()

	if d, err := g.Admit(ctx, testSubject); err != nil || !d.Allowed {
		t.Fatalf("admit: %+v %v", d, err)
	}
	if n := g.Refresh(ctx, 10*time.Minute); n != 0 || ev.n() != 1 {
		t.Fatalf("fresh decision refreshed: %d refreshed, %d gathers", n, ev.n())
	}
	clock.Add(55 * time.Minute) // 5 minutes left on the decision: within the margin
	ev.scanned = clock.Now()
	if n := g.Refresh(ctx, 10*time.Minute); n != 1 || ev.n() != 2 {
		t.Fatalf("lapsing decision: %d refreshed, %d gathers; want 1 and 2", n, ev.n())
	}
	clock.Add(10 * time.Minute) // past the first decision's expiry, within the refreshed one
	if d, err := g.Admit(ctx, testSubject); err != nil || !d.Allowed || ev.n() != 2 {
		t.Fatalf("pull after refresh waited for a new decision: %d gathers, %+v %v", ev.n(), d, err)
	}
	clock.Add(2 * time.Hour) // not pulled for over an hour: no longer hot
	if n := g.Refresh(ctx, 10*time.Minute); n != 0 {
		t.Errorf("cold image refreshed: %d", n)
	}
}

func TestDecisionNeverOutlivesItsReport(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	// The report is 7 days minus 10 minutes old: the decision may live 10 minutes, not the 1h allow TTL.
	ev := &countingEvidence{scanned: clock.Now().Add(-7*24*time.Hour + 10*time.Minute)}
	g := newScanGate(t, clock, ev)
	ctx := context.Background()
	if d, _ := g.Admit(ctx, testSubject); !d.Allowed {
		t.Fatalf("denied: %s", d.Reason)
	}
	clock.Add(9 * time.Minute)
	g.Admit(ctx, testSubject)
	if ev.n() != 1 {
		t.Fatalf("decision did not last while the report was fresh: %d gathers", ev.n())
	}
	clock.Add(2 * time.Minute) // the report is now past maxAge, and the decision must be gone with it
	d, _ := g.Admit(ctx, testSubject)
	if ev.n() != 2 || d.Allowed {
		t.Errorf("after the report aged out: %d gathers, allowed=%v (%s)", ev.n(), d.Allowed, d.Reason)
	}
}

// failingEvidence cannot find anything out.
type failingEvidence struct{}

func (failingEvidence) Gather(context.Context, Subject, policy.Requirements, GatherOptions) (policy.Facts, error) {
	return policy.Facts{}, errors.New("registry down")
}

// TestVerdictCarriesItsEvaluation: a verdict Admit made by evaluating now carries the decision and the facts
// behind it (what check prints); a cached verdict carries none, so the evaluation is never stored.
func TestVerdictCarriesItsEvaluation(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	tests := []struct {
		name        string
		ev          Evidence
		wantAllowed bool
		wantScan    bool
		wantErr     string
	}{
		{"evaluated", &countingEvidence{scanned: clock.Now().Add(-time.Hour)}, true, true, ""},
		{"could not gather: onError denies", failingEvidence{}, false, false, "registry down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newScanGate(t, clock, tc.ev)
			ctx := context.Background()
			d, err := g.Admit(ctx, testSubject)
			if err != nil {
				t.Fatal(err)
			}
			e := d.Evaluation
			if e == nil {
				t.Fatalf("a verdict made now carries no evaluation: %+v", d)
			}
			if d.Allowed != tc.wantAllowed || e.Decision.Allowed != d.Allowed || e.Decision.Message != d.Reason || e.Decision.Rule != "scanned" {
				t.Errorf("verdict %+v, evaluation %+v", d, e.Decision)
			}
			if (e.Facts.Scan != nil) != tc.wantScan {
				t.Errorf("facts scan report %+v, want one: %v", e.Facts.Scan, tc.wantScan)
			}
			if (e.Err == nil) != (tc.wantErr == "") || (e.Err != nil && !strings.Contains(e.Err.Error(), tc.wantErr)) {
				t.Errorf("evaluation error %v, want %q", e.Err, tc.wantErr)
			}
			again, err := g.Admit(ctx, testSubject)
			if err != nil || again.Allowed != d.Allowed || again.Evaluation != nil {
				t.Errorf("cached verdict %+v (%v): want the same answer and no evaluation", again, err)
			}
		})
	}
}
