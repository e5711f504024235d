package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// EvidenceBuilder builds the evidence gatherer a policy needs: a verifier for its trust roots and clients for its
// scanners. Its error means the policy cannot be enforced as written (a key the verifier cannot use), and the
// policy is refused. cmd/portcullis builds it from the config.
type EvidenceBuilder func(pol *policy.Policy) (Evidence, error)

// policyTopic is the Bus topic on which a reload is announced.
const policyTopic = "policy"

// policyNotice is a reload's announcement: the hash the announcing replica loaded, and who asked.
type policyNotice struct {
	Hash string `json:"hash"`
	By   string `json:"by,omitempty"`
}

// gapBus is a Bus that says when notices may have been lost (cache.GapSubscriber).
type gapBus interface {
	SubscribeGaps(topic string, fn func(msg []byte), gap func()) (cancel func())
}

// How long a replica keeps reloading when its file does not yet give the policy another replica announced (a
// ConfigMap takes a minute or two to reach every node), and how often.
const (
	policyRetryEvery = 10 * time.Second
	policyRetryFor   = 3 * time.Minute
)

// PolicyFile is the policy file a gate enforces, reloadable while it runs: through the admin API and on SIGHUP
// (Reload), and on every replica when one of them reloads (Run). A reload compiles the file and builds its evidence
// gatherer before anything changes, then swaps the gate's policy, evidence and key space at once (Gate.SetPolicy);
// an invalid file changes nothing.
type PolicyFile struct {
	path  string
	gate  *Gate
	build EvidenceBuilder
	bus   Bus
	opts  []policy.Option // how each load and candidate compiles (its Rego engine)

	retryEvery, retryFor time.Duration

	mu     sync.Mutex // one reload at a time
	loaded time.Time
}

// NewPolicyFile returns the reloadable policy file at path, whose policy gate enforces now (loaded now, as far as
// Status says), with build making each new policy's evidence gatherer. A reload is announced on bus, and Run
// follows other replicas' announcements; a nil bus is a single replica. Each reload and candidate is compiled with
// opts (policy.WithModuleCompiler: the Rego engine its modules compile with; without one a policy with a Rego
// module is refused).
func NewPolicyFile(path string, gate *Gate, build EvidenceBuilder, bus Bus, opts ...policy.Option) (*PolicyFile, error) {
	if path == "" || gate == nil || build == nil {
		return nil, errors.New("policy file: a path, a gate and an evidence builder are required")
	}
	return &PolicyFile{path: path, gate: gate, build: build, bus: bus, opts: opts, retryEvery: policyRetryEvery, retryFor: policyRetryFor,
		loaded: gate.now()}, nil
}

// PolicyStatus describes the policy in force.
type PolicyStatus struct {
	// File is the policy file's path.
	File string
	// Hash is the policy's content hash (policy.Policy.Hash); its first 16 hex digits key its decisions.
	Hash string
	// Loaded is when this replica last loaded it.
	Loaded time.Time
	// Rules are its rules' names in file order, without the default.
	Rules []string
	// HasDefault says whether it has a default section (without one, what no rule matches is denied).
	HasDefault bool
}

// Status describes the policy in force.
func (p *PolicyFile) Status() PolicyStatus {
	pol := p.gate.Policy()
	st := PolicyStatus{File: p.path, Hash: pol.Hash(), HasDefault: pol.HasDefault(), Rules: []string{}}
	for _, r := range pol.Rules() {
		st.Rules = append(st.Rules, r.Name())
	}
	p.mu.Lock()
	st.Loaded = p.loaded
	p.mu.Unlock()
	return st
}

// PolicyChange is a reload's outcome: the hash in force before and after.
type PolicyChange struct {
	Old, New string
}

// Changed reports whether the reload put another policy in force.
func (c PolicyChange) Changed() bool { return c.Old != c.New }

// Reload loads the policy file again (compiling its Rego modules anew) and puts it in force, here at once and on every other replica through the
// bus (each reloads from its own file). actor (an admin principal, "SIGHUP") and reason go to the audit record,
// which holds the old and new hash. A file that does not load, compile or yield a verifier is refused with the
// error (each problem "FILE:LINE: field: message"), logged and counted, and the running policy stays. A file
// with the policy already in force changes nothing and is not announced.
func (p *PolicyFile) Reload(ctx context.Context, actor, reason string) (PolicyChange, error) {
	ch, err := p.reload(ctx, actor)
	if err != nil {
		return ch, err
	}
	p.gate.audit(ctx, AuditRecord{Kind: AuditChange, Actor: actor, Action: "policy.reload", Image: p.path, Reason: reason,
		Detail: map[string]any{"old": ch.Old, "new": ch.New, "changed": ch.Changed()}})
	if ch.Changed() && p.bus != nil {
		msg, _ := json.Marshal(policyNotice{Hash: ch.New, By: actor})
		if err := p.bus.Publish(ctx, policyTopic, msg); err != nil {
			p.gate.log.Warn("policy reloaded here, but the other replicas were not told; reload them too (SIGHUP or the admin API)",
				"policy", p.path, "hash", short(ch.New), "error", err)
		}
	}
	return ch, nil
}

