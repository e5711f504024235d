package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/policy"
)

// Evidence gathers the facts a rule needs about one manifest. It decides nothing; its error means it could not
// find out, and the rule's onError says what that means (deny by default).
type Evidence interface {
	Gather(ctx context.Context, s Subject, req policy.Requirements) (policy.Facts, error)
}

// Gate is the policy admission gate: match the rule, gather evidence, evaluate, cache the decision by
// (policy hash, repository, digest), and remember what an admitted manifest lets through (its blobs, its
// children, its tag's last good digest).
type Gate struct {
	policy   *policy.Policy
	evidence Evidence
	reports  *Reports
	kv       KV
	log      *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	allowTTL time.Duration
	denyTTL  time.Duration
	goodTTL  time.Duration
	flight   singleflight.Group
	hot      *hotSet
}

var (
	_ Admitter     = (*Gate)(nil)
	_ BlobGate     = (*Gate)(nil)
	_ LastGood     = (*Gate)(nil)
	_ ReferrerGate = (*Gate)(nil)
)

// GateOption configures a Gate.
type GateOption func(*Gate) error

// WithDecisionTTL sets how long allowed and denied decisions are cached. Default 1h and 1m: a denial is looked at
// again soon, so that signing an image fixes its pull quickly.
func WithDecisionTTL(allow, deny time.Duration) GateOption {
	return func(g *Gate) error {
		if allow <= 0 || deny <= 0 {
			return errors.New("gate: decision TTLs must be positive")
		}
		g.allowTTL, g.denyTTL = allow, deny
		return nil
	}
}

// WithGateLogger sets the logger decisions and audit records go to. Default slog.Default().
func WithGateLogger(l *slog.Logger) GateOption { return func(g *Gate) error { g.log = l; return nil } }

// WithGateMetrics sets where decisions are counted. Default: not exported.
func WithGateMetrics(m *Metrics) GateOption { return func(g *Gate) error { g.metrics = m; return nil } }

// WithReports makes decisions depend on the reports and VEX posted for a digest: a new one is looked at on the
// next pull. Default: none.
func WithReports(r *Reports) GateOption { return func(g *Gate) error { g.reports = r; return nil } }

// WithGateClock sets the clock. Default time.Now.
func WithGateClock(now func() time.Time) GateOption {
	return func(g *Gate) error { g.now = now; return nil }
}

// NewGate builds the admission gate for a compiled policy.
func NewGate(pol *policy.Policy, ev Evidence, kv KV, opts ...GateOption) (*Gate, error) {
	if pol == nil || ev == nil || kv == nil {
		return nil, errors.New("gate: policy, evidence and KV are required")
	}
	g := &Gate{policy: pol, evidence: ev, kv: kv, log: slog.Default(), now: time.Now,
		allowTTL: time.Hour, denyTTL: time.Minute, goodTTL: 30 * 24 * time.Hour, hot: newHotSet(1000)}
	for _, o := range opts {
		if err := o(g); err != nil {
			return nil, err
		}
	}
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	return g, nil
}

// Policy returns the gate's policy.
func (g *Gate) Policy() *policy.Policy { return g.policy }

// cachedDecision is a Decision as stored in the KV.
type cachedDecision struct {
	Decision
	// Expires is when the cached decision lapses; the refresher decides again before that.
	Expires time.Time `json:"expires"`
}

func (g *Gate) key(kind, upstream, repo, suffix string) string {
	return kind + "/" + g.policy.Hash()[:16] + "/" + upstream + "/" + repo + suffix
}

// artifactTag matches the tags cosign and the referrers fallback store next to an image: sha256-<hex>[.sig|.att|.sbom].
var artifactTag = regexp.MustCompile(`^(sha256)-([a-f0-9]{64})(?:\.(?:sig|att|sbom))?$`)

