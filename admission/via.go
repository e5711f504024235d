package admission

// Admission through another manifest: a platform child through its admitted index, a signature, attestation or SBOM
// through the admitted image it is an artifact of. Neither is evaluated on its own facts; each is admitted only while
// what it rests on holds, and logged and counted like any decision.

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/manifest"
	"github.com/portcullis/portcullis/policy"
)

// artifactTag matches the tags cosign and the referrers fallback store next to an image: sha256-<hex>[.sig|.att|.sbom].
var artifactTag = regexp.MustCompile(`^(sha256)-([a-f0-9]{64})(?:\.(?:sig|att|sbom))?$`)

// viaParent admits s as a child of an index that was evaluated and admitted, while that admission holds. A child
// with reports of its own (a platform image scanned apart from its index) must also pass the rule's scan gate on
// them.
func (g *view) viaParent(ctx context.Context, s Subject, c manifest.Contents) (Verdict, bool, error) {
	gr, ok, err := g.granted(ctx, grantChild, s.Upstream, s.Repository, s.Digest)
	if err != nil {
		g.log.Warn("child grants unreadable; evaluating the manifest on its own", "digest", s.Digest, "error", err)
	}
	if !ok {
		return Verdict{}, false, nil
	}
	rule := g.policy.Match(s.Upstream, s.Repository)
	anchors := gr.Anchors
	if epoch, ok := g.childScanNeeded(ctx, s, rule); ok {
		d, err := g.decideChildScan(ctx, s, rule, gr, epoch)
		if err != nil || !d.Allowed {
			return d, true, err
		}
		anchors = append(anchors, anchor{Digest: s.Digest, Epoch: epoch})
	}
	d := parentVerdict(s, rule, gr)
	g.recordContents(ctx, s, c, anchors, false)
	g.logVia(ctx, s, d, "parent", gr.Via)
	return d, true, nil
}

// parentVerdict is the verdict of a child admitted through its parent's grant gr.
func parentVerdict(s Subject, rule *policy.Rule, gr grant) Verdict {
	return Verdict{Allowed: true, Rule: rule.Name(), Mode: string(rule.Mode()),
		Reason: fmt.Sprintf("portcullis: %s/%s@%s admitted as part of %s", s.Upstream, s.Repository, s.Digest, gr.Via)}
}

// childScanNeeded reports whether a child admitted through its parent must also pass its rule's scan gate on
// reports of its own (it has some: its facts epoch moved), and the epoch.
func (g *view) childScanNeeded(ctx context.Context, s Subject, rule *policy.Rule) (string, bool) {
	if rule.Requirements().Scan == nil || g.reports == nil {
		return "", false
	}
	epoch, known := g.epoch(ctx, s.Digest)
	return epoch, known && epoch != "0"
}

// childScanVerdict is the verdict on a child's own scan gate, pd, once its parent admitted it.
func childScanVerdict(s Subject, gr grant, pd policy.Decision) Verdict {
	d := Verdict{Allowed: pd.Allowed, Reason: pd.Message, Rule: pd.Rule, Mode: string(pd.Mode)}
	if d.Allowed {
		d.Reason = fmt.Sprintf("portcullis: %s admitted as part of %s, and its own scan passed", s.Image(), gr.Via)
	}
	return d
}

// decideChildScan evaluates the scan gate of a child on its own reports, with its signatures and attestations
// established through its parent, and caches the decision resting on the parent.
func (g *view) decideChildScan(ctx context.Context, s Subject, rule *policy.Rule, gr grant, epoch string) (Verdict, error) {
	image := s.Image()
	release, err := g.acquire(ctx)
	if err != nil {
		return Verdict{}, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeoutFor(rule))
	defer cancel()
	req := rule.Requirements()
	facts, err := g.evidence.Gather(ctx, s, policy.Requirements{Scan: req.Scan}, GatherOptions{})
	var pd policy.Decision
	if err != nil {
		pd = rule.ErrorDecision(image, err)
	} else {
		facts.Image, facts.Ref = image, s.ref()
		if facts.Now.IsZero() {
			facts.Now = g.now()
		}
		pd = rule.EvaluateScan(facts)
	}
	d := childScanVerdict(s, gr, pd)
	d.Evaluation = &Evaluation{Decision: pd, Facts: facts, Err: err}
	ttl := g.allowTTL
	if !d.Allowed || err != nil {
		ttl = g.denyTTL
	}
	g.store(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch), cachedVerdict{Verdict: d, Expires: g.now().Add(ttl), Anchors: gr.Anchors}, ttl)
	g.log.Log(ctx, levelOf(d.Allowed, pd.Failed()), "admission decision", "image", image, "allowed", d.Allowed, "rule", pd.Rule, "via", "parent",
		"parent", gr.Via, "failures", pd.Failures, "notes", pd.Notes, "error", err)
	g.count(d, "parent")
	return d, nil
}

