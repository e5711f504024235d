package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/policy"
)

// Evidence gathers the facts a rule needs about one manifest. It decides nothing; its error means it could not
// find out, and the rule's onError says what that means (deny by default).
type Evidence interface {
	Gather(ctx context.Context, s Subject, req policy.Requirements, opts GatherOptions) (policy.Facts, error)
}

// GatherOptions tune one Gather.
type GatherOptions struct {
	// RenewWithin asks for a fresh scan report when the one at hand ages out (by its rule's maxAge) within this
	// margin: the refresher's, so that a pull never waits for a report. Zero: only a report past its maxAge is
	// renewed.
	RenewWithin time.Duration
	// NoScan never asks a scanner for a report, where a pull would (no report, or scan-and-wait): for explain and
	// preview, which change nothing and must not wait minutes per image. Facts.ScanError then says a pull would
	// ask. Default false.
	NoScan bool
}

// Gate is the policy admission gate: match the rule, gather evidence, evaluate, cache the decision by
// (policy hash, repository, digest, facts epoch), and grant what an admitted manifest lets through (its blobs,
// its children, its tag's last good digest). A manifest that was not evaluated itself is admitted only through
// an admitted one: as a child of an evaluated index, or as an artifact-shaped signature, attestation or SBOM of
// an admitted image (by its cosign tag or its subject), never by its name or a list that names it.
type Gate struct {
	cur      atomic.Pointer[view] // the policy in force, swapped whole by SetPolicy
	reports  *Reports
	lists    *Lists
	auditor  *Auditor
	kv       KV
	log      *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	allowTTL time.Duration
	denyTTL  time.Duration
	goodTTL  time.Duration
	flight   singleflight.Group
	hot      *hotSet
	outage   *hotSet     // images decided while the facts epoch was unreadable, to decide again and share when it is back
	pulls    *pullLog    // nil: no pull log
	preview  atomic.Bool // a preview is running
	parsed   parsedManifests
	prior    priors // the policies in force before the current one (priors.go)

	timeout   time.Duration // one decision's deadline
	slots     chan struct{} // cold decisions running at once
	queueWait time.Duration // how long a cold decision waits for a slot
}

// Option configures a Gate.
type Option func(*Gate) error

// WithDecisionTTL sets how long allowed and denied decisions are cached. Default 1h and 1m: a denial is looked at
// again soon, so that signing an image fixes its pull quickly.
func WithDecisionTTL(allow, deny time.Duration) Option {
	return func(g *Gate) error {
		if allow <= 0 || deny <= 0 {
			return errors.New("gate: decision TTLs must be positive")
		}
		g.allowTTL, g.denyTTL = allow, deny
		return nil
	}
}

// WithDecisionTimeout bounds one decision: gathering evidence and evaluating. A rule with scan-and-wait gets its
// waitTimeout on top. An overrun is an error, which the rule's onError turns into a decision (deny by default).
// Default 30s.
func WithDecisionTimeout(d time.Duration) Option {
	return func(g *Gate) error {
		if d <= 0 {
			return errors.New("gate: decision timeout must be positive")
		}
		g.timeout = d
		return nil
	}
}

// WithMaxConcurrentDecisions caps the cold decisions (evidence gathering, on-demand scans) running at once; one
// more waits at most wait for a slot and is then refused with ErrOverloaded (429 to the client), so a burst of new
// digests cannot pile up goroutines and upstream requests. Default 32 and 10s.
func WithMaxConcurrentDecisions(n int, wait time.Duration) Option {
	return func(g *Gate) error {
		if n <= 0 || wait < 0 {
			return errors.New("gate: max concurrent decisions must be positive and the wait not negative")
		}
		g.slots, g.queueWait = make(chan struct{}, n), wait
		return nil
	}
}

// WithLogger sets the logger decisions and audit records go to. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(g *Gate) error { g.log = l; return nil } }

// WithMetrics sets where decisions are counted. Default: not exported.
func WithMetrics(m *Metrics) Option { return func(g *Gate) error { g.metrics = m; return nil } }

