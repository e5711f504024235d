package verifier

import (
	"fmt"
	"sync/atomic"
)

// DefaultEvidenceBudget is the default of WithEvidenceBudget: 64 MiB.
const DefaultEvidenceBudget = 64 << 20

// budget is what one look at one image's evidence (one Signatures or
// Attestations call) may read, in bytes, of every successful response body
// together: manifests, referrers indexes, layers, bundles and tokens. The
// per-artifact bounds alone still let an image pin 32 layers of 16 MiB under
// .att and as much again in bundles; the budget bounds the whole.
//
// The session's transport counts every byte read against it, whatever
// library reads; before a layer or bundle is fetched its declared size is
// checked against what is left, so that evidence that cannot fit is refused
// unread. Going over is invalid evidence (a *boundError with budget set).
type budget struct {
	kind  string // "signatures" or "attestations", for reasons
	limit int64
	used  atomic.Int64 // atomic: bodies may in principle be read concurrently
}

func newBudget(kind string, limit int64) *budget {
	return &budget{kind: kind, limit: limit}
}

// left returns how many bytes may still be read (at most limit, maybe 0).
func (b *budget) left() int64 { return max(b.limit-b.used.Load(), 0) }

// spend counts n bytes read.
func (b *budget) spend(n int) { b.used.Add(int64(n)) }

// fit refuses content of n bytes, which what declares (e.g. "attestation
// artifact sha256-<hex>.att has 32 layers of 268435456 bytes in all"), when
// it does not fit in what is left.
func (b *budget) fit(n int64, what string) error {
	if n <= b.left() {
		return nil
	}
	return b.exceeded(what)
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