// asArtifact admits s as a signature, attestation, SBOM or bundle of an admitted image in the same repository:
// the image its cosign tag names (sha256-<hex>.sig/.att/.sbom, or the referrers fallback tag) or its subject.
// Only an artifact-shaped manifest qualifies (see manifest.Contents.ArtifactOf), and it admits its blobs only.
// When s claims to be an artifact (by tag or subject) but is not admitted as one, why says so.
func (g *view) asArtifact(ctx context.Context, s Subject, c manifest.Contents) (d Verdict, why string, ok bool) {
	d, anchors, how, via, why, ok := g.artifactVerdict(ctx, s, c)
	if ok {
		g.recordContents(ctx, s, c, anchors, false)
		g.logVia(ctx, s, d, how, via)
	}
	return d, why, ok
}

// artifactVerdict is asArtifact without its effects: the verdict admitting s as an artifact, the anchors it rests
// on, how (artifact or referrer) and through which image; or why not.
func (g *view) artifactVerdict(ctx context.Context, s Subject, c manifest.Contents) (d Verdict, anchors []anchor, how, via, why string, ok bool) {
	type candidate struct {
		subject digest.Digest
		how     string
	}
	var cands []candidate
	if m := artifactTag.FindStringSubmatch(s.Tag); m != nil {
		cands = append(cands, candidate{digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2]), "artifact"})
	}
	if c.Subject != nil && (len(cands) == 0 || cands[0].subject != c.Subject.Digest) {
		cands = append(cands, candidate{c.Subject.Digest, "referrer"})
	}
	var whys []string
	for _, cand := range cands {
		if err := c.ArtifactOf(cand.subject); err != nil {
			whys = append(whys, fmt.Sprintf("not admitted as %s of %s: %v", withArticle(cand.how), cand.subject, err))
			continue
		}
		epoch, _ := g.epoch(ctx, cand.subject)
		sd, found := g.load(ctx, decisionKey(g.ns, s.Upstream, s.Repository, cand.subject, epoch))
		if !found || !sd.Allowed || !g.anchorsHold(ctx, s.Upstream, s.Repository, append(sd.Anchors, anchor{Digest: cand.subject, Epoch: epoch})) {
			whys = append(whys, fmt.Sprintf("not admitted as %s of %s: that image is not admitted (pull it first)", withArticle(cand.how), cand.subject))
			continue
		}
		via := imageRef(s.Upstream, s.Repository, cand.subject)
		d := Verdict{Allowed: true, Rule: sd.Rule, Mode: sd.Mode,
			Reason: fmt.Sprintf("portcullis: %s/%s@%s admitted as %s of %s", s.Upstream, s.Repository, s.Digest, withArticle(cand.how), via)}
		return d, append(sd.Anchors, anchor{Digest: cand.subject, Epoch: epoch}), cand.how, via, "", true
	}
	return Verdict{}, nil, "", "", strings.Join(whys, "; "), false
}

// withArticle puts "a" or "an" before how ("an artifact", "a referrer").
func withArticle(how string) string {
	if strings.ContainsRune("aeiou", rune(how[0])) {
		return "an " + how
	}
	return "a " + how
}

// logVia logs and counts an admission through another manifest like any decision.
func (g *Gate) logVia(ctx context.Context, s Subject, d Verdict, how, via string) {
	g.log.Info("admission decision", "image", s.Image(), "tag", s.Tag,
		"allowed", d.Allowed, "rule", d.Rule, "via", how, "through", via)
	g.count(d, how)
}