// WithLists makes the gate enforce the allow and deny lists before the policy. Default: none.
func WithLists(l *Lists) Option { return func(g *Gate) error { g.lists = l; return nil } }

// WithAudit records denials and break-glass pulls in the audit log. Default: none (they are logged only).
func WithAudit(a *Auditor) Option { return func(g *Gate) error { g.auditor = a; return nil } }

// WithReports makes decisions depend on the reports and VEX posted for a digest: a new one is looked at on the
// next pull. Default: none.
func WithReports(r *Reports) Option { return func(g *Gate) error { g.reports = r; return nil } }

// WithClock sets the clock. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(g *Gate) error { g.now = now; return nil }
}

// NewGate builds the admission gate for a compiled policy.
func NewGate(pol *policy.Policy, ev Evidence, kv KV, opts ...Option) (*Gate, error) {
	if pol == nil || ev == nil || kv == nil {
		return nil, errors.New("gate: policy, evidence and KV are required")
	}
	g := &Gate{kv: kv, log: slog.Default(), now: time.Now,
		allowTTL: time.Hour, denyTTL: time.Minute, goodTTL: 30 * 24 * time.Hour, hot: newHotSet(1000), outage: newHotSet(1000),
		timeout: 30 * time.Second, slots: make(chan struct{}, 32), queueWait: 10 * time.Second}
	for _, o := range opts {
		if err := o(g); err != nil {
			return nil, err
		}
	}
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	g.cur.Store(g.newView(pol, ev))
	g.showPolicy(pol)
	g.sharePolicies(context.Background(), policyNS(pol), "")
	return g, nil
}

// view is the gate under one policy: the policy, its part of the keys (keys.go) and the evidence gatherer built for
// its trust roots and scanners. The three change together or not at all: a decision made under one policy must
// never be stored under another's keys, nor gathered with another's keys. Every call through the gate takes the
// view in force when it starts and keeps it to the end, so a policy swapped meanwhile (SetPolicy) takes effect on
// the next call, never halfway through one.
type view struct {
	*Gate
	policy   *policy.Policy
	ns       string
	evidence Evidence
}

func (g *Gate) newView(pol *policy.Policy, ev Evidence) *view {
	return &view{Gate: g, policy: pol, ns: policyNS(pol), evidence: ev}
}

// view returns the view in force.
func (g *Gate) view() *view { return g.cur.Load() }

// Policy returns the policy in force.
func (g *Gate) Policy() *policy.Policy { return g.view().policy }

// SetPolicy makes pol, with ev gathering its evidence, the gate's policy at once: calls that start afterwards decide
// under it, calls under way finish under the policy they started with. Nothing cached under another policy applies
// under pol (its keys differ by the policy hash), so everything is decided afresh under it; swapping back to an
// earlier policy finds that policy's decisions where they were, if it was one of the last three (an older one's
// entries are dropped from this replica's memory: a LocalDropper KV). The last three also name the manifests to
// decide again when a blob they granted is asked for under pol (PriorGrants). It returns the policy it replaced.
func (g *Gate) SetPolicy(pol *policy.Policy, ev Evidence) (*policy.Policy, error) {
	if pol == nil || ev == nil {
		return nil, errors.New("gate: a policy and its evidence are required")
	}
	nv := g.newView(pol, ev)
	oldView := g.cur.Swap(nv)
	g.showPolicy(pol)
	dropped := g.prior.push(oldView.ns, nv.ns)
	if ld, ok := g.kv.(LocalDropper); ok {
		for _, ns := range dropped {
			ld.DropLocal(policyPrefixes(ns)...)
		}
	}
	g.sharePolicies(context.Background(), nv.ns, oldView.ns)
	return oldView.policy, nil
}

// showPolicy sets the policy info metric to pol's hash.
func (g *Gate) showPolicy(pol *policy.Policy) {
	g.metrics.policyInfo.Reset()
	g.metrics.policyInfo.WithLabelValues(pol.Hash()[:12]).Set(1)
}

