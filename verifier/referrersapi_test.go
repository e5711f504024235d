package verifier_test

import (
	"net/http"
	"testing"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// TestReferrersAPIKnown: a Source that knows whether its registry has the referrers API (the proxy's upstream
// client, once the registry answered) makes a Verify ask only the API, or only the sha256-<hex> fallback tag,
// instead of both at once; a registry that no longer has the API it had still has its fallback tag read.
func TestReferrersAPIKnown(t *testing.T) {
	t.Parallel()
	fallbackTag := func(img image) string {
		return "/v2/" + img.target.Repository + "/manifests/sha256-" + img.target.Digest.Encoded()
	}
	referrers := func(img image) string {
		return "/v2/" + img.target.Repository + "/referrers/" + img.target.Digest.String()
	}
	query := verifier.Query{Signatures: []string{"release"}}
	release := newKeyPair(t)
	v := newVerifier(t, keyRoot(t, "release", release.pub))

	for _, tc := range []struct {
		name     string
		opts     []registrytest.Option
		api, tag int // requests of the second Verify, the client knowing
	}{
		{"with the API", []registrytest.Option{registrytest.WithGGCR()}, 1, 0},
		{"without the API", nil, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := registrytest.New(t, tc.opts...)
			client, err := upstream.New(reg.Host(), reg.URL(), upstream.WithAllowPrivateAddresses(true))
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range [][2]int{{1, 1}, {tc.api, tc.tag}} {
				img := pushImage(t, reg, "team/app")
				img.target.Source = client
				reg.Hits().Reset()
				if _, err := v.Verify(t.Context(), img.target, query); err != nil {
					t.Fatalf("Verify %d: %v", i+1, err)
				}
				api, tag := reg.Hits().CountPath(http.MethodGet, referrers(img)), reg.Hits().CountPath(http.MethodGet, fallbackTag(img))
				if api != want[0] || tag != want[1] {
					t.Errorf("Verify %d: referrers API asked %d times, fallback tag %d; want %d and %d", i+1, api, tag, want[0], want[1])
				}
			}
		})
	}

	t.Run("the API gone", func(t *testing.T) {
		t.Parallel()
		reg := registrytest.New(t) // no referrers API: cosign 3 puts the bundle under the fallback tag
		client, err := upstream.New(reg.Host(), reg.URL(), upstream.WithAllowPrivateAddresses(true))
		if err != nil {
			t.Fatal(err)
		}
		img := pushImage(t, reg, "team/app")
		cosigntest.SignBundle(t, cosigntest.Binary3(t), img.ref, release.priv)
		img.target.Source = believesAPI{client}
		reg.Hits().Reset()
		got, err := v.Verify(t.Context(), img.target, query)
		if err != nil {
			t.Fatal(err)
		}
		checkResults(t, got.Signatures, map[string]policy.SignatureResult{"release": verified(verifier.FormatBundle)})
		if n := reg.Hits().CountPath(http.MethodGet, referrers(img)); n != 1 {
			t.Errorf("referrers API asked %d times, want 1", n)
		}
	})
}

// believesAPI is a client that believes its registry has the referrers API.
type believesAPI struct{ *upstream.Client }

func (believesAPI) ReferrersAPI() (supported, known bool) { return true, true }
