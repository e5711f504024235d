package verifier_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/notationtest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/verifier"
)

// TestSignaturesNotationTimestamp signs images with notation-go's signer and an RFC 3161
// timestamp countersignature from a test TSA (whose certificate names an unreachable CRL, as
// public TSAs' do), and checks them against two Notation roots over the same CA: "stamped",
// whose tsa store holds that TSA's root, and "plain", with no tsa store. As notation verify
// does: under "stamped" a certificate that has expired since it signed still verifies with a
// trusted timestamp made while it was valid, and a signature without one, with one from
// another TSA, or with one dated after the certificate's end, is denied; under "plain" a timestamp is not looked at, so an expired
// certificate is denied whatever it carries.
func TestSignaturesNotationTimestamp(t *testing.T) {
	t.Parallel()
	ca := notationtest.NewCA(t, "Acme Root")
	tsa, rogue := notationtest.NewTSA(t, "Acme TSA"), notationtest.NewTSA(t, "Rogue TSA")
	acme := ca.Leaf(t, notationtest.Subject("acme"), time.Time{}, time.Time{})
	reg := registrytest.New(t)
	repo := notationtest.Repo(t, reg.Host(), "team/app", false)

	var expiry time.Time
	expiring := func(img image, tsa *notationtest.TSA) {
		l := ca.SignExpiringTimestamped(t, repo, notationtest.Subject("acme"), img.target.Digest, notationtest.JWS, tsa)
		if l.Cert.NotAfter.After(expiry) {
			expiry = l.Cert.NotAfter
		}
	}
	expiredStamped := pushImage(t, reg, "team/app")
	expiring(expiredStamped, tsa)
	expiredBare := pushImage(t, reg, "team/app")
	expiring(expiredBare, nil)
	expiredRogue := pushImage(t, reg, "team/app")
	expiring(expiredRogue, rogue)
	validStamped := pushImage(t, reg, "team/app")
	notationtest.SignTimestamped(t, repo, acme, validStamped.target.Digest, notationtest.COSE, tsa)
	validBare := pushImage(t, reg, "team/app")
	notationtest.Sign(t, repo, acme, validBare.target.Digest, notationtest.COSE)
	// A trusted TSA whose clock runs two hours ahead dates the signature of a certificate valid for one more hour
	// after the certificate's end.
	fast := notationtest.NewTSA(t, "Fast TSA")
	fast.Skew(2 * time.Hour)
	shortLived := ca.Leaf(t, notationtest.Subject("acme"), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	stampedLate := pushImage(t, reg, "team/app")
	notationtest.SignTimestamped(t, repo, shortLived, stampedLate.target.Digest, notationtest.JWS, fast)
	time.Sleep(time.Until(expiry.Add(1100 * time.Millisecond)))

	stamped := notationRoot("stamped", ca, acmeIdentity)
	stamped.Notation.TSAPEM = append(append([]byte{}, tsa.RootPEM...), fast.RootPEM...)
	v := newVerifier(t, stamped, notationRoot("plain", ca, acmeIdentity))
	const (
		expired   = "certificate expired or not yet valid: verification time is after certificate"
		noStamp   = "no timestamp countersignature, which the root's tsa store requires"
		untrusted = "timestamp countersignature is not signed by a trusted timestamp authority"
		late      = "certificate expired or not yet valid at the timestamp: timestamp can be after certificate"
	)
	tests := []struct {
		name           string
		img            image
		stamped, plain string // "" verifies; else a part of the reason
	}{
		{name: "expired certificate, trusted timestamp", img: expiredStamped, stamped: "", plain: expired},
		{name: "expired certificate, no timestamp", img: expiredBare, stamped: noStamp, plain: expired},
		{name: "expired certificate, untrusted TSA", img: expiredRogue, stamped: untrusted, plain: expired},
		{name: "valid certificate, trusted timestamp", img: validStamped, stamped: "", plain: ""},
		{name: "valid certificate, no timestamp", img: validBare, stamped: noStamp, plain: ""},
		{name: "timestamp after the certificate's end", img: stampedLate, stamped: late, plain: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Signatures(context.Background(), tt.img.target, []string{"stamped", "plain"})
			if err != nil {
				t.Fatal(err)
			}
			for root, want := range map[string]string{"stamped": tt.stamped, "plain": tt.plain} {
				r := got[root]
				t.Logf("%s: %+v", root, r)
				switch {
				case want == "" && (!r.Verified || r.Format != verifier.FormatNotation):
					t.Errorf("%s: %+v, want verified", root, r)
				case want != "" && (r.Verified || !strings.Contains(r.Reason, "notation root "+root+": "+want)):
					t.Errorf("%s: %+v, want a denial naming the root and %q", root, r, want)
				}
			}
		})
	}
}
