package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/strictyaml"
	"github.com/portcullis/portcullis/policy"
)

// Resolver turns an image reference into the subject a pull of it is decided on, routed as a pull without ns=
// routes it: a host-like first component names a configured upstream, anything else is on the default upstream
// (`portcullis check` reads IMAGE the same way). cmd/portcullis implements it on the upstream clients.
//
// Its errors wrap ErrBadImage for a reference that does not parse or names no configured upstream (400), and
// ErrImageUnknown for a tag or manifest the upstream does not have (404); anything else means the upstream could
// not be asked (502).
type Resolver interface {
	// Resolve asks the upstream: a tag becomes its digest now, and the manifest is fetched and verified.
	Resolve(ctx context.Context, ref string) (admission.Subject, error)
	// Name is Resolve without the manifest: a reference by digest is not sent upstream at all, a tag is
	// resolved to its digest.
	Name(ctx context.Context, ref string) (admission.Subject, error)
	// Repository names a repository (no tag, no digest) as a pull routes it: the upstream and the repository
	// there. Its error wraps ErrBadImage.
	Repository(name string) (upstream, repo string, err error)
}

// Resolver errors.
var (
	ErrBadImage     = errors.New("bad image reference")
	ErrImageUnknown = errors.New("no such image upstream")
)

// Explainer says why an image is served or refused without changing anything. *admission.Gate implements it.
type Explainer interface {
	Explain(ctx context.Context, s admission.Subject) (admission.Explanation, error)
}

var _ Explainer = (*admission.Gate)(nil)

// WithExplain serves GET /admin/v1/explain?image=REF (read role) with e, resolving REF with r. Default: not served.
func WithExplain(e Explainer, r Resolver) Option {
	return func(a *API) error {
		if e == nil || r == nil {
			return errors.New("admin: explain needs an explainer and a resolver")
		}
		a.explainer, a.resolver = e, r
		if tt, ok := e.(TagTrust); ok {
			a.tags = tt
		}
		return nil
	}
}

// maxListedFindings caps each list of findings in an answer; its total is given beside it.
const maxListedFindings = 50

// explainAnswer is the answer of GET /admin/v1/explain.
type explainAnswer struct {
	Image      string        `json:"image"`
	Upstream   string        `json:"upstream"`
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType,omitempty"`
	Policy     string        `json:"policy"`
	// Allowed, Rule, Mode, Message and Warnings are what a pull gets now; DecidedBy says how.
	Allowed    bool                 `json:"allowed"`
	Rule       string               `json:"rule"`
	Mode       string               `json:"mode"`
	Message    string               `json:"message"`
	Warnings   []string             `json:"warnings,omitempty"`
	DecidedBy  string               `json:"decidedBy"`
	List       *admission.ListEntry `json:"list"`
	Cached     *cachedAnswer        `json:"cached"`
	Through    *throughAnswer       `json:"through"`
	Evaluation evaluationAnswer     `json:"evaluation"`
}

type cachedAnswer struct {
	Allowed bool      `json:"allowed"`
	Rule    string    `json:"rule"`
	Mode    string    `json:"mode"`
	Message string    `json:"message"`
	Expires time.Time `json:"expires"`
	Holds   bool      `json:"holds"`
}

type throughAnswer struct {
	How string `json:"how"`
	Via string `json:"via"`
}

// evaluationAnswer is a rule's evaluation as the API shows it.
type evaluationAnswer struct {
	decisionAnswer
	// Error is why the evidence could not be gathered; the rule's onError made the decision.
	Error           string              `json:"error,omitempty"`
	Attestations    []attestationAnswer `json:"attestations"`
	InvalidEvidence []string            `json:"invalidEvidence,omitempty"`
}

type attestationAnswer struct {
	PredicateType string   `json:"predicateType"`
	SignedBy      []string `json:"signedBy"`
}