// Admit decides whether s may be served.
func (g *Gate) Admit(ctx context.Context, s Subject) (Decision, error) {
	dkey := g.decisionKey(ctx, s.Upstream, s.Repository, s.Digest)
	if d, ok := g.load(ctx, dkey); ok {
		g.count(d.Decision, "cached")
		if d.Allowed && g.policy.Match(s.Upstream, s.Repository).Requirements().Scan != nil {
			g.hot.touch(s, g.now())
		}
		return d.Decision, nil
	}
	// A child of an admitted index, or a referrer of an admitted image: admitted through its parent.
	if b, err := g.kv.Get(ctx, g.key("child", s.Upstream, s.Repository, "@"+s.Digest.String())); err == nil {
		d := Decision{Allowed: true, Reason: fmt.Sprintf("portcullis: %s/%s@%s admitted as part of %s", s.Upstream, s.Repository, s.Digest, string(b))}
		g.recordContents(ctx, s, d)
		g.count(d, "parent")
		return d, nil
	}
	// Signature and attestation artifacts of an admitted image are served so that `cosign verify` works through
	// the proxy.
	if m := artifactTag.FindStringSubmatch(s.Tag); m != nil {
		subject := digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2])
		if d, ok := g.load(ctx, g.decisionKey(ctx, s.Upstream, s.Repository, subject)); ok && d.Allowed {
			ad := Decision{Allowed: true, Reason: fmt.Sprintf("portcullis: %s is an artifact of admitted %s", s.Tag, subject)}
			g.recordContents(ctx, s, ad)
			g.count(ad, "artifact")
			return ad, nil
		}
	}
	v, err, _ := g.flight.Do(dkey, func() (any, error) {
		return g.decide(context.WithoutCancel(ctx), s), nil
	})
	if err != nil {
		return Decision{}, err
	}
	return v.(Decision), nil
}

// Explain evaluates s afresh, bypassing every cache, and returns the rule's decision with the evidence behind it.
// An error gathering evidence is folded into the decision (the rule's onError); it is returned for display.
func (g *Gate) Explain(ctx context.Context, s Subject) (policy.Decision, policy.Facts, error) {
	rule := g.policy.Match(s.Upstream, s.Repository)
	image := s.Upstream + "/" + s.Repository + "@" + s.Digest.String()
	facts, err := g.evidence.Gather(ctx, s, rule.Requirements())
	if err != nil {
		return rule.ErrorDecision(image, err), facts, err
	}
	facts.Image = image
	if facts.Now.IsZero() {
		facts.Now = g.now()
	}
	return rule.Evaluate(facts), facts, nil
}

// decide gathers the evidence and evaluates the rule; it never fails: an error becomes the rule's onError decision.
func (g *Gate) decide(ctx context.Context, s Subject) Decision {
	rule := g.policy.Match(s.Upstream, s.Repository)
	image := s.Upstream + "/" + s.Repository + "@" + s.Digest.String()
	start := g.now()
	pd, facts, err := g.Explain(ctx, s)
	d := Decision{Allowed: pd.Allowed, Reason: pd.Message, Rule: pd.Rule, Mode: string(pd.Mode), KeepLastGood: rule.KeepLastGood()}
	if pd.Allowed && pd.Failed() && pd.Mode == policy.ModeWarn {
		d.Warnings = []string{pd.Message}
	}
	level := slog.LevelInfo
	if !d.Allowed || pd.Failed() {
		level = slog.LevelWarn
	}
	g.log.Log(ctx, level, "admission decision", "image", image, "tag", s.Tag, "allowed", d.Allowed, "rule", pd.Rule,
		"mode", pd.Mode, "failures", pd.Failures, "notes", pd.Notes, "error", err, "took", g.now().Sub(start).Round(time.Microsecond))
	ttl := g.allowTTL
	if !d.Allowed || err != nil {
		ttl = g.denyTTL
	}
	if sr := rule.Requirements().Scan; sr != nil && sr.MaxAge > 0 && facts.Scan != nil {
		// A decision on a report must not outlive the report's freshness.
		if left := sr.MaxAge - g.now().Sub(facts.Scan.ScanTime); left < ttl {
			ttl = max(left, time.Second)
		}
	}
	// Gathering may itself have stored a report (a scan on demand), which moves the epoch: key the decision by
	// the facts it was made on.
	dkey := g.decisionKey(ctx, s.Upstream, s.Repository, s.Digest)
	g.store(ctx, dkey, cachedDecision{Decision: d, Expires: g.now().Add(ttl)}, ttl)
	if rule.Requirements().Scan != nil && d.Allowed {
		g.hot.touch(s, g.now())
	}
	if d.Allowed {
		g.recordContents(ctx, s, d)
		if s.Tag != "" && !pd.Failed() {
			g.set(ctx, g.key("lastgood", s.Upstream, s.Repository, ":"+s.Tag), []byte(s.Digest.String()), g.goodTTL)
		}
	}
	g.count(d, "evaluated")
	return d
}

