package admission

// Grants across a policy reload. A blob is granted under the policy that admitted its manifest (keys.go: the grant
// keys carry the policy hash), so a client that got a manifest just before a reload would find its blobs refused
// under the new policy, although the new policy may admit the image too. The gate remembers the policies in force
// before the current one (here and, for the fleet, in the shared KV), and on a grant miss names the manifests that
// granted the blob under them (PriorGrants). The proxy decides those manifests again under the policy in force
// (Admit: a fresh decision, cached as usual, which grants their blobs under it when it admits them) and asks
// AllowBlob once more. Nothing granted under an old policy is ever served on that grant alone.

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// maxPriorPolicies is how many policies in force before the current one still lend their grants to a re-decision
// after a reload (PriorGrants), and whose entries this replica keeps in memory: three reloads in a row within one
// pull are rare; older policies' entries are dropped from memory at the next reload (DropLocal).
const maxPriorPolicies = 3

// maxPriorGrants bounds the manifests PriorGrants names for one blob: each costs the proxy a decision.
const maxPriorGrants = 4

// policyHistoryTTL is how long the shared list of recent policies lives after its last change: past twice the
// grant TTL, nothing it names has grants left, but a fleet that reloads rarely must still find the policy before
// the last reload.
const policyHistoryTTL = 30 * 24 * time.Hour

// priors is the gate's memory of the policies in force before the current one, newest first.
type priors struct {
	mu  sync.Mutex
	nss []string
}

// push records that ns was in force until now, and returns the policies it pushed out of the window.
func (p *priors) push(ns, cur string) (dropped []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nss = slices.DeleteFunc(p.nss, func(o string) bool { return o == ns || o == cur })
	if ns != cur {
		p.nss = append([]string{ns}, p.nss...)
	}
	if len(p.nss) > maxPriorPolicies {
		dropped = slices.Clone(p.nss[maxPriorPolicies:])
		p.nss = p.nss[:maxPriorPolicies]
	}
	return dropped
}

func (p *priors) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.nss)
}

// LocalDropper is a KV that keeps entries in this process' memory and can drop those whose keys start with one of
// the prefixes, from memory only (a shared tier keeps them until their TTL). *cache.Memory and *cache.Tiered
// implement it. The gate drops a superseded policy's decisions and grants with it, so that memory does not grow
// with the number of policies a long-running replica has been reloaded through.
type LocalDropper interface {
	DropLocal(prefixes ...string) int
}

var (
	_ LocalDropper = (*cache.Memory)(nil)
	_ LocalDropper = (*cache.Tiered)(nil)
)

// policyPrefixes are the key prefixes of everything kept under the policy ns (keys.go).
func policyPrefixes(ns string) []string {
	return []string{"decision/" + ns + "/", grantBlob + "/" + ns + "/", grantChild + "/" + ns + "/", "lastgood/" + ns + "/"}
}

// sharePolicies adds cur, then old (when not empty and another policy), to the shared list of recent policies, so
// that another replica (one started under the new policy, say) finds the grants made under old. Replicas reloading
// at once add to it one after another, under a lease; one that cannot have it within a second writes anyway, and a
// lost race loses at most an entry: a re-decision then finds nothing and the blob is refused (fail closed).
func (g *Gate) sharePolicies(ctx context.Context, cur, old string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if release, err := holdLease(ctx, g.kv, policyHistoryLeaseName(), time.Second); err == nil {
		defer release()
	}
	list := g.sharedPolicies(ctx)
	add := []string{cur}
	if old != "" && old != cur {
		add = append(add, old)
	}
	list = slices.DeleteFunc(list, func(o string) bool { return slices.Contains(add, o) })
	list = append(add, list...)
	if len(list) > maxPriorPolicies+1 {
		list = list[:maxPriorPolicies+1]
	}
	b, _ := json.Marshal(list)
	g.set(ctx, policyHistoryKey(), b, policyHistoryTTL)
}

// sharedPolicies reads the shared list of recent policies, newest first; unreadable is empty.
func (g *Gate) sharedPolicies(ctx context.Context) []string {
	b, err := g.kv.Get(ctx, policyHistoryKey())
	if err != nil {
		return nil
	}
	var list []string
	if json.Unmarshal(b, &list) != nil {
		return nil
	}
	return slices.DeleteFunc(list, func(ns string) bool { return len(ns) != 16 })
}

// PriorManifest is a manifest to decide again after a policy reload: its digest and, for a signature or
// attestation admitted by its cosign tag, that tag (decide it as a pull of that tag would, by that digest).
type PriorManifest struct {
	Digest digest.Digest
	Tag    string
}

// PriorGrants names the manifests that granted the blob dgst in the repository under the policies in force before
// the current one (this replica's and the fleet's), when the current policy grants it nothing: a policy reload
// between a client's manifest and its blobs. Each is a chain, outermost first, ending with the manifest that names
// the blob: an index before its platform child, an image before its signature. Deciding each chain again under the
// policy in force (Admit, by digest) grants the blob under it if, and only if, that policy admits the image now;
// PriorGrants itself admits nothing. At most 4 chains; the error is a KV failure (what was read is returned).
func (g *Gate) PriorGrants(ctx context.Context, upstream, repo string, dgst digest.Digest) ([][]PriorManifest, error) {
	v := g.view()
	nss := g.prior.list()
	for _, ns := range g.sharedPolicies(ctx) {
		if !slices.Contains(nss, ns) {
			nss = append(nss, ns)
		}
	}
	var chains [][]PriorManifest
	var errs []error
	seen := map[digest.Digest]bool{}
	for _, ns := range nss {
		if ns == v.ns {
			continue
		}
		set, err := v.grantsIn(ctx, ns, grantBlob, upstream, repo, dgst)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, gr := range set.Grants {
			if seen[gr.By] {
				continue
			}
			seen[gr.By] = true
			chains = append(chains, gr.chain())
			if len(chains) == maxPriorGrants {
				return chains, errors.Join(errs...)
			}
		}
	}
	return chains, errors.Join(errs...)
}

// chain is what a grant rests on, outermost first, then the manifest that made it: the manifests to decide again,
// in order, for the grant to be made anew.
func (gr grant) chain() []PriorManifest {
	var out []PriorManifest
	for _, a := range gr.Anchors {
		m := PriorManifest{Digest: a.Digest}
		if a.Digest != gr.By && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return append(out, PriorManifest{Digest: gr.By, Tag: gr.Tag})
}
