package admission

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

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
			named := slices.ContainsFunc(chains, func(c []digest.Digest) bool { return slices.Equal(c, []digest.Digest{img.Digest}) })
			if within := i <= maxPriorPolicies; named != within || grantOf(first) != within {
				t.Errorf("%d reloads since the grant: manifest named %v, grant kept in memory %v; want %v", i, named, grantOf(first), within)
			}
			if other, _ := f.g.PriorGrants(ctx, img.Upstream, img.Repository, digest.FromString("never granted")); len(other) != 0 {
				t.Errorf("a blob never granted names %v", other)
			}
		})
	}
}