// ErrOverloaded means a decision could not start within its queue wait: too many cold decisions are running. The
// client is told to retry (429 with Retry-After); nothing is cached.
var ErrOverloaded = errors.New("too many admission decisions in progress; retry shortly")

// cachedVerdict is a Verdict as stored in the KV.
type cachedVerdict struct {
	Verdict
	// Expires is when the cached decision lapses; the refresher decides again before that.
	Expires time.Time `json:"expires"`
	// Anchors are the admissions this decision rests on besides its own facts (a platform child's index); empty
	// for a manifest evaluated on its own.
	Anchors []anchor `json:"anchors,omitempty"`
}

// unknownEpoch keys what was decided while the facts epoch could not be read (shared state down).
const unknownEpoch = "?"

// epoch returns the digest's facts epoch; known is false when the shared state could not be read.
func (g *Gate) epoch(ctx context.Context, dgst digest.Digest) (string, bool) {
	if g.reports == nil {
		return "0", true
	}
	e, err := g.reports.Epoch(ctx, dgst)
	if err != nil {
		g.log.Warn("facts epoch unreadable; deciding afresh", "digest", dgst, "error", err)
		return unknownEpoch, false
	}
	return e, true
}

// Admit decides whether s may be served: a cached decision, else admission through a parent index or as an
// artifact of an admitted image, else an evaluation of its own (one at a time per digest, under the concurrency
// cap). A cached denial of a manifest's own facts does not stop it from being admitted through a parent or a
// subject admitted since. A verdict made by evaluating now carries that Evaluation (the facts behind it).
func (g *Gate) Admit(ctx context.Context, s Subject) (Verdict, error) { return g.view().admit(ctx, s) }

func (g *view) admit(ctx context.Context, s Subject) (Verdict, error) {
	if v, ok := g.byList(ctx, s); ok {
		g.recordPull(ctx, s)
		return v, nil
	}
	c, perr := g.parsed.parse(s)
	g.prefetch(ctx, s, c, perr == nil)
	epoch, _ := g.epoch(ctx, s.Digest)
	var denied *cachedVerdict
	if d, ok := g.load(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch)); ok && g.anchorsHold(ctx, s.Upstream, s.Repository, d.Anchors) {
		if d.Allowed || len(d.Anchors) > 0 {
			if len(d.Anchors) == 0 {
				g.recordPull(ctx, s)
			}
			g.count(d.Verdict, "cached")
			if d.Allowed {
				if g.policy.Match(s.Upstream, s.Repository).Requirements().Scan != nil {
					g.hot.touch(s, g.now())
				}
				if perr == nil {
					own := append(d.Anchors, anchor{Digest: s.Digest, Epoch: epoch})
					g.ensureContents(ctx, s, c, own, len(d.Anchors) == 0)
				}
			}
			return d.Verdict, nil
		}
		denied = &d
	}
	if perr == nil {
		if d, ok, err := g.viaParent(ctx, s, c); err != nil || ok {
			return d, err
		}
	}
	notArtifact := ""
	if perr == nil {
		var ok bool
		var d Verdict
		if d, notArtifact, ok = g.asArtifact(ctx, s, c); ok {
			return d, nil
		}
	}
	var d Verdict
	if denied != nil {
		g.count(denied.Verdict, "cached")
		d = denied.Verdict
	} else {
		v, err, _ := g.flight.Do(g.ns+" "+s.Image(), func() (any, error) {
			ctx := context.WithoutCancel(ctx)
			// A flight that ended between our cache miss and this one has decided: take its verdict rather than
			// verify again.
			if e, known := g.epoch(ctx, s.Digest); known {
				if d, ok := g.load(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, e)); ok && len(d.Anchors) == 0 {
					g.count(d.Verdict, "cached")
					return d.Verdict, nil
				}
			}
			return g.decideOnce(ctx, s)
		})
		if err != nil {
			return Verdict{}, err
		}
		d = v.(Verdict)
	}
	g.recordPull(ctx, s)
	if !d.Allowed && notArtifact != "" {
		d.Reason += "; " + notArtifact
	}
	return d, nil
}

