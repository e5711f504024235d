package verifier

import (
	"fmt"
	"sync/atomic"
)

// DefaultEvidenceBudget is the default of WithEvidenceBudget: 64 MiB.
const DefaultEvidenceBudget = 64 << 20

// budget is what one kind of evidence (signatures or attestations) of one
// image may read in one look, in bytes: manifests, referrers indexes, layers
// and bundles together. The per-artifact bounds alone still let an image pin
// 32 layers of 16 MiB under .att and as much again in bundles; the budget
// bounds the whole.
//
// A layer or bundle is reserved at its declared size before it is fetched,
// so that evidence that cannot fit is refused unread; a manifest or index,
// read through its 4 MiB cap, is counted once read. What one kind uses of a
// read the other kind shares (the referrers index, a bundle) counts against
// each, as if each had read it alone. Going over is invalid evidence (a
// *boundError with budget set).
type budget struct {
	kind  string // "signatures" or "attestations", for reasons
	limit int64
	used  atomic.Int64 // atomic: the reads of one look run concurrently
}

func newBudget(kind string, limit int64) *budget {
	return &budget{kind: kind, limit: limit}
}

// take counts n bytes of content that what declares or is (e.g. "attestation
// artifact sha256-<hex>.att has 32 layers of 268435456 bytes in all"), or
// refuses it, counting nothing, when it does not fit in what is left.
func (b *budget) take(n int64, what string) error {
	for {
		used := b.used.Load()
		if n > b.limit-used {
			return b.exceeded(what)
		}
		if b.used.CompareAndSwap(used, used+n) {
			return nil
		}
	}
}

// exceeded says that the evidence needs more than the budget, and why.
func (b *budget) exceeded(why string) error {
	msg := fmt.Sprintf("%s of this image need more than %s of evidence: %s", b.kind, bytesString(b.limit), why)
	if used := b.used.Load(); used > 0 {
		msg += fmt.Sprintf(", after %d bytes read", used)
	}
	return &boundError{msg: msg, budget: true}
}

// isBudget reports whether err is the budget running out: nothing more of
// the image's evidence can be read in this call.
func isBudget(err error) bool {
	be := asBound(err)
	return be != nil && be.budget
}
