package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// canonVersion is part of every hash, so that a change to what compiled fields mean can
// change every hash at once.
const canonVersion = "portcullis.policy/v1"

// The canon* types are the canonical compiled form the hash covers: everything that can
// change a decision, in a fixed order (maps are sorted by encoding/json), with defaults filled
// in, and nothing about how the file was written.
type canonPolicy struct {
	Version   string               `json:"version"`
	Trust     map[string]TrustRoot `json:"trust"`
	Scanners  map[string]Scanner   `json:"scanners"`
	Allowlist []canonAllow         `json:"allowlist"`
	Rules     []canonRule          `json:"rules"`
	Default   canonRule            `json:"default"`
}

type canonRule struct {
	Name         string             `json:"name"`
	Upstream     string             `json:"upstream"`
	Repository   string             `json:"repository"`
	Mode         Mode               `json:"mode"`
	SignedBy     Signers            `json:"signedBy"`
	KeepLastGood bool               `json:"keepLastGood"`
	OnError      OnError            `json:"onError"`
	Attestations []canonAttestation `json:"attestations"`
	Scan         *canonScan         `json:"scan"`
	Unmatched    bool               `json:"unmatched,omitempty"`
	// Rego is the module's text (whether inline or a regoFile): a changed module is a changed policy, whose
	// decisions are made afresh. Left out when there is none, so that policies without one keep their hash.
	Rego string `json:"rego,omitempty"`
}

type canonAttestation struct {
	PredicateType string           `json:"predicateType"`
	SignedBy      Signers          `json:"signedBy"`
	Conditions    []canonCondition `json:"conditions"`
}

type canonCondition struct {
	Path    string   `json:"path"`
	Equals  *string  `json:"equals"`
	Matches string   `json:"matches"`
	In      []string `json:"in"`
}

type canonScan struct {
	Requirement ScanRequirement `json:"requirement"`
	Allow       []canonAllow    `json:"allow"`
}

type canonAllow struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
	Reason  string    `json:"reason"`
}

// hashPolicy computes the policy's content hash.
func hashPolicy(p *Policy) string {
	c := canonPolicy{
		Version:   canonVersion,
		Trust:     p.roots,
		Scanners:  p.scanners,
		Allowlist: canonAllowlist(p.def.global),
		Default:   canonicalRule(p.def),
	}
	for _, r := range p.rules {
		c.Rules = append(c.Rules, canonicalRule(r))
	}
	data, err := json.Marshal(c)
	if err != nil {
		panic("policy: hashing a compiled policy: " + err.Error()) // plain data always marshals
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func canonicalRule(r *Rule) canonRule {
	up, repo := r.Pattern()
	c := canonRule{
		Name:         r.name,
		Upstream:     up,
		Repository:   repo,
		Mode:         r.mode,
		SignedBy:     r.signedBy,
		KeepLastGood: r.keepLastGood,
		OnError:      r.onError,
		Unmatched:    r.unmatched,
	}
	for _, a := range r.attestations {
		ca := canonAttestation{PredicateType: a.predicateType, SignedBy: a.signedBy}
		for _, cond := range a.conditions {
			cc := canonCondition{Path: cond.path, Equals: cond.equals, In: cond.in}
			if cond.matches != nil {
				cc.Matches = cond.matches.String()
			}
			ca.Conditions = append(ca.Conditions, cc)
		}
		c.Attestations = append(c.Attestations, ca)
	}
	if r.scan != nil {
		c.Scan = &canonScan{Requirement: r.scan.req, Allow: canonAllowlist(r.scan.allow)}
	}
	if r.module != nil {
		c.Rego = r.module.Source
	}
	return c
}

func canonAllowlist(list []allowEntry) []canonAllow {
	out := make([]canonAllow, len(list))
	for i, e := range list {
		out[i] = canonAllow{ID: e.id, Expires: e.expires.UTC(), Reason: e.reason}
	}
	return out
}
