package dct_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/notarytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/dct"
)

const releases = "targets/releases"

var (
	signedDigest   = digest.FromString("signed manifest")
	otherDigest    = digest.FromString("manifest signed in targets only")
	unsignedDigest = digest.FromString("unsigned manifest")
)

// TestTrustData reads real trust data from a real notary-server, signed with the real notary client library.
func TestTrustData(t *testing.T) {
	srv := notarytest.Start(t)
	// acme/app signs v1 in targets/releases (by the delegation key) and v2 in targets only, as `docker trust
	// sign` does with and without signers.
	good := srv.Init(t, "reg.test/acme/app", releases)
	good.Sign(t, releases, "v1", signedDigest, 100)
	good.Sign(t, "", "v2", otherDigest, 100)
	// acme/rotated signed v1 in targets/releases, then delegated the role to a new key (the old one leaked)
	// without signing it again: what the server serves for the role is signed by a key targets does not delegate.
	rotated := srv.Init(t, "reg.test/acme/rotated", releases)
	rotated.Sign(t, releases, "v1", signedDigest, 100)
	rotated.RotateDelegationKey(t, releases)
	// Another collection, signed by a root key the policy does not pin.
	rogue := srv.Init(t, "reg.test/acme/rogue")
	rogue.Sign(t, "", "v1", signedDigest, 100)
	// A collection whose targets metadata expires a moment from now.
	expiring := srv.Init(t, "reg.test/acme/old")
	expiring.SignExpiring(t, "", "v1", signedDigest, 100, time.Now().Add(2*time.Second))

	pinned := [][]byte{good.RootKeyPEM, expiring.RootKeyPEM, rotated.RootKeyPEM}
	roots := map[string]policy.TrustRoot{
		"dct":          {Name: "dct", Notary: &policy.Notary{Server: srv.URL, RootKeysPEM: pinned, GUN: policy.DefaultNotaryGUN}},
		"dct-releases": {Name: "dct-releases", Notary: &policy.Notary{Server: srv.URL, RootKeysPEM: pinned, Delegations: []string{releases}, GUN: policy.DefaultNotaryGUN}},
	}
	c, err := dct.New(roots, dct.WithTransport(srv.Transport))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // let the expiring metadata expire
	ctx := context.Background()
	tests := []struct {
		name, root, repo, tag string
		wantDigest            digest.Digest
		wantReason, wantErr   string
	}{
		{name: "signed tag", root: "dct", repo: "acme/app", tag: "v1", wantDigest: signedDigest},
		{name: "signed tag in targets", root: "dct", repo: "acme/app", tag: "v2", wantDigest: otherDigest},
		{name: "unsigned tag", root: "dct", repo: "acme/app", tag: "v3", wantReason: "tag v3 is not signed in the trust data of reg.test/acme/app (role targets)"},
		{name: "unknown root key", root: "dct", repo: "acme/rogue", tag: "v1", wantErr: "none of which trust root dct pins"},
		{name: "expired", root: "dct", repo: "acme/old", tag: "v1", wantErr: "targets expired at"},
		{name: "no such collection", root: "dct", repo: "acme/none", tag: "v1", wantErr: "reg.test/acme/none"},
		{name: "signed in the delegation", root: "dct-releases", repo: "acme/app", tag: "v1", wantDigest: signedDigest},
		{name: "signed in targets, not the delegation", root: "dct-releases", repo: "acme/app", tag: "v2", wantReason: "tag v2 is not signed in the trust data of reg.test/acme/app (roles targets/releases)"},
		// The library sets aside a delegation whose signatures do not meet its threshold, as Docker does: its
		// targets count for no rule.
		{name: "delegation signed by a key targets does not delegate", root: "dct-releases", repo: "acme/rotated", tag: "v1",
			wantReason: "tag v1 is not signed in the trust data of reg.test/acme/rotated (roles targets/releases)"},
		{name: "undelegated key under a rule without delegations", root: "dct", repo: "acme/rotated", tag: "v1",
			wantReason: "tag v1 is not signed in the trust data of reg.test/acme/rotated (role targets)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Tag(ctx, tt.root, "reg.test", tt.repo, tt.tag)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Tag error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != tt.wantDigest || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("Tag = %+v, want digest %q and a reason containing %q", got, tt.wantDigest, tt.wantReason)
			}
		})
	}

	t.Run("signed digest", func(t *testing.T) {
		for d, want := range map[digest.Digest]bool{signedDigest: true, unsignedDigest: false} {
			r, err := c.Signed(ctx, "dct", "reg.test", "acme/app", d)
			if err != nil || r.Verified != want {
				t.Errorf("Signed(%s) = %+v, %v; want verified %v", d, r, err, want)
			}
			if !want && !strings.Contains(r.Reason, "is not a signed target in the trust data of reg.test/acme/app") {
				t.Errorf("reason %q", r.Reason)
			}
		}
	})

	// A server that is down: trust data read before serves until it expires, nothing else is trusted.
	t.Run("server down", func(t *testing.T) {
		now := time.Now()
		c, err := dct.New(roots, dct.WithTransport(srv.Transport), dct.WithRefresh(time.Second), dct.WithRequestTimeout(5*time.Second),
			dct.WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Tag(ctx, "dct", "reg.test", "acme/app", "v1"); err != nil || got.Digest != signedDigest {
			t.Fatalf("Tag = %+v, %v", got, err)
		}
		srv.Stop()
		now = now.Add(time.Minute) // past the refresh, well before the metadata's expiry
		if got, err := c.Tag(ctx, "dct", "reg.test", "acme/app", "v1"); err != nil || got.Digest != signedDigest {
			t.Errorf("with the server down, cached trust data: Tag = %+v, %v", got, err)
		}
		now = now.Add(20 * 365 * 24 * time.Hour) // past every expiry
		if _, err := c.Tag(ctx, "dct", "reg.test", "acme/app", "v1"); err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("with the server down and the cache expired: error %v, want unreachable", err)
		}
		if _, err := c.Tag(ctx, "dct", "reg.test", "acme/other", "v1"); err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("with the server down and nothing cached: error %v, want unreachable", err)
		}
	})
}

func TestNewRejectsBadKeys(t *testing.T) {
	_, err := dct.New(map[string]policy.TrustRoot{"x": {Notary: &policy.Notary{Server: "https://n", RootKeysPEM: [][]byte{[]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}}}})
	if err == nil || !strings.Contains(err.Error(), "trust root x: root key 1") {
		t.Errorf("New error = %v, want one naming root x's key 1", err)
	}
}
