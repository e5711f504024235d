// Package admission decides whether an image may be served: what the gate knows, how it decides, and what a
// decision lets through.
//
// It owns the Subject a decision is about and the Verdict the proxy acts on; the Gate, which matches the
// policy rule, gathers evidence (signatures, attestations, scan reports: evidence.go, through the verifier),
// evaluates the rule (policy.Rule.Evaluate, pure) and caches the verdict by policy hash, digest and facts epoch;
// the grants an admission makes (an image's blobs, an index's children, an image's artifacts) and the anchors
// they rest on (grants.go); the reports and VEX posted for a digest (reports.go); the scanner's short-lived pull
// credentials (scancred.go); and the refresher. Every key it keeps in the shared KV is built in keys.go, where
// the key space is written down. For operators it explains a decision without making one (explain.go), forgets
// cached decisions (forget.go), keeps a log of the images pulled (pulls.go), reloads the policy file while serving
// and on every replica (policyfile.go: the gate's policy, evidence and key space swap together), and replays recent
// pulls under a candidate policy (preview.go).
//
// It must never admit a manifest for its name or because a list names it (an artifact is admitted by its shape
// and its admitted subject only), never reuse a decision made on other facts than those now known (the epoch),
// and never turn "could not decide" into an admission unless a rule says onError: allow. Explaining and previewing
// must never change what a pull sees. It speaks no HTTP to clients: the proxy and the admin API are its callers.
package admission
