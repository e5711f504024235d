package cosigntest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// registryFlags let cosign talk plain HTTP to the in-process registry.
var registryFlags = []string{"--allow-insecure-registry", "--allow-http-registry"}

// KeyPair runs `cosign generate-key-pair` (cosign v2, empty password) in a
// fresh temporary directory and returns the paths of cosign.key and
// cosign.pub.
func KeyPair(t testing.TB) (privPath, pubPath string) {
	t.Helper()
	dir := t.TempDir()
	prefix := filepath.Join(dir, "cosign")
	Run(t, Binary(t), "generate-key-pair", "--output-key-prefix", prefix)
	privPath, pubPath = prefix+".key", prefix+".pub"
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("cosigntest: generate-key-pair: %v", err)
		}
	}
	return privPath, pubPath
}

// Sign runs `cosign sign --key privKey -y` on ref (best given by digest) with
// the flags an in-process HTTP registry needs. Unless extra selects a signing
// config (--signing-config, --use-signing-config) it adds --tlog-upload=false,
// so the signature is the classic sha256-<hex>.sig tag with no Rekor bundle.
func Sign(t testing.TB, bin, ref, privKey string, extra ...string) {
	t.Helper()
	args := append([]string{"sign", "--key", privKey}, signFlags(extra)...)
	Run(t, bin, append(append(args, extra...), ref)...)
}

// Attest runs `cosign attest --key privKey --type predicateType` on ref with
// predicate as the predicate file, offline like Sign. With cosign v2 this
// writes a DSSE envelope under the sha256-<hex>.att tag.
func Attest(t testing.TB, bin, ref, privKey, predicateType string, predicate []byte, extra ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "predicate.json")
	if err := os.WriteFile(path, predicate, 0o600); err != nil {
		t.Fatalf("cosigntest: write predicate: %v", err)
	}
	args := []string{"attest", "--key", privKey, "--type", predicateType, "--predicate", path}
	args = append(args, signFlags(extra)...)
	Run(t, bin, append(append(args, extra...), ref)...)
}

// SignKeyless signs ref with a certificate from the test CA, as Fulcio-based
// keyless signing would, but offline: `cosign sign --key <leaf key>
// --certificate <leaf> --certificate-chain <CA> --tlog-upload=false`. The
// signature carries the certificate and chain annotations.
func SignKeyless(t testing.TB, bin, ref string, leaf *Leaf, extra ...string) {
	t.Helper()
	Sign(t, bin, ref, leaf.KeyPath,
		append([]string{"--certificate", leaf.CertPath, "--certificate-chain", leaf.ChainPath}, extra...)...)
}

// SignBundle signs ref the way cosign 3 does by default, offline: a sigstore
// bundle (DSSE, predicate type https://sigstore.dev/cosign/sign/v1) stored as
// an OCI 1.1 referrer, or under the sha256-<hex> fallback tag on a registry
// without the referrers API. It uses a signing config without a transparency
// log (SigningConfigNoTlog) and a local trusted root so that cosign fetches
// nothing from TUF. With the cosign v2 fallback of Binary3 it adds
// --new-bundle-format.
func SignBundle(t testing.TB, bin, ref, privKey string, extra ...string) {
	t.Helper()
	Sign(t, bin, ref, privKey, append(bundleFlags(t, bin, extra), extra...)...)
}

// SignKeylessBundle is SignBundle with a certificate from ca, as keyless
// signing with cosign 3 would store it: the bundle carries the leaf
// certificate. cosign checks the leaf against ca's trusted root as it signs.
func SignKeylessBundle(t testing.TB, bin, ref string, ca *CA, leaf *Leaf, extra ...string) {
	t.Helper()
	ca.TrustedRoot(t)
	SignBundle(t, bin, ref, leaf.KeyPath, append([]string{
		// No --certificate-chain: cosign would put an X.509 chain in a v0.3
		// bundle, which v0.3 forbids and sigstore-go rejects; the trusted
		// root holds the chain.
		"--certificate", leaf.CertPath,
		"--trusted-root", ca.TrustedRootPath(),
	}, extra...)...)
}

// AttestBundle is Attest in the format of SignBundle: a sigstore bundle
// holding the DSSE attestation, stored as a referrer (or under the
// sha256-<hex> fallback tag).
func AttestBundle(t testing.TB, bin, ref, privKey, predicateType string, predicate []byte, extra ...string) {
	t.Helper()
	Attest(t, bin, ref, privKey, predicateType, predicate, append(bundleFlags(t, bin, extra), extra...)...)
}

// bundleFlags selects the offline new-bundle-format signing of SignBundle;
// an empty trusted root unless extra names one.
func bundleFlags(t testing.TB, bin string, extra []string) []string {
	t.Helper()
	flags := []string{"--signing-config", SigningConfigNoTlog(t, bin)}
	if !slices.ContainsFunc(extra, func(a string) bool { return a == "--trusted-root" || strings.HasPrefix(a, "--trusted-root=") }) {
		flags = append(flags, "--trusted-root", emptyTrustedRoot(t))
	}
	if !IsV3(bin) {
		flags = append(flags, "--new-bundle-format")
	}
	return flags
}

// SigningConfigNoTlog runs `cosign signing-config create` with no services at
// all (no Fulcio, no Rekor, no TSA) and returns the file's path: signing with
// it and a key produces a bundle with no transparency log entry.
func SigningConfigNoTlog(t testing.TB, bin string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "signing_config.json")
	Run(t, bin, "signing-config", "create", "--out", path)
	return path
}

// signFlags returns the flags every signing command gets: no prompt, plain
// HTTP to the registry, and no transparency log upload unless a signing
// config (which says so itself) is in extra.
func signFlags(extra []string) []string {
	flags := append([]string{"-y"}, registryFlags...)
	if !slices.ContainsFunc(extra, usesSigningConfig) {
		flags = append(flags, "--tlog-upload=false")
	}
	return flags
}

func usesSigningConfig(arg string) bool {
	for _, f := range []string{"--signing-config", "--use-signing-config"} {
		if arg == f || strings.HasPrefix(arg, f+"=") {
			return !strings.HasSuffix(arg, "=false")
		}
	}
	return false
}