// decisionAnswer is a policy.Decision as the API shows it.
type decisionAnswer struct {
	Allowed      bool          `json:"allowed"`
	Rule         string        `json:"rule"`
	Mode         string        `json:"mode"`
	Message      string        `json:"message"`
	Failures     []string      `json:"failures"`
	Notes        []string      `json:"notes"`
	Requirements []checkAnswer `json:"requirements"`
}

type checkAnswer struct {
	Requirement string            `json:"requirement"`
	Passed      bool              `json:"passed"`
	Detail      string            `json:"detail"`
	Signatures  []signatureAnswer `json:"signatures,omitempty"`
	Scan        *scanAnswer       `json:"scan,omitempty"`
}

type signatureAnswer struct {
	Root     string `json:"root"`
	Verified bool   `json:"verified"`
	Format   string `json:"format,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

type scanAnswer struct {
	MaxSeverity  policy.Severity         `json:"maxSeverity"`
	MaxAge       string                  `json:"maxAge,omitempty"`
	Report       *reportAnswer           `json:"report"`
	BySeverity   map[policy.Severity]int `json:"bySeverity,omitempty"`
	Counted      []findingAnswer         `json:"counted"`
	CountedTotal int                     `json:"countedTotal"`
	Waived       []findingAnswer         `json:"waived"`
	WaivedTotal  int                     `json:"waivedTotal"`
}

type reportAnswer struct {
	Source         policy.Source `json:"source"`
	Scanner        string        `json:"scanner"`
	ScannerVersion string        `json:"scannerVersion,omitempty"`
	ScanTime       time.Time     `json:"scanTime"`
	DBTime         time.Time     `json:"dbTime,omitzero"`
}

type findingAnswer struct {
	ID               string          `json:"id"`
	Severity         policy.Severity `json:"severity"`
	Package          string          `json:"package"`
	InstalledVersion string          `json:"installedVersion,omitempty"`
	FixedVersion     string          `json:"fixedVersion,omitempty"`
	// WaivedBy and Detail say, for a waived finding, what waived it: vex, allowlist or unfixed.
	WaivedBy string `json:"waivedBy,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

func (a *API) explain(w http.ResponseWriter, r *http.Request, _ Principal) {
	ref := r.URL.Query().Get("image")
	if ref == "" {
		adminError(w, http.StatusBadRequest, "PARAM_INVALID", "image: required, e.g. ?image=ghcr.io/acme/app:v1 or ?image=ghcr.io/acme/app@sha256:...")
		return
	}
	v := a.trustedTag(r.Context(), ref)
	if v.denied != nil {
		a.explainDenied(w, v)
		return
	}
	s, ok := a.resolveTrusted(w, r, ref, v, true)
	if !ok {
		return
	}
	x, err := a.explainer.Explain(r.Context(), s)
	switch {
	case errors.Is(err, admission.ErrOverloaded):
		w.Header().Set("Retry-After", "5")
		adminError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", err.Error())
		return
	case err != nil:
		adminError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "could not evaluate: "+err.Error())
		return
	}
	ans := explainAnswer{Image: s.Image(), Upstream: s.Upstream, Repository: s.Repository, Tag: s.Tag, Digest: s.Digest, MediaType: s.MediaType,
		Policy: x.Policy, Allowed: x.Pull.Allowed, Rule: x.Pull.Rule, Mode: x.Pull.Mode, Message: x.Pull.Reason, Warnings: x.Pull.Warnings,
		DecidedBy: x.From, List: x.List, Evaluation: evaluationOf(x.Evaluation)}
	if c := x.Cached; c != nil {
		ans.Cached = &cachedAnswer{Allowed: c.Allowed, Rule: c.Rule, Mode: c.Mode, Message: c.Reason, Expires: c.Expires, Holds: c.Holds}
	}
	if x.How != "" {
		ans.Through = &throughAnswer{How: x.How, Via: x.Via}
	}
	writeAdminJSON(w, http.StatusOK, ans)
}