// byList applies the allow and deny lists, which come before everything: a deny entry refuses the manifest (and,
// through the anchors, everything admitted through it); an allow entry admits it without the gates, loudly. Neither
// is cached: the lists are consulted on every request, so a change takes effect on the next one.
func (g *view) byList(ctx context.Context, s Subject) (Verdict, bool) {
	if e := g.lists.match(ListDeny, s.Upstream, s.Repository, s.Tag, s.Digest); e != nil {
		v := listVerdict(s, e)
		g.log.Warn("admission decision", "image", s.Image(), "tag", s.Tag, "allowed", false, "via", "deny-list", "entry", e.ID, "reason", e.Reason)
		g.count(v, "list")
		g.audit(ctx, AuditRecord{Kind: AuditDenial, Image: s.Image(), Tag: s.Tag, Reason: v.Reason, Entry: e.ID})
		return v, true
	}
	e := g.lists.match(ListAllow, s.Upstream, s.Repository, s.Tag, s.Digest)
	if e == nil {
		return Verdict{}, false
	}
	v := listVerdict(s, e)
	if c, err := g.parsed.parse(s); err == nil {
		g.recordContents(ctx, s, c, []anchor{{Digest: s.Digest, Allow: e.ID}}, true)
	}
	g.log.Warn("admission decision", "image", s.Image(), "tag", s.Tag, "allowed", true, "via", "allow-list", "entry", e.ID, "reason", e.Reason, "audit", true)
	g.count(v, "list")
	g.metrics.breakGlass.WithLabelValues(e.ID).Inc()
	g.audit(ctx, AuditRecord{Kind: AuditBreakGlass, Image: s.Image(), Tag: s.Tag, Reason: e.Reason, Entry: e.ID})
	return v, true
}

// listVerdict is the verdict of a list entry that names s: a deny, or a break-glass admission that says so.
func listVerdict(s Subject, e *ListEntry) Verdict {
	if e.Kind == ListDeny {
		return Verdict{Rule: "deny-list", Mode: string(policy.ModeEnforce),
			Reason: fmt.Sprintf("portcullis: %s denied by %s", s.Image(), e.describe())}
	}
	warn := fmt.Sprintf("portcullis: %s admitted by %s: break-glass, the gates were skipped", s.Image(), e.describe())
	return Verdict{Allowed: true, Rule: "allow-list", Mode: string(policy.ModeEnforce), Reason: warn, Warnings: []string{warn}}
}

// listEntry returns the list entry that decides s before the policy: a deny entry, else an allow entry; nil when
// neither names it.
func (g *Gate) listEntry(s Subject) *ListEntry {
	if e := g.lists.match(ListDeny, s.Upstream, s.Repository, s.Tag, s.Digest); e != nil {
		return e
	}
	return g.lists.match(ListAllow, s.Upstream, s.Repository, s.Tag, s.Digest)
}

// explain gathers the evidence for s and evaluates its rule, bypassing every cache. An error gathering evidence is
// folded into the decision (the rule's onError) and returned beside it.
func (g *view) explain(ctx context.Context, s Subject, opts GatherOptions) (policy.Decision, policy.Facts, error) {
	rule := g.policy.Match(s.Upstream, s.Repository)
	image := s.Image()
	facts, err := g.evidence.Gather(ctx, s, rule.Requirements(), opts)
	if err != nil {
		return rule.ErrorDecision(image, err), facts, err
	}
	facts.Image, facts.Ref = image, s.ref()
	if facts.Now.IsZero() {
		facts.Now = g.now()
	}
	return rule.Evaluate(facts), facts, nil
}

// timeoutFor is a decision's deadline under rule: the decision timeout, plus the scan wait for scan-and-wait.
func (g *Gate) timeoutFor(rule *policy.Rule) time.Duration {
	t := g.timeout
	if sr := rule.Requirements().Scan; sr != nil && sr.OnMissing == policy.OnMissingScanAndWait {
		wait := sr.WaitTimeout
		if wait <= 0 {
			wait = 2 * time.Minute
		}
		t += wait
	}
	return t
}

