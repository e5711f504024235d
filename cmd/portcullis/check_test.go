package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

func TestCheck(t *testing.T) {
	up := registrytest.New(t)
	bin := cosigntest.Binary(t)
	priv, pub := cosigntest.KeyPair(t)
	signed := up.PushRandomImage(t, "acme/app:signed", 1, 512)
	sd, _ := signed.Digest()
	cosigntest.Sign(t, bin, up.Ref("acme/app@"+sd.String()), priv)
	up.PushRandomImage(t, "acme/app:unsigned", 1, 512)
	strict := up.PushRandomImage(t, "acme/strict:v1", 1, 512)
	strictDigest, _ := strict.Digest()
	cosigntest.Sign(t, bin, up.Ref("acme/strict@"+strictDigest.String()), priv)
	up.PushRandomImage(t, "acme/lenient:v1", 1, 512)
	idx := up.PushRandomIndex(t, "acme/multi:v1")
	id, _ := idx.Digest()
	cosigntest.Sign(t, bin, up.Ref("acme/multi@"+id.String()), priv)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	child := im.Manifests[0].Digest

	dir := t.TempDir()
	pubPEM, _ := os.ReadFile(pub)
	_ = os.WriteFile(filepath.Join(dir, "release.pub"), pubPEM, 0o600)
	pol := filepath.Join(dir, "policy.yaml")
	// strict needs a provenance attestation and a scan report too; lenient only warns.
	_ = os.WriteFile(pol, []byte("trust:\n  release: {key: release.pub}\nrules:\n"+
		"  - name: strict\n    match: {repository: acme/strict}\n    signedBy: {anyOf: [release]}\n"+
		"    attestations:\n      - predicateType: https://slsa.dev/provenance/v1\n        signedBy: {anyOf: [release]}\n"+
		"    scan: {maxSeverity: high, maxAge: 7d}\n"+
		"  - name: lenient\n    match: {repository: acme/lenient}\n    mode: warn\n    signedBy: {anyOf: [release]}\n"+
		"default:\n  signedBy: {anyOf: [release]}\n"), 0o600)
	base := []string{"check", "--upstream", up.Host() + "=" + up.URL().String(), "--policy", pol}

	tests := []struct {
		name     string
		image    string
		wantCode int
		want     []string
	}{
		{"signed by tag", up.Host() + "/acme/app:signed", 0, []string{"decision:  ALLOWED", "[pass] signature: signed by release\n",
			"  signature by release: verified (cosign-tag)", sd.String()}},
		{"signed on the default upstream", "acme/app@" + sd.String(), 0, []string{"ALLOWED"}},
		{"unsigned", "acme/app:unsigned", 1, []string{"decision:  DENIED", "[FAIL] signature: not signed by release (no signatures found)\n",
			"  signature by release: not verified (no signatures found)"}},
		// Each requirement on its line, passed or failed, in the rule's order, whatever the exit code.
		{"signed, no attestation, no report", "acme/strict:v1", 1, []string{"rule:      strict (enforce)", "decision:  DENIED",
			"  [pass] signature: signed by release\n", "  [FAIL] attestation https://slsa.dev/provenance/v1 missing\n",
			"  [FAIL] scan: no scan report\n", "report: none; max severity high, max age 7d"}},
		{"warn mode", "acme/lenient:v1", 0, []string{"decision:  ALLOWED (warn mode: would be denied)", "[FAIL] signature: not signed by release"}},
		{"signed index", "acme/multi:v1", 0, []string{"decision:  ALLOWED", "signature by release: verified", id.String()}},
		// Nothing carries over between runs, so a child and a signature are decided as a pull of them alone is: on
		// their own facts, and with the reason a pull gives when they are not admitted through an admitted image.
		{"child of a signed index, alone", "acme/multi@" + child.String(), 1, []string{"decision:  DENIED", "not signed by release"}},
		{"signature by its cosign tag, its image not admitted", "acme/app:sha256-" + sd.Hex + ".sig", 1,
			[]string{"decision:  DENIED", "not admitted as an artifact of " + sd.String() + ": that image is not admitted (pull it first)"}},
		{"unknown tag", "acme/app:nope", 1, []string{"resolve"}},
		{"upper case is not a reference", "acme/App:v1", 2, []string{"must be lowercase"}},
		{"a tag and a digest: the digest decides", up.Host() + "/acme/app:unsigned@" + sd.String(), 0, []string{"ALLOWED", sd.String()}},
		{"unknown upstream", "ghcr.io/acme/app:v1", 1, []string{"not configured"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runCLI(t, append(base, tc.image), tc.wantCode, tc.want...) })
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes a few seconds")
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"demo"}, &out, &errb); code != 0 {
		t.Fatalf("demo exit %d:\n%s%s", code, out.String(), errb.String())
	}
	for _, w := range []string{"SERVED", "DENIED", "not signed by release", "-> 403", "not part of any image admitted"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("demo output lacks %q:\n%s", w, out.String())
		}
	}
}