// resolveTrusted is resolve of the reference trust data names for ref's tag (v.ref, keeping the tag), or of ref
// itself when no rule has trust data decide its tag.
func (a *API) resolveTrusted(w http.ResponseWriter, r *http.Request, ref string, v tagVerdict, manifest bool) (admission.Subject, bool) {
	if v.ref == "" {
		return a.resolve(w, r, ref, manifest)
	}
	s, ok := a.resolve(w, r, v.ref, manifest)
	s.Tag = v.tag
	return s, ok
}

// resolve resolves ref (with its manifest when manifest is set), answering the error itself when it cannot.
func (a *API) resolve(w http.ResponseWriter, r *http.Request, ref string, manifest bool) (admission.Subject, bool) {
	resolve := a.resolver.Name
	if manifest {
		resolve = a.resolver.Resolve
	}
	s, err := resolve(r.Context(), ref)
	switch {
	case err == nil:
		return s, true
	case errors.Is(err, ErrBadImage):
		adminError(w, http.StatusBadRequest, "IMAGE_INVALID", err.Error())
	case errors.Is(err, ErrImageUnknown):
		adminError(w, http.StatusNotFound, "IMAGE_UNKNOWN", err.Error())
	default:
		adminError(w, http.StatusBadGateway, "UPSTREAM_UNAVAILABLE", fmt.Sprintf("could not resolve %s: %v", ref, err))
	}
	return admission.Subject{}, false
}

func evaluationOf(e admission.Evaluation) evaluationAnswer {
	ans := evaluationAnswer{decisionAnswer: decisionOf(e.Decision), Attestations: []attestationAnswer{}, InvalidEvidence: e.Facts.InvalidAttestations}
	if e.Err != nil {
		ans.Error = e.Err.Error()
	}
	for _, at := range e.Facts.Attestations {
		ans.Attestations = append(ans.Attestations, attestationAnswer{PredicateType: at.PredicateType, SignedBy: at.SignedBy})
	}
	return ans
}

func decisionOf(d policy.Decision) decisionAnswer {
	ans := decisionAnswer{Allowed: d.Allowed, Rule: d.Rule, Mode: string(d.Mode), Message: d.Message,
		Failures: nonNil(d.Failures), Notes: nonNil(d.Notes), Requirements: []checkAnswer{}}
	for _, c := range d.Checks {
		ca := checkAnswer{Requirement: c.Requirement, Passed: c.Passed, Detail: c.Detail}
		for _, sig := range c.Signatures {
			ca.Signatures = append(ca.Signatures, signatureAnswer{Root: sig.Root, Verified: sig.Verified, Format: sig.Format, Reason: sig.Reason})
		}
		if sc := c.Scan; sc != nil {
			sa := &scanAnswer{MaxSeverity: sc.MaxSeverity, BySeverity: sc.BySeverity, Counted: []findingAnswer{}, Waived: []findingAnswer{},
				CountedTotal: len(sc.Counted), WaivedTotal: len(sc.Waived)}
			if sc.MaxAge > 0 {
				sa.MaxAge = strictyaml.FormatDuration(sc.MaxAge)
			}
			if rep := sc.Report; rep != nil {
				sa.Report = &reportAnswer{Source: rep.Source, Scanner: rep.Scanner, ScannerVersion: rep.ScannerVersion, ScanTime: rep.ScanTime, DBTime: rep.DBTime}
			}
			for _, f := range sc.Counted[:min(len(sc.Counted), maxListedFindings)] {
				sa.Counted = append(sa.Counted, findingOf(f))
			}
			for _, wv := range sc.Waived[:min(len(sc.Waived), maxListedFindings)] {
				fa := findingOf(wv.Finding)
				fa.WaivedBy, fa.Detail = wv.By, wv.Detail
				sa.Waived = append(sa.Waived, fa)
			}
			ca.Scan = sa
		}
		ans.Requirements = append(ans.Requirements, ca)
	}
	return ans
}

func findingOf(f policy.Finding) findingAnswer {
	return findingAnswer{ID: f.ID, Severity: f.Severity, Package: f.Package, InstalledVersion: f.InstalledVersion, FixedVersion: f.FixedVersion}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