// acquire takes a decision slot, waiting at most the queue wait.
func (g *Gate) acquire(ctx context.Context) (release func(), err error) {
	select {
	case g.slots <- struct{}{}:
	default:
		t := time.NewTimer(g.queueWait)
		defer t.Stop()
		select {
		case g.slots <- struct{}{}:
		case <-t.C:
			g.metrics.overloaded.Inc()
			return nil, ErrOverloaded
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	g.metrics.inflight.Inc()
	return func() {
		g.metrics.inflight.Dec()
		<-g.slots
	}, nil
}

// evaluate gathers the evidence and evaluates the rule under the concurrency cap and the decision's deadline; an
// error gathering becomes the rule's onError decision. The facts epoch is read before gathering and again after:
// a decision is cached only under the epoch it was made on, and when a report or VEX arrived meanwhile it decides
// again, so nothing posted during a long scan-and-wait is ignored for the life of a cached decision.
// refreshMargin > 0 marks the refresher, which renews reports that age out within it.
func (g *view) evaluate(ctx context.Context, s Subject, refreshMargin time.Duration) (Verdict, error) {
	release, err := g.acquire(ctx)
	if err != nil {
		return Verdict{}, err
	}
	defer release()
	rule := g.policy.Match(s.Upstream, s.Repository)
	ctx, cancel := context.WithTimeout(ctx, g.timeoutFor(rule))
	defer cancel()
	image := s.Image()
	const attempts = 3
	for attempt := 1; ; attempt++ {
		start := g.now()
		before, knownBefore := g.epoch(ctx, s.Digest)
		pd, facts, err := g.explain(ctx, s, GatherOptions{RenewWithin: refreshMargin})
		if errors.Is(err, ErrOverloaded) {
			return Verdict{}, err
		}
		after, knownAfter := g.epoch(ctx, s.Digest)
		changed := knownBefore && knownAfter && before != after
		if changed && attempt < attempts {
			g.log.Info("facts changed while deciding; deciding again", "image", image, "attempt", attempt)
			continue
		}
		d := verdictOf(pd, rule)
		d.Evaluation = &Evaluation{Decision: pd, Facts: facts, Err: err}
		g.log.Log(ctx, levelOf(d.Allowed, pd.Failed()), "admission decision", "image", image, "tag", s.Tag, "allowed", d.Allowed, "rule", pd.Rule,
			"mode", pd.Mode, "failures", pd.Failures, "notes", pd.Notes, "error", err, "took", g.now().Sub(start).Round(time.Microsecond))
		g.count(d, "evaluated")
		if !d.Allowed {
			g.audit(ctx, AuditRecord{Kind: AuditDenial, Image: image, Tag: s.Tag, Reason: d.Reason})
		} else if pd.Failed() {
			g.audit(ctx, AuditRecord{Kind: AuditWarning, Image: image, Tag: s.Tag, Reason: pd.Message})
		}
		if changed {
			return d, nil // facts kept moving: serve this answer, cache nothing
		}
		epoch := after
		ttl := g.allowTTL
		if !d.Allowed || err != nil {
			ttl = g.denyTTL
		}
		if !knownBefore || !knownAfter {
			epoch, ttl = unknownEpoch, min(ttl, g.denyTTL)
			if d.Allowed {
				g.outage.touch(s, g.now())
			}
		}
		if sr := rule.Requirements().Scan; sr != nil && sr.MaxAge > 0 && facts.Scan != nil {
			// A decision on a report must not outlive the report's freshness.
			if left := sr.MaxAge - g.now().Sub(facts.Scan.ScanTime); left < ttl {
				ttl = max(left, time.Second)
			}
		}
		if d.Allowed {
			if rule.Requirements().Scan != nil {
				g.hot.touch(s, g.now())
			}
			// Grants before the decision: a replica that finds the decision (in the shared KV) finds its grants.
			if c, err := g.parsed.parse(s); err == nil {
				g.recordContents(ctx, s, c, []anchor{{Digest: s.Digest, Epoch: epoch}}, true)
			}
			if s.Tag != "" && !pd.Failed() {
				g.set(ctx, lastGoodKey(g.ns, s.Upstream, s.Repository, s.Tag), []byte(s.Digest.String()), g.goodTTL)
			}
		}
		g.store(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch), cachedVerdict{Verdict: d, Expires: g.now().Add(ttl)}, ttl)
		return d, nil
	}
}

// verdictOf is the verdict a pull gets from rule's decision pd: a warn-mode failure is served with a warning.
func verdictOf(pd policy.Decision, rule *policy.Rule) Verdict {
	d := Verdict{Allowed: pd.Allowed, Reason: pd.Message, Rule: pd.Rule, Mode: string(pd.Mode), KeepLastGood: rule.KeepLastGood()}
	if pd.Allowed && pd.Failed() && pd.Mode == policy.ModeWarn {
		d.Warnings = []string{pd.Message}
	}
	return d
}

func levelOf(allowed, failed bool) slog.Level {
	if !allowed || failed {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// AllowBlob reports whether dgst belongs to a manifest admitted for the repository whose admission still holds.
// A broken KV is an error, and the proxy then refuses the blob (fail closed).
func (g *Gate) AllowBlob(ctx context.Context, upstream, repo string, dgst digest.Digest) (bool, error) {
	_, ok, err := g.view().granted(ctx, grantBlob, upstream, repo, dgst)
	return ok, err
}

// Admitted reports whether the manifest dgst is admitted for the repository now (its referrers may then be
// listed). It evaluates nothing.
func (g *Gate) Admitted(ctx context.Context, upstream, repo string, dgst digest.Digest) (bool, error) {
	return g.view().admitted(ctx, upstream, repo, dgst)
}

func (g *view) admitted(ctx context.Context, upstream, repo string, dgst digest.Digest) (bool, error) {
	if g.lists.match(ListDeny, upstream, repo, "", dgst) != nil {
		return false, nil
	}
	if g.lists.match(ListAllow, upstream, repo, "", dgst) != nil {
		return true, nil
	}
	epoch, _ := g.epoch(ctx, dgst)
	if d, ok := g.load(ctx, decisionKey(g.ns, upstream, repo, dgst, epoch)); ok {
		return d.Allowed && g.anchorsHold(ctx, upstream, repo, d.Anchors), nil
	}
	_, ok, err := g.granted(ctx, grantChild, upstream, repo, dgst)
	return ok, err
}

// LastGood returns the last digest admitted without failures for the tag.
func (g *Gate) LastGood(ctx context.Context, upstream, repo, tag string) (digest.Digest, bool) {
	b, err := g.kv.Get(ctx, lastGoodKey(g.view().ns, upstream, repo, tag))
	if err != nil {
		return "", false
	}
	d, err := digest.Parse(string(b))
	return d, err == nil
}

func (g *Gate) load(ctx context.Context, key string) (cachedVerdict, bool) {
	b, err := g.kv.Get(ctx, key)
	if err != nil {
		if !isNotFound(err) {
			g.log.Warn("decision cache read failed; deciding afresh", "key", key, "error", err)
		}
		return cachedVerdict{}, false
	}
	var d cachedVerdict
	if err := json.Unmarshal(b, &d); err != nil {
		return cachedVerdict{}, false
	}
	return d, true
}

func (g *Gate) store(ctx context.Context, key string, d cachedVerdict, ttl time.Duration) {
	b, _ := json.Marshal(d)
	g.set(ctx, key, b, ttl)
}

func (g *Gate) set(ctx context.Context, key string, val []byte, ttl time.Duration) {
	if err := g.kv.Set(ctx, key, val, ttl); err != nil {
		g.log.Warn("shared cache write failed", "key", key, "error", err)
	}
}

func (g *Gate) count(d Verdict, how string) {
	outcome := "denied"
	switch {
	case d.Allowed && len(d.Warnings) > 0:
		outcome = "warned"
	case d.Allowed:
		outcome = "allowed"
	}
	g.metrics.decisions.WithLabelValues(d.Rule, d.Mode, outcome, how).Inc()
}
