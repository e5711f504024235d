package admission

import (
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// The key space admission uses in the shared KV. Every key it reads or writes is built by one function below; no
// call site concatenates a key. A replica's view of these keys is the fleet's view (Redis behind a local tier),
// and everything here may be lost at any time without changing a decision, except that a lost report or VEX
// must be posted again.
//
//	key                                           value                   TTL                      written by                read by
//	decision/<policy>/<upstream>/<repo>@<d>#<e>   cachedVerdict JSON      1h allowed, 1m denied,   Gate.evaluate,            Gate.Admit, Admitted, Refresh,
//	                                                                      never past the report's  decideChildScan           anchorHolds
//	                                                                      freshness
//	blob/<policy>/<upstream>/<repo>@<d>           grantSet JSON           2h (twice the allow TTL) recordContents            AllowBlob, ensureContents
//	child/<policy>/<upstream>/<repo>@<d>          grantSet JSON           2h                       recordContents            viaParent, Admitted
//	lastgood/<policy>/<upstream>/<repo>:<tag>     digest                  30 days                  Gate.evaluate             LastGood
//	epoch/<d>                                     base-36 nanoseconds     30 days                  Reports (every Put),      Gate (every decision and anchor)
//	                                                                                               Gate.Forget
//	report/<source>/<d>                           policy.ScanReport JSON  30 days                  Reports.Put (admin, scan) Reports.Get (evidence)
//	vex/<d>                                       vexRecord JSON          30 days                  Reports.PutVEX (admin)    Reports.VEX (evidence)
//	scancred/<token>                              scanGrant JSON          the credential's life    ScanCredentials.Mint      ScanCredentials
//	scancred-manifest/<token>/<d>                 "1"                     the credential's life    AllowManifest             AllowManifest
//	scancred-blob/<token>/<d>                     "1"                     the credential's life    AllowManifest             AllowBlob
//	lease/decide/<policy>/<upstream>/<repo>@<d>   random token            the decision's deadline  decideOnce (cache.Leaser) decideOnce on other replicas
//	lease/vex/<d>                                 random token            5s (released at once)    Reports.PutVEX            Reports.PutVEX on other replicas
//	lease/policies                                random token            1s (released at once)    sharePolicies             sharePolicies on other replicas
//	policies                                      JSON list of <policy>   30 days                  NewGate, SetPolicy        PriorGrants
//
// <policy> is the first 16 hex digits of the policy hash, so a new policy starts from an empty cache and no old
// decision or grant applies under it (a blob granted under the policies before it only names the manifests to decide
// again under it: priors.go). <d> is a digest, <e> the digest's facts epoch ("0" before any report, "?"
// while it cannot be read). Reports, VEX and epochs are policy-independent facts about a digest; credentials are
// per token. The proxy's own keys, tag/<upstream>/<repo>:<tag> (a tag's resolution) and held/<upstream>/<repo>@<d> (the
// repository was seen to hold manifest d), are built in proxy/tags.go and proxy/held.go.
// Besides the KV, the gate appends to two journals: "audit" (audit.go) and "pulls" (pulls.go, the images decided
// for pulls, read by previews and by forgetting a repository's decisions).

// TieredOptions configure a KV with a local tier in front of the fleet's shared one (cache.Tiered, as serve wires it
// on Redis) for the keys admission writes: a digest's facts epoch and the list of recent policies are announced on
// bus when they change, so every replica drops its copy at once; the facts themselves (reports, VEX) and that list
// are read from the shared tier every time (sharedFirstKeyPrefixes).
func TieredOptions(bus cache.Bus) []cache.TieredOption {
	return []cache.TieredOption{
		cache.WithInvalidation(bus, epochKeyPrefix, policyHistoryKey()),
		cache.WithSharedFirst(sharedFirstKeyPrefixes()...),
	}
}

// sharedFirstKeyPrefixes are the prefixes of the keys read from the shared tier every time: the facts posted about a
// digest (reports, VEX), because a copy kept locally would outlive another replica's post, whose new facts epoch
// makes this replica decide again at once, on the old facts; and the fleet's list of recent policies, which a reload
// adds to under a lease (sharePolicies).
func sharedFirstKeyPrefixes() []string { return []string{"report/", "vex/", policyHistoryKey()} }

// policyNS is the policy part of the policy-scoped keys.
func policyNS(pol *policy.Policy) string { return pol.Hash()[:16] }

func decisionKey(ns, upstream, repo string, d digest.Digest, epoch string) string {
	return "decision/" + ns + "/" + upstream + "/" + repo + "@" + d.String() + "#" + epoch
}

// grantKey is a blob or child grant set: kind is grantBlob or grantChild.
func grantKey(kind, ns, upstream, repo string, item digest.Digest) string {
	return kind + "/" + ns + "/" + upstream + "/" + repo + "@" + item.String()
}

// decideLeaseName names the fleet-wide lease of one evaluation (the Leaser puts it under lease/).
func decideLeaseName(ns, upstream, repo string, d digest.Digest) string {
	return "decide/" + ns + "/" + upstream + "/" + repo + "@" + d.String()
}

func lastGoodKey(ns, upstream, repo, tag string) string {
	return "lastgood/" + ns + "/" + upstream + "/" + repo + ":" + tag
}

// policyHistoryKey is the fleet's list of recent policies (priors.go).
func policyHistoryKey() string { return "policies" }

// policyHistoryLeaseName names the fleet-wide lease of the list of recent policies while a reload adds to it.
func policyHistoryLeaseName() string { return "policies" }

// epochKeyPrefix starts every epochKey.
const epochKeyPrefix = "epoch/"

func epochKey(d digest.Digest) string { return epochKeyPrefix + d.String() }

func reportKey(source policy.Source, d digest.Digest) string {
	return "report/" + string(source) + "/" + d.String()
}

func vexStatementsKey(d digest.Digest) string { return "vex/" + d.String() }

// vexLeaseName names the fleet-wide lease of one digest's VEX statements while a post adds to them.
func vexLeaseName(d digest.Digest) string { return "vex/" + d.String() }

func scanCredentialKey(token string) string { return "scancred/" + token }

func scanManifestGrantKey(token string, d digest.Digest) string {
	return "scancred-manifest/" + token + "/" + d.String()
}

func scanBlobGrantKey(token string, d digest.Digest) string {
	return "scancred-blob/" + token + "/" + d.String()
}

// imageRef names an image in messages and logs: upstream/repository@digest, whole, so a person can paste it.
func imageRef(upstream, repo string, d digest.Digest) string {
	return upstream + "/" + repo + "@" + d.String()
}

// Image names the subject: upstream/repository@digest.
func (s Subject) Image() string { return imageRef(s.Upstream, s.Repository, s.Digest) }
