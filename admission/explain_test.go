package admission

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// writeCountingKV counts the writes to a KV.
type writeCountingKV struct {
	cache.KV
	sets atomic.Int32
}

func (k *writeCountingKV) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	k.sets.Add(1)
	return k.KV.Set(ctx, key, val, ttl)
}

// explainFixture is a gate with lists, an audit log, a pull log and metrics, each of which Explain must leave alone.
type explainFixture struct {
	*gateFixture
	kv    *writeCountingKV
	lists *Lists
	audit *memJournal
	pulls *memJournal
	reg   *prometheus.Registry
}

func newExplainFixture(t *testing.T) *explainFixture {
	t.Helper()
	mem := cache.NewMemory()
	t.Cleanup(func() { _ = mem.Close() })
	x := &explainFixture{kv: &writeCountingKV{KV: mem}, lists: NewLists(newMemCollections(), &memBus{}), audit: &memJournal{}, pulls: &memJournal{},
		reg: prometheus.NewRegistry()}
	x.gateFixture = newGateFixture(t, x.kv, WithLists(x.lists), WithAudit(NewAuditor(x.audit, slog.New(slog.NewTextHandler(io.Discard, nil)))),
		WithPullLog(x.pulls), WithMetrics(NewMetrics(x.reg)))
	t.Cleanup(func() { _ = x.g.Close() })
	return x
}

func (x *explainFixture) records() int {
	_ = x.g.Close() // the pull log writes in the background
	x.audit.mu.Lock()
	defer x.audit.mu.Unlock()
	x.pulls.mu.Lock()
	defer x.pulls.mu.Unlock()
	n := 0
	for _, r := range x.audit.recs {
		n += len(r)
	}
	for _, r := range x.pulls.recs {
		n += len(r)
	}
	return n
}

