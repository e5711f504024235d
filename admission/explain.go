package admission

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// Explanation is why a manifest is served or refused: everything a pull of it would consult, read without
// changing any of it, and the rule's evaluation of evidence gathered now.
type Explanation struct {
	// Policy is the hash of the policy it was made under.
	Policy string
	// List is the deny- or allow-list entry that decides the manifest before the policy; nil when none names it.
	List *ListEntry
	// Cached is the decision cached for the manifest under the policy and its current facts epoch; nil when none
	// is (a pull evaluates it).
	Cached *CachedDecision
	// How and Via say how the manifest is admitted through another one now, and which: "parent" and the admitted
	// index it is a child of, or "artifact" or "referrer" and the admitted image it belongs to. Empty otherwise.
	How, Via string
	// Evaluation is the rule's evaluation of the evidence gathered now, through the same code as a pull's but
	// never stored, never audited, never counted, and without asking a scanner (GatherOptions.NoScan).
	Evaluation Evaluation
	// Pull is what a pull of the manifest would get now, and From how it would get it: "deny-list",
	// "allow-list", "cached", "parent", "artifact", "referrer" or "evaluated" (the Evaluation, which a pull
	// would then cache).
	Pull Verdict
	From string
}

// CachedDecision is a decision in the decision cache.
type CachedDecision struct {
	Verdict
	// Expires is when it lapses.
	Expires time.Time
	// Holds is false when an admission it rests on no longer holds (its parent was denied since): a pull decides
	// afresh.
	Holds bool
}

// Explain says why s is served or refused (see Explanation) under the policy in force, changing nothing: no
// decision, grant or pull record is stored, no audit record written, no metric counted, and no scanner asked.
// The evaluation runs under the gate's concurrency cap and decision timeout like a pull's. Its error means no
// evaluation could start (ErrOverloaded, the context's end); an error gathering evidence is in
// Evaluation.Err, as a pull would see it.
func (g *Gate) Explain(ctx context.Context, s Subject) (Explanation, error) {
	return g.view().explainAll(ctx, s)
}

func (g *view) explainAll(ctx context.Context, s Subject) (Explanation, error) {
	x := Explanation{Policy: g.policy.Hash(), List: g.listEntry(s)}
	rule := g.policy.Match(s.Upstream, s.Repository)

	release, err := g.acquire(ctx)
	if err != nil {
		return x, err
	}
	ectx, cancel := context.WithTimeout(ctx, g.timeout)
	pd, facts, err := g.explain(ectx, s, GatherOptions{NoScan: true})
	cancel()
	release()
	if ctx.Err() != nil {
		return x, ctx.Err()
	}
	x.Evaluation = Evaluation{Decision: pd, Facts: facts, Err: err}
	fresh := verdictOf(pd, rule)

	// What a pull would get: the steps of admit, in its order, read only.
	epoch, _ := g.epoch(ctx, s.Digest)
	var denied *CachedDecision
	if d, ok := g.load(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch)); ok {
		x.Cached = &CachedDecision{Verdict: d.Verdict, Expires: d.Expires, Holds: g.anchorsHold(ctx, s.Upstream, s.Repository, d.Anchors)}
		if x.Cached.Holds && !d.Allowed && len(d.Anchors) == 0 {
			denied = x.Cached
		}
	}
	var (
		gr                 grant
		artifact           Verdict
		notArtifact        string
		parent, isArtifact bool
	)
	if c, err := g.parsed.parse(s); err == nil {
		gr, parent, _ = g.granted(ctx, grantChild, s.Upstream, s.Repository, s.Digest)
		if parent {
			x.How, x.Via = "parent", gr.Via
		} else if d, _, how, via, why, ok := g.artifactVerdict(ctx, s, c); ok {
			artifact, isArtifact, x.How, x.Via = d, true, how, via
		} else {
			notArtifact = why
		}
	}
	switch {
	case x.List != nil:
		x.Pull, x.From = listVerdict(s, x.List), string(x.List.Kind)+"-list"
	case x.Cached != nil && x.Cached.Holds && denied == nil:
		x.Pull, x.From = x.Cached.Verdict, "cached"
	case parent:
		x.Pull, x.From = parentVerdict(s, rule, gr), "parent"
		if _, ok := g.childScanNeeded(ctx, s, rule); ok && err == nil {
			x.Pull = childScanVerdict(s, gr, rule.EvaluateScan(facts))
		}
	case isArtifact:
		x.Pull, x.From = artifact, x.How
	default:
		x.Pull, x.From = fresh, "evaluated"
		if denied != nil {
			x.Pull, x.From = denied.Verdict, "cached"
		}
		if !x.Pull.Allowed && notArtifact != "" {
			x.Pull.Reason += "; " + notArtifact
		}
	}
	x.Pull.Evaluation = nil
	return x, nil
}

// evaluateOnly evaluates s's rule under g on evidence gathered now without a scanner, storing nothing: what a
// preview compares. Its error is the one gathering evidence met; the decision is then the rule's onError.
func (g *view) evaluateOnly(ctx context.Context, s Subject) (policy.Decision, error) {
	pd, _, err := g.explain(ctx, s, GatherOptions{NoScan: true})
	return pd, err
}
