package admission

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/policy"
)

// After a reload the blobs an earlier policy granted name their manifests (PriorGrants) for the last three policies,
// and grant nothing by themselves; a policy pushed out of that window has its entries dropped from memory.
func TestPriorPoliciesWindow(t *testing.T) {
	ctx := context.Background()
	f := newGateFixture(t, nil)
	layer := digest.FromString("layer")
	img := image(t, "v1", layer)
	f.ev.signed[img.Digest] = true
	if !f.admit(t, img).Allowed || !f.blob(t, layer) {
		t.Fatal("the signed image or its layer is refused")
	}
	first := f.g.view().ns
	grantOf := func(ns string) bool {
		_, err := f.kv.Get(ctx, grantKey(grantBlob, ns, img.Upstream, img.Repository, layer))
		return err == nil
	}
	for i := 1; i <= 4; i++ {
		pol, err := policy.Parse([]byte(fmt.Sprintf("rules:\n  - name: r%d\n    match: {repository: nobody/%d}\n", i, i)+grantsPolicy), "p.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.g.SetPolicy(pol, f.ev); err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("reload %d", i), func(t *testing.T) {
			if f.blob(t, layer) {
				t.Error("an earlier policy's grant was served under the new policy")
			}
			chains, err := f.g.PriorGrants(ctx, img.Upstream, img.Repository, layer)
			if err != nil {
				t.Fatal(err)
			}
			named := slices.ContainsFunc(chains, func(c []PriorManifest) bool { return slices.Equal(c, []PriorManifest{{Digest: img.Digest}}) })
			if within := i <= maxPriorPolicies; named != within || grantOf(first) != within {
				t.Errorf("%d reloads since the grant: manifest named %v, grant kept in memory %v; want %v", i, named, grantOf(first), within)
			}
			if other, _ := f.g.PriorGrants(ctx, img.Upstream, img.Repository, digest.FromString("never granted")); len(other) != 0 {
				t.Errorf("a blob never granted names %v", other)
			}
		})
	}
}

// setVariant puts in force a policy that decides like grantsPolicy but hashes differently (n tells them apart).
func (f *gateFixture) setVariant(t *testing.T, n int) {
	t.Helper()
	pol, err := policy.Parse([]byte(fmt.Sprintf("rules:\n  - name: v%d\n    match: {repository: nobody/%d}\n", n, n)+grantsPolicy), "p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.g.SetPolicy(pol, f.ev); err != nil {
		t.Fatal(err)
	}
}

// The chains PriorGrants names, decided again in order under the policy in force as the proxy does, grant an index
// child's layer (the index first) and a signature's payload (its image first, the signature by its cosign tag); an
// image the policy in force denies grants nothing.
func TestPriorGrantsChains(t *testing.T) {
	const sigType = "application/vnd.dev.cosign.simplesigning.v1+json"
	ctx := context.Background()
	f := newGateFixture(t, nil)
	childLayer := digest.FromString("amd64 layer")
	child := image(t, "", childLayer)
	idx := index(t, "v1", child)
	img := image(t, "v2", digest.FromString("layer"))
	sig := artifact(t, "sha256-"+img.Digest.Encoded()+".sig", "", sigType)
	sigLayer := digest.FromString("payload " + sig.Tag + sigType)
	byDigest := map[digest.Digest]Subject{}
	for _, s := range []Subject{idx, child, img, sig} {
		byDigest[s.Digest] = s
	}
	f.ev.signed[idx.Digest], f.ev.signed[img.Digest] = true, true
	for _, s := range []Subject{idx, child, img, sig} {
		if !f.admit(t, s).Allowed {
			t.Fatalf("%s refused", s.Digest)
		}
	}
	// replay decides the chains again as the proxy does and reports whether the blob is granted then.
	replay := func(t *testing.T, blob digest.Digest) ([][]PriorManifest, bool) {
		chains, err := f.g.PriorGrants(ctx, "ghcr.io", "acme/app", blob)
		if err != nil {
			t.Fatal(err)
		}
		for _, chain := range chains {
			for _, pm := range chain {
				s := byDigest[pm.Digest]
				s.Tag = pm.Tag
				if !f.admit(t, s).Allowed {
					break
				}
			}
		}
		return chains, f.blob(t, blob)
	}
	for i, tc := range []struct {
		name   string
		signed bool
		want   bool
	}{
		{"a policy that still admits", true, true},
		{"a policy that denies", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.ev.signed[idx.Digest], f.ev.signed[img.Digest] = tc.signed, tc.signed
			f.setVariant(t, i+1)
			if f.blob(t, childLayer) || f.blob(t, sigLayer) {
				t.Fatal("an earlier policy's grant was served as is")
			}
			chains, ok := replay(t, childLayer)
			if want := [][]PriorManifest{{{Digest: idx.Digest}, {Digest: child.Digest}}}; !slices.EqualFunc(chains, want, slices.Equal) {
				t.Errorf("child's layer: chains %v, want %v", chains, want)
			}
			if ok != tc.want {
				t.Errorf("child's layer granted %v, want %v", ok, tc.want)
			}
			chains, ok = replay(t, sigLayer)
			if want := [][]PriorManifest{{{Digest: img.Digest}, {Digest: sig.Digest, Tag: sig.Tag}}}; !slices.EqualFunc(chains, want, slices.Equal) {
				t.Errorf("signature's payload: chains %v, want %v", chains, want)
			}
			if ok != tc.want {
				t.Errorf("signature's payload granted %v, want %v", ok, tc.want)
			}
		})
	}
}

// Replicas reloading different policies at once each add theirs to the fleet's list of recent policies, and none is
// lost (a lost one would leave the blobs granted under it refused after the reload).
func TestSharePoliciesConcurrent(t *testing.T) {
	addr := cachetest.StartRedis(t)
	a, b := newGateFixture(t, fleetKV(t, addr, "share:")), newGateFixture(t, fleetKV(t, addr, "share:"))
	ctx := context.Background()
	for round := range 10 {
		nsA, nsB := fmt.Sprintf("a%015d", round), fmt.Sprintf("b%015d", round)
		var wg sync.WaitGroup
		wg.Go(func() { a.g.sharePolicies(ctx, nsA, "") })
		wg.Go(func() { b.g.sharePolicies(ctx, nsB, "") })
		wg.Wait()
		if list := a.g.sharedPolicies(ctx); !slices.Contains(list, nsA) || !slices.Contains(list, nsB) {
			t.Fatalf("round %d: the shared list is %q, want both %s and %s", round, list, nsA, nsB)
		}
	}
}
