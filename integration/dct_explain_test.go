package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/notarytest"
	"github.com/portcullis/portcullis/verifier/dct"
)

// TestDockerContentTrustExplain explains tags under a Docker Content Trust rule (delegations: [targets/releases])
// through the admin API, and shows that explain says what a pull gets, resolving the tag as the pull does: after the
// registry's tag moved to an unsigned digest it explains the digest the trust data signs, and a tag the trust data
// does not sign in the delegation is denied before anything is fetched, in the pull's own words. Forgetting the
// decision on a tag forgets the signed digest's. A policy preview that puts a repository under the rule denies an
// image pulled by a tag its trust data does not sign, as the pull would be, though the digest is signed for
// another tag.
func TestDockerContentTrustExplain(t *testing.T) {
	srv := notarytest.Start(t)
	app := srv.Init(t, "hub.test/dct/app", "targets/releases")
	open := srv.Init(t, "hub.test/dct/open", "targets/releases")
	pol := func(openRule string) string {
		return `trust:
  hub-dct:
    notary:
      server: ` + srv.URL + `
      rootKeys: [app.pub, open.pub]
      delegations: [targets/releases]
      gun: "hub.test/{repository}"
rules:
  - name: open
    match: {repository: dct/open}
` + openRule + `
default:
  mode: enforce
  signedBy: {anyOf: [hub-dct]}
`
	}
	a := newAdminEnv(t, pol("    mode: enforce"), map[string][]byte{"app.pub": app.RootKeyPEM, "open.pub": open.RootKeyPEM},
		withNotary(dct.WithTransport(srv.Transport)), withProxy(tagTTL(1)))
	push := func(repoTag string) (digest.Digest, int64) { return pushTarget(t, a.up, repoTag) }
	signed, size := push("dct/app:v1")
	app.Sign(t, "targets/releases", "v1", signed, size)
	d, n := push("dct/app:v2")
	app.Sign(t, "", "v2", d, n) // in targets only, not in the delegation the rule names
	moved, _ := push("dct/app:v1")
	waitTagTTL()

	type answer struct {
		explained
		Digest digest.Digest
		Tag    string
	}
	explain := func(t *testing.T, ref string) answer {
		t.Helper()
		var x answer
		if code := a.call(t, http.MethodGet, "/admin/v1/explain?image="+ref, nil, &x); code != http.StatusOK {
			t.Fatalf("explain %s: %d", ref, code)
		}
		return x
	}

	t.Run("tag moved in the registry", func(t *testing.T) {
		x := explain(t, "dct/app:v1")
		if x.Digest != signed || x.Tag != "v1" || !x.Allowed || x.DecidedBy != "evaluated" {
			t.Errorf("explain dct/app:v1 = digest %s tag %q, allowed %v by %s (%s); want the signed %s (not the registry's %s), allowed, evaluated",
				x.Digest, x.Tag, x.Allowed, x.DecidedBy, x.Message, signed, moved)
		}
		got, err := crane.Digest(a.ref("dct/app:v1"), pullOpts()...)
		if err != nil || digest.Digest(got) != x.Digest {
			t.Errorf("a pull of dct/app:v1 got %s (%v), explain said %s", got, err, x.Digest)
		}
	})
	for _, tc := range []struct{ name, tag, want string }{
		{"signed in targets, not the delegation", "v2", "tag v2 is not signed in the trust data of hub.test/dct/app (roles targets/releases)"},
		{"not signed anywhere nor in the registry", "v3", "tag v3 is not signed in the trust data of hub.test/dct/app (roles targets/releases)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := explain(t, "dct/app:"+tc.tag)
			pulled := denial(t, a.env, "/v2/dct/app/manifests/"+tc.tag)
			if x.Allowed || x.DecidedBy != "trust-data" || x.Digest != "" || x.Rule != "default" || x.Message != pulled {
				t.Errorf("explain dct/app:%s = allowed %v by %s, digest %q, rule %q, message %q; want denied by trust-data, no digest, rule default, the pull's %q",
					tc.tag, x.Allowed, x.DecidedBy, x.Digest, x.Rule, x.Message, pulled)
			}
			mustContain(t, "explain message", x.Message, tc.want)
		})
	}
	t.Run("forget by tag forgets the signed digest", func(t *testing.T) {
		var ans struct{ Digests []digest.Digest }
		if code := a.call(t, http.MethodDelete, "/admin/v1/decisions?image=dct/app:v1", nil, &ans); code != http.StatusOK {
			t.Fatalf("forget: %d", code)
		}
		if len(ans.Digests) != 1 || ans.Digests[0] != signed {
			t.Errorf("forgot %v, want the signed %s", ans.Digests, signed)
		}
		if code := a.call(t, http.MethodDelete, "/admin/v1/decisions?image=dct/app:v2", nil, nil); code != http.StatusNotFound {
			t.Errorf("forget a tag the trust data denies: %d, want 404", code)
		}
	})

	t.Run("preview", func(t *testing.T) {
		// dct/open:v1 is signed; dct/open:alias, the same manifest under another tag, is not. Pulled by the alias
		// under the open rule, it is admitted; under the candidate, a pull of the alias is denied.
		d, n := push("dct/open:v1")
		open.Sign(t, "targets/releases", "v1", d, n)
		if err := crane.Tag(a.up.Ref("dct/open@"+d.String()), "alias", pullOpts()...); err != nil {
			t.Fatal(err)
		}
		if _, err := crane.Pull(a.ref("dct/open:alias"), pullOpts()...); err != nil {
			t.Fatalf("pull under the policy in force: %v", err)
		}
		_ = a.gate.Close() // the pull record is written
		var p struct {
			Counts      struct{ Replayed, NewlyDenied, Errors int }
			NewlyDenied []struct {
				Digest    digest.Digest
				Candidate struct {
					Allowed  bool
					Rule     string
					Failures []string
				}
			}
		}
		if code := a.call(t, http.MethodPost, "/admin/v1/policy/preview", []byte(pol("    signedBy: {anyOf: [hub-dct]}")), &p); code != http.StatusOK {
			t.Fatalf("preview: %d", code)
		}
		if p.Counts.NewlyDenied != 1 || p.Counts.Errors != 0 {
			t.Fatalf("counts %+v, want the alias newly denied", p.Counts)
		}
		nd := p.NewlyDenied[0]
		if nd.Digest != d || nd.Candidate.Rule != "open" ||
			!strings.Contains(strings.Join(nd.Candidate.Failures, ";"), "tag alias is not signed in the trust data of hub.test/dct/open (roles targets/releases)") {
			t.Errorf("newly denied %+v", nd)
		}
	})
}