// recordContents remembers what an admitted manifest lets through: its config and layers (blobs), the manifests an
// index lists (children). Kept twice as long as the decision, so a client that got the manifest just before the
// decision expired can still fetch its blobs.
func (g *Gate) recordContents(ctx context.Context, s Subject, d Decision) {
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
		Blobs     []ocispec.Descriptor `json:"blobs"` // artifact manifests
	}
	if err := json.Unmarshal(s.Manifest, &m); err != nil {
		return
	}
	ttl := 2 * g.allowTTL
	parent := []byte(s.Upstream + "/" + s.Repository + "@" + s.Digest.String())
	blobs := append(m.Layers, m.Blobs...)
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	for _, b := range blobs {
		if b.Digest.Validate() == nil {
			g.set(ctx, g.key("blob", s.Upstream, s.Repository, "@"+b.Digest.String()), parent, ttl)
		}
	}
	for _, c := range m.Manifests {
		if c.Digest.Validate() == nil {
			g.set(ctx, g.key("child", s.Upstream, s.Repository, "@"+c.Digest.String()), parent, ttl)
		}
	}
}

// AllowBlob reports whether dgst belongs to a manifest admitted for the repository. A broken KV is an error, and
// the proxy then refuses the blob (fail closed).
func (g *Gate) AllowBlob(ctx context.Context, upstream, repo string, dgst digest.Digest) (bool, error) {
	_, err := g.kv.Get(ctx, g.key("blob", upstream, repo, "@"+dgst.String()))
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, err
}

// LastGood returns the last digest admitted without failures for the tag.
func (g *Gate) LastGood(ctx context.Context, upstream, repo, tag string) (digest.Digest, bool) {
	b, err := g.kv.Get(ctx, g.key("lastgood", upstream, repo, ":"+tag))
	if err != nil {
		return "", false
	}
	d, err := digest.Parse(string(b))
	return d, err == nil
}

// AdmitReferrers admits the listed referrers of an admitted subject, so that they can then be fetched by digest.
func (g *Gate) AdmitReferrers(ctx context.Context, upstream, repo string, subject digest.Digest, referrers []digest.Digest) (bool, error) {
	d, ok := g.load(ctx, g.decisionKey(ctx, upstream, repo, subject))
	if !ok || !d.Allowed {
		return false, nil
	}
	parent := []byte(upstream + "/" + repo + "@" + subject.String() + " (referrer)")
	for _, r := range referrers {
		g.set(ctx, g.key("child", upstream, repo, "@"+r.String()), parent, 2*g.allowTTL)
	}
	return true, nil
}

// decisionKey names the cached decision for a digest in a repository under this policy and the digest's current
// facts epoch (bumped when a report or VEX is posted for it).
func (g *Gate) decisionKey(ctx context.Context, upstream, repo string, dgst digest.Digest) string {
	epoch := "0"
	if g.reports != nil {
		epoch = g.reports.Epoch(ctx, dgst)
	}
	return g.key("decision", upstream, repo, "@"+dgst.String()+"#"+epoch)
}

func (g *Gate) load(ctx context.Context, key string) (cachedDecision, bool) {
	b, err := g.kv.Get(ctx, key)
	if err != nil {
		if !isNotFound(err) {
			g.log.Warn("decision cache read failed; deciding afresh", "key", key, "error", err)
		}
		return cachedDecision{}, false
	}
	var d cachedDecision
	if err := json.Unmarshal(b, &d); err != nil {
		return cachedDecision{}, false
	}
	return d, true
}

func (g *Gate) store(ctx context.Context, key string, d cachedDecision, ttl time.Duration) {
	b, _ := json.Marshal(d)
	g.set(ctx, key, b, ttl)
}

func (g *Gate) set(ctx context.Context, key string, val []byte, ttl time.Duration) {
	if err := g.kv.Set(ctx, key, val, ttl); err != nil {
		g.log.Warn("shared cache write failed", "key", key, "error", err)
	}
}

func (g *Gate) count(d Decision, how string) {
	outcome := "denied"
	switch {
	case d.Allowed && len(d.Warnings) > 0:
		outcome = "warned"
	case d.Allowed:
		outcome = "allowed"
	}
	g.metrics.decisions.WithLabelValues(d.Rule, d.Mode, outcome, how).Inc()
}