// reload loads the file and swaps it in; by says who asked, for the log.
func (p *PolicyFile) reload(ctx context.Context, by string) (PolicyChange, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.gate.Policy()
	fail := func(err error) (PolicyChange, error) {
		p.gate.metrics.policyReloads.WithLabelValues("error").Inc()
		p.gate.log.ErrorContext(ctx, "policy reload refused; the running policy stays", "policy", p.path, "by", by,
			"hash", short(old.Hash()), "error", err)
		return PolicyChange{Old: old.Hash(), New: old.Hash()}, err
	}
	pol, err := policy.Load(p.path, p.opts...)
	if err != nil {
		return fail(err)
	}
	ch := PolicyChange{Old: old.Hash(), New: pol.Hash()}
	if !ch.Changed() {
		p.loaded = p.gate.now()
		p.gate.metrics.policyReloads.WithLabelValues("unchanged").Inc()
		p.gate.log.InfoContext(ctx, "policy reloaded: unchanged", "policy", p.path, "by", by, "hash", short(ch.New))
		return ch, nil
	}
	ev, err := p.build(pol)
	if err != nil {
		return fail(fmt.Errorf("policy %s: %w", p.path, err))
	}
	if _, err := p.gate.SetPolicy(pol, ev); err != nil {
		return fail(err)
	}
	p.loaded = p.gate.now()
	p.gate.metrics.policyReloads.WithLabelValues("changed").Inc()
	p.gate.log.InfoContext(ctx, "policy reloaded: images are decided afresh under it", "policy", p.path, "by", by,
		"old", short(ch.Old), "hash", short(ch.New))
	if !pol.HasDefault() {
		p.gate.log.Warn("the policy has no default: section: images that no rule matches are denied", "policy", p.path)
	}
	return ch, nil
}

// Run follows reloads announced by other replicas until ctx ends: on each, this replica reloads its own file (not
// announcing it again, and without an audit record: the announcing replica wrote one). When its file does not yet
// give the announced policy, it tries again every 10 seconds for 3 minutes, then logs an error. When the bus
// says notices may have been lost, it reloads its file too. Without a bus it returns at once.
func (p *PolicyFile) Run(ctx context.Context) {
	if p.bus == nil {
		return
	}
	notices := make(chan policyNotice, 16)
	deliver := func(n policyNotice) {
		select {
		case notices <- n:
		default: // a reload is pending already: it reads the file as it is then
		}
	}
	heard := func(msg []byte) {
		var n policyNotice
		if json.Unmarshal(msg, &n) == nil && n.Hash != "" {
			deliver(n)
		}
	}
	var cancel func()
	if gb, ok := p.bus.(gapBus); ok {
		cancel = gb.SubscribeGaps(policyTopic, heard, func() { deliver(policyNotice{}) })
	} else {
		cancel = p.bus.Subscribe(policyTopic, heard)
	}
	defer cancel()
	t := time.NewTicker(p.retryEvery)
	defer t.Stop()
	var want policyNotice // an announced policy this file did not give yet
	var until time.Time
	follow := func(n policyNotice) {
		if n.Hash != "" && n.Hash == p.gate.Policy().Hash() {
			want = policyNotice{}
			return
		}
		by := "notice from another replica"
		if n.Hash == "" {
			by = "lost notices on the bus"
		}
		ch, err := p.reload(ctx, by)
		switch {
		case err != nil || n.Hash == "" || ch.New == n.Hash:
			want = policyNotice{}
		case want.Hash != n.Hash:
			want, until = n, p.gate.now().Add(p.retryFor)
			p.gate.log.Warn("another replica loaded a policy this replica's file does not give yet; trying again",
				"policy", p.path, "hash", short(ch.New), "announced", short(n.Hash), "by", n.By)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-notices:
			follow(n)
		case <-t.C:
			if want.Hash == "" {
				continue
			}
			if p.gate.now().After(until) {
				p.gate.log.Error("this replica's policy file still does not give the policy another replica announced; the fleet runs two policies",
					"policy", p.path, "hash", short(p.gate.Policy().Hash()), "announced", short(want.Hash), "by", want.By)
				want = policyNotice{}
				continue
			}
			follow(want)
		}
	}
}

// candidateName is the file name a candidate policy's problems are reported under.
const candidateName = "candidate.yaml"

// Candidate compiles a candidate policy document, never put in force, and builds its evidence gatherer, for a
// preview. The key, trusted-root and regoFile files it names are read relative to the policy file's directory and
// only from under it (an absolute path or one that leaves it is refused), so a candidate cannot read other files
// on the host. Problems are reported as "candidate.yaml:LINE: field: message".
func (p *PolicyFile) Candidate(doc []byte) (Candidate, error) {
	root, err := os.OpenRoot(filepath.Dir(p.path))
	if err != nil {
		return Candidate{}, fmt.Errorf("policy directory: %w", err)
	}
	defer root.Close()
	pol, err := policy.Parse(doc, candidateName, func(name string) ([]byte, error) {
		if filepath.IsAbs(name) {
			return nil, fmt.Errorf("%s: a candidate names files relative to the policy's directory, %s", name, filepath.Dir(p.path))
		}
		return root.ReadFile(name)
	}, p.opts...)
	if err != nil {
		return Candidate{}, err
	}
	ev, err := p.build(pol)
	if err != nil {
		return Candidate{}, fmt.Errorf("%s: %w", candidateName, err)
	}
	return Candidate{Policy: pol, Evidence: ev}, nil
}

// short is a hash as logs show it.
func short(hash string) string { return hash[:min(len(hash), 12)] }
