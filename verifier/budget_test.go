package verifier_test

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

// TestEvidenceBudget: whatever is pushed to the upstream, one Signatures or
// Attestations call reads at most the evidence budget, and what does not fit
// is invalid evidence with a reason. Not parallel: it measures the heap.
func TestEvidenceBudget(t *testing.T) {
	reg := registrytest.New(t, registrytest.WithGGCR()) // the referrers API, and quick to take large blobs
	key := newKeyPair(t)
	const repo = "team/budget"
	roots := map[string]policy.TrustRoot{"release": keyRoot(t, "release", key.pub)}
	v, err := verifier.New(roots)
	if err != nil {
		t.Fatal(err)
	}
	subject := func(img image) *layer {
		return &layer{digest: img.target.Digest, size: 1, mediaType: ociManifestType}
	}
	counted := func(img image) (verifier.Target, *atomic.Int64) {
		read := new(atomic.Int64)
		target := img.target
		target.Transport = counting{next: http.DefaultTransport, n: read}
		return target, read
	}
	hasReason := func(t *testing.T, got []string, want string) {
		t.Helper()
		if !slices.ContainsFunc(got, func(r string) bool { return strings.Contains(r, want) }) {
			t.Errorf("invalid evidence %q, want a reason with %q", got, want)
		}
	}

	t.Run("an .att of 32 layers of 8 MiB", func(t *testing.T) {
		// Each layer is within the 16 MiB bound; all of them are 256 MiB,
		// which the verifier would otherwise read and hold at once.
		img := pushImage(t, reg, repo)
		big := pushBlob(t, reg, repo, filler(8<<20, 11), dsseType)
		tag := "sha256-" + img.target.Digest.Encoded() + ".att"
		pushArtifact(t, reg, repo+":"+tag, repeat(big, 32), nil)
		target, read := counted(img)
		reg.Hits().Reset()

		var got verifier.AttestationResult
		grew := heapGrowth(t, func() {
			got, err = v.Attestations(t.Context(), target, []string{"release"})
		})
		if err != nil || len(got.Verified) != 0 {
			t.Fatalf("Attestations = %+v, %v; want none, no error", got, err)
		}
		hasReason(t, got.Invalid, "attestations of this image need more than 64 MiB of evidence: attestation artifact "+
			tag+" has 32 layers of 268435456 bytes in all")
		if n := reg.Hits().Count(http.MethodGet, registrytest.KindBlob); n != 0 {
			t.Errorf("%d blob GETs; the manifest alone should have decided", n)
		}
		if grew > 32<<20 {
			t.Errorf("heap grew by %d MiB at peak", grew>>20)
		}
		t.Logf("read %d bytes; heap grew by %d KiB at peak; %q", read.Load(), grew>>10, got.Invalid)
	})

	t.Run("the .att and bundles share one budget", func(t *testing.T) {
		// 4 layers of 12 MiB under .att (48 MiB, taken: each fits; they name
		// one blob, which is read once), then bundles of 12 MiB each: the
		// first fits, the second does not, the third is not looked at.
		img := pushImage(t, reg, repo)
		classic := pushBlob(t, reg, repo, filler(12<<20, 12), dsseType)
		pushArtifact(t, reg, repo+":sha256-"+img.target.Digest.Encoded()+".att", repeat(classic, 4), nil)
		for i := range 3 {
			b := pushBlob(t, reg, repo, filler(12<<20, byte(13+i)), bundleType)
			pushArtifact(t, reg, fmt.Sprintf("%s:bundle%d", repo, i), []layer{b}, subject(img))
		}
		target, read := counted(img)

		got, err := v.Attestations(t.Context(), target, []string{"release"})
		if err != nil || len(got.Verified) != 0 {
			t.Fatalf("Attestations = %+v, %v; want none, no error", got, err)
		}
		hasReason(t, got.Invalid, "attestations of this image need more than 64 MiB of evidence: attestation referrer ")
		hasReason(t, got.Invalid, " is 12582912 bytes, after ")
		if n := read.Load(); n > 64<<20 {
			t.Errorf("read %d bytes, more than the 64 MiB budget", n)
		} else if n < 24<<20 {
			t.Errorf("read %d bytes; want the .att's blob and one bundle read (24 MiB)", n)
		}
		t.Logf("read %d bytes; %d reasons, the last %q", read.Load(), len(got.Invalid), got.Invalid[len(got.Invalid)-1])
	})

	t.Run("signatures", func(t *testing.T) {
		// A .sig of 32 layers of 1 MiB is within every other bound; with a
		// budget of 16 MiB it is refused unread, and a signature bundle
		// still verifies the image.
		small, err := verifier.New(roots, verifier.WithEvidenceBudget(16<<20))
		if err != nil {
			t.Fatal(err)
		}
		img := pushImage(t, reg, repo)
		sig := pushBlob(t, reg, repo, filler(1<<20, 20), simpleSigningType)
		tag := "sha256-" + img.target.Digest.Encoded() + ".sig"
		pushArtifact(t, reg, repo+":"+tag, repeat(sig, 32), nil)
		want := "no signature verifies with key release: invalid signature: signatures of this image need more than 16 MiB of evidence: " +
			"signature artifact " + tag + " has 32 layers of 33554432 bytes in all"
		got, err := small.Signatures(t.Context(), img.target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		checkResults(t, got, map[string]policy.SignatureResult{"release": failed(want)})

		cosigntest.SignBundle(t, cosigntest.Binary3(t), img.ref, key.priv)
		got, err = small.Signatures(t.Context(), img.target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		checkResults(t, got, map[string]policy.SignatureResult{"release": verified(verifier.FormatBundle)})
	})
}

// TestEvidenceBudgetOption: the budget must be positive.
func TestEvidenceBudgetOption(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, -1} {
		if _, err := verifier.New(nil, verifier.WithEvidenceBudget(n)); err == nil {
			t.Errorf("WithEvidenceBudget(%d): no error", n)
		}
	}
}

func repeat(l layer, n int) []layer {
	out := make([]layer, n)
	for i := range out {
		out[i] = l
	}
	return out
}

// heapGrowth runs f and returns by how much the heap in use grew at peak,
// sampled every few milliseconds.
func heapGrowth(t *testing.T, f func()) int64 {
	t.Helper()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := before.HeapInuse
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			var s runtime.MemStats
			runtime.ReadMemStats(&s)
			peak = max(peak, s.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	<-done
	return int64(peak) - int64(before.HeapInuse)
}