func (x *explainFixture) decisions(t *testing.T) float64 {
	t.Helper()
	mfs, err := x.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "portcullis_admission_decisions_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// Explain tells what a pull would get, and how, without changing anything a pull sees: the next Admit gets the
// verdict Explain predicted, whatever decided it (a list, the cache, a parent, a subject, or a fresh evaluation).
func TestExplainIsWhatAPullGets(t *testing.T) {
	const sigType = "application/vnd.dev.cosign.simplesigning.v1+json"
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// setup prepares the state and returns the subject to explain.
		setup    func(t *testing.T, x *explainFixture) Subject
		from     string
		allowed  bool
		reason   []string
		passed   bool // the fresh evaluation's verdict
		cached   bool
		listKind ListKind
	}{
		{name: "signed, never pulled", from: "evaluated", allowed: true, passed: true, reason: []string{`admitted by rule "default"`},
			setup: func(t *testing.T, x *explainFixture) Subject {
				s := image(t, "v1", digest.FromString("a"))
				x.ev.signed[s.Digest] = true
				return s
			}},
		{name: "unsigned, never pulled", from: "evaluated", reason: []string{"not signed by release (no signatures found)"},
			setup: func(t *testing.T, x *explainFixture) Subject { return image(t, "v1", digest.FromString("b")) }},
		{name: "signed, pulled before", from: "cached", allowed: true, passed: true, cached: true,
			setup: func(t *testing.T, x *explainFixture) Subject {
				s := image(t, "v1", digest.FromString("c"))
				x.ev.signed[s.Digest] = true
				x.admit(t, s)
				return s
			}},
		{name: "unsigned, denied before", from: "cached", cached: true, reason: []string{"not signed by release"},
			setup: func(t *testing.T, x *explainFixture) Subject {
				s := image(t, "v1", digest.FromString("d"))
				x.admit(t, s)
				return s
			}},
		{name: "signed, denied before, a pull decides afresh once a report moves its epoch", from: "evaluated", allowed: true, passed: true,
			setup: func(t *testing.T, x *explainFixture) Subject {
				s := image(t, "v1", digest.FromString("e"))
				x.admit(t, s)
				x.ev.signed[s.Digest] = true
				x.report(t, s.Digest, policy.SeverityLow)
				return s
			}},
		{name: "signed but deny-listed", from: "deny-list", passed: true, listKind: ListDeny, reason: []string{"denied by deny-list entry", "CVE-2024-3094"},
			setup: func(t *testing.T, x *explainFixture) Subject {
				s := image(t, "v1", digest.FromString("f"))
				x.ev.signed[s.Digest] = true
				if _, err := x.lists.Add(ctx, ListDeny, "ghcr.io/acme/app@"+s.Digest.String(), "CVE-2024-3094", time.Time{}, "alice"); err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "unsigned but allow-listed", from: "allow-list", allowed: true, listKind: ListAllow, reason: []string{"break-glass"},
			setup: func(t *testing.T, x *explainFixture) Subject {
				if _, err := x.lists.Add(ctx, ListAllow, "ghcr.io/acme/app:hotfix", "incident 42", time.Time{}, "bob"); err != nil {
					t.Fatal(err)
				}
				return image(t, "hotfix", digest.FromString("g"))
			}},
		{name: "unsigned child of a signed index", from: "parent", allowed: true, reason: []string{"admitted as part of ghcr.io/acme/app@"},
			setup: func(t *testing.T, x *explainFixture) Subject {
				child := image(t, "", digest.FromString("h"))
				idx := index(t, "v1", child)
				x.ev.signed[idx.Digest] = true
				x.admit(t, idx)
				return child
			}},
		{name: "signature of an admitted image", from: "artifact", allowed: true, reason: []string{"admitted as an artifact of"},
			setup: func(t *testing.T, x *explainFixture) Subject {
				img := image(t, "v1", digest.FromString("i"))
				x.ev.signed[img.Digest] = true
				x.admit(t, img)
				return artifact(t, "sha256-"+img.Digest.Encoded()+".sig", "", sigType)
			}},
		{name: "signature of an image not admitted", from: "evaluated", reason: []string{"not signed by release", "that image is not admitted (pull it first)"},
			setup: func(t *testing.T, x *explainFixture) Subject {
				img := image(t, "v1", digest.FromString("j"))
				return artifact(t, "sha256-"+img.Digest.Encoded()+".sig", "", sigType)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExplainFixture(t)
			s := tc.setup(t, x)
			sets, recs, counted := x.kv.sets.Load(), x.records(), x.decisions(t)
			e, err := x.g.Explain(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if n := x.kv.sets.Load() - sets; n != 0 {
				t.Errorf("Explain wrote %d keys", n)
			}
			if n := x.records() - recs; n != 0 {
				t.Errorf("Explain wrote %d audit or pull records", n)
			}
			if n := x.decisions(t) - counted; n != 0 {
				t.Errorf("Explain counted %v decisions", n)
			}
			if e.From != tc.from || e.Pull.Allowed != tc.allowed {
				t.Errorf("explained as %s allowed=%v, want %s allowed=%v: %s", e.From, e.Pull.Allowed, tc.from, tc.allowed, e.Pull.Reason)
			}
			for _, w := range tc.reason {
				if !strings.Contains(e.Pull.Reason, w) {
					t.Errorf("reason %q does not say %q", e.Pull.Reason, w)
				}
			}
			if e.Evaluation.Decision.Allowed != tc.passed || len(e.Evaluation.Decision.Checks) == 0 {
				t.Errorf("fresh evaluation %+v, want allowed=%v with checks", e.Evaluation.Decision, tc.passed)
			}
			if (e.Cached != nil) != tc.cached {
				t.Errorf("cached decision %+v, want one: %v", e.Cached, tc.cached)
			}
			if (e.List != nil) != (tc.listKind != "") || (e.List != nil && e.List.Kind != tc.listKind) {
				t.Errorf("list entry %+v, want kind %q", e.List, tc.listKind)
			}
			if e.Policy != x.g.Policy().Hash() {
				t.Errorf("policy %s", e.Policy)
			}
			got, err := x.g.Admit(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			got.Evaluation = nil
			if got.Allowed != e.Pull.Allowed || got.Reason != e.Pull.Reason || got.Rule != e.Pull.Rule || got.Mode != e.Pull.Mode ||
				strings.Join(got.Warnings, "|") != strings.Join(e.Pull.Warnings, "|") {
				t.Errorf("the pull got\n  %+v\nexplain said\n  %+v", got, e.Pull)
			}
		})
	}
}

// Explain never asks a scanner: the evidence it gathers carries NoScan.
func TestExplainDoesNotScan(t *testing.T) {
	var opts []GatherOptions
	ev := evidenceFunc(func(_ context.Context, _ Subject, _ policy.Requirements, o GatherOptions) (policy.Facts, error) {
		opts = append(opts, o)
		return policy.Facts{}, nil
	})
	f := newGateFixture(t, nil)
	if _, err := f.g.SetPolicy(f.g.Policy(), ev); err != nil {
		t.Fatal(err)
	}
	if _, err := f.g.Explain(context.Background(), image(t, "v1")); err != nil {
		t.Fatal(err)
	}
	if len(opts) != 1 || !opts[0].NoScan {
		t.Errorf("gathered with %+v, want NoScan", opts)
	}
}

// evidenceFunc is an Evidence from a function.
type evidenceFunc func(ctx context.Context, s Subject, req policy.Requirements, opts GatherOptions) (policy.Facts, error)

func (f evidenceFunc) Gather(ctx context.Context, s Subject, req policy.Requirements, opts GatherOptions) (policy.Facts, error) {
	return f(ctx, s, req, opts)
}
