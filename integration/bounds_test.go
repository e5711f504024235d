package integration

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// rawManifest pushes a manifest byte for byte.
type rawManifest struct {
	body      []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// TestOversizedSignatureArtifact: an attacker who can push to the upstream
// puts a signature artifact under the image's sha256-<hex>.sig tag whose 64
// layers all name one 32 MiB blob (within cosign's own limits of 1,000 layers
// of 128 MiB). Reading each layer's payload in full would take 2 GiB for one
// pull; the verifier refuses the artifact from its manifest, so the pull is
// denied at once, with the reason, and the heap does not grow with the blob.
func TestOversizedSignatureArtifact(t *testing.T) {
	// go-containerregistry's registry: Distribution's in-memory driver takes 10 s to take the 32 MiB blob.
	e := newEnv(t, withUpstream(registrytest.WithGGCR()),
		withPolicy(releasePolicy(""), map[string][]byte{"release.pub": pubKeyPEM(t), "other.pub": pubKeyPEM(t)}))
	const repo, layers, size = "acme/big", 64, 32 << 20
	img := e.up.PushRandomImage(t, repo+":v1", 1, 1024)
	id, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	// One 32 MiB blob, pushed once, named by every layer of the artifact.
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	start := time.Now()
	repoRef := mustRef(t, e.up.Ref(repo)).Context()
	blob := static.NewLayer(data, "application/vnd.dev.cosign.simplesigning.v1+json")
	config := static.NewLayer([]byte("{}"), types.OCIConfigJSON)
	for _, l := range []v1.Layer{blob, config} {
		if err := remote.WriteLayer(repoRef, l); err != nil {
			t.Fatal(err)
		}
	}
	data = nil
	bd, _ := blob.Digest()
	cd, _ := config.Digest()
	ld := map[string]any{
		"mediaType":   "application/vnd.dev.cosign.simplesigning.v1+json",
		"digest":      bd.String(),
		"size":        size,
		"annotations": map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQ=="},
	}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"config":        map[string]any{"mediaType": types.OCIConfigJSON, "digest": cd.String(), "size": 2},
		"layers":        repeatDesc(ld, layers),
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sigTag := "sha256-" + id.Hex + ".sig"
	if err := remote.Put(mustRef(t, e.up.Ref(repo+":"+sigTag)), rawManifest{body: body, mediaType: types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed a %d-layer artifact of one %d MiB blob in %s", layers, size>>20, time.Since(start).Round(time.Millisecond))

	runtime.GC()
	hwmBefore := vmHWM(t)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := before.HeapInuse
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // sample the heap while the proxy decides
		defer close(done)
		for {
			var s runtime.MemStats
			runtime.ReadMemStats(&s)
			peak = max(peak, s.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start = time.Now()
	msg := denial(t, e, "/v2/"+repo+"/manifests/v1")
	took := time.Since(start)
	close(stop)
	<-done
	grew := int64(peak) - int64(before.HeapInuse)
	t.Logf("denied in %s; heap in use grew by %d MiB at peak; VmHWM %d MiB before, %d MiB after",
		took.Round(time.Millisecond), grew>>20, hwmBefore>>10, vmHWM(t)>>10)
	want := "signature artifact " + sigTag + " has 64 layers, more than 32"
	mustContain(t, "denial", msg, id.String(), "not signed by release", want)
	resp, _ := e.get(t, http.MethodHead, "/v2/"+repo+"/manifests/v1")
	mustContain(t, "HEAD Warning", resp.Header.Get("Warning"), want)
	if took > 5*time.Second {
		t.Errorf("the decision took %s", took)
	}
	if grew > 128<<20 {
		t.Errorf("heap grew by %d MiB deciding on a %d x %d MiB signature artifact", grew>>20, layers, size>>20)
	}
}

func repeatDesc(d map[string]any, n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// pubKeyPEM returns a fresh ECDSA public key, PEM encoded: a trust root that
// nothing in the test is signed with.
func pubKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// vmHWM returns the process's peak resident set size in KiB (/proc/self/status VmHWM), 0 where there is none.
func vmHWM(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
				return kb
			}
		}
	}
	return 0
}

// TestInvalidAttestationDenial: an attacker who can push to the upstream puts
// an attestation artifact under the image's sha256-<hex>.att tag that the
// verifier refuses (a layer past the 16 MiB bound; 32 layers of 8 MiB, each
// within it but 256 MiB in all, past the 64 MiB evidence budget). The image
// is signed; the denial says the attestation is missing and why the evidence
// that might have held it did not count.
func TestInvalidAttestationDenial(t *testing.T) {
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	const slsa = "https://slsa.dev/provenance/v1"
	pol := releasePolicy("") + "  attestations:\n    - predicateType: " + slsa + "\n      signedBy: {anyOf: [release]}\n"
	e := newEnv(t, withUpstream(registrytest.WithGGCR()), // quick to take large blobs
		withPolicy(pol, map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": pubKeyPEM(t)}))

	tests := []struct {
		name         string
		size, layers int
		want         string // after "invalid evidence: "; %s is the .att tag, %b the blob's digest
	}{
		{name: "a layer past the bound", size: 32 << 20, layers: 1,
			want: "attestation artifact %s layer %b is 33554432 bytes, more than 16 MiB"},
		{name: "past the evidence budget", size: 8 << 20, layers: 32,
			want: "attestations of this image need more than 64 MiB of evidence: attestation artifact %s has 32 layers of 268435456 bytes in all"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("acme/att%d", i)
			img := e.up.PushRandomImage(t, repo+":v1", 1, 1024)
			id, _ := img.Digest()
			cosigntest.Sign(t, bin, e.up.Ref(repo+"@"+id.String()), release.priv)

			data := make([]byte, tc.size)
			for j := range data {
				data[j] = byte(j*7 + i)
			}
			blob := static.NewLayer(data, "application/vnd.dsse.envelope.v1+json")
			config := static.NewLayer([]byte("{}"), types.OCIConfigJSON)
			repoRef := mustRef(t, e.up.Ref(repo)).Context()
			for _, l := range []v1.Layer{blob, config} {
				if err := remote.WriteLayer(repoRef, l); err != nil {
					t.Fatal(err)
				}
			}
			bd, _ := blob.Digest()
			cd, _ := config.Digest()
			ld := map[string]any{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": bd.String(), "size": tc.size}
			body, err := json.Marshal(map[string]any{
				"schemaVersion": 2,
				"mediaType":     types.OCIManifestSchema1,
				"config":        map[string]any{"mediaType": types.OCIConfigJSON, "digest": cd.String(), "size": 2},
				"layers":        repeatDesc(ld, tc.layers),
			})
			if err != nil {
				t.Fatal(err)
			}
			attTag := "sha256-" + id.Hex + ".att"
			if err := remote.Put(mustRef(t, e.up.Ref(repo+":"+attTag)), rawManifest{body: body, mediaType: types.OCIManifestSchema1}); err != nil {
				t.Fatal(err)
			}

			msg := denial(t, e, "/v2/"+repo+"/manifests/v1")
			want := "attestation " + slsa + " missing (invalid evidence: " +
				strings.NewReplacer("%s", attTag, "%b", bd.String()).Replace(tc.want)
			mustContain(t, "denial", msg, id.String(), want)
			if strings.Contains(msg, "not signed") {
				t.Errorf("denial %q: the image is signed", msg)
			}
			t.Log(msg)
		})
	}
}
