package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Rule is one compiled rule: which repositories it matches, what evidence it requires and
// what failing means. Rules are immutable and safe for concurrent use.
type Rule struct {
	name         string
	index        int   // position in the file; -1 for the default rule
	upstream     *glob // nil for the default rule
	repository   *glob // nil for the default rule
	mode         Mode
	signedBy     Signers
	keepLastGood bool
	onError      OnError
	attestations []*attestationRule
	scan         *scanRule
	global       []allowEntry        // the policy-wide CVE allowlist
	module       *ruleModule         // nil: no Rego module
	identities   map[string]Identity // trust root identities for the module's input; shared, read only
	// unmatched marks the stand-in default rule of a policy without a default section: it denies.
	unmatched bool
}

// attestationRule is a compiled attestation requirement.
type attestationRule struct {
	predicateType string
	signedBy      Signers
	conditions    []*condition
}

// Name returns the rule's name; "default" for the default rule.
func (r *Rule) Name() string { return r.name }

// Pattern returns the rule's upstream and repository patterns, with their defaults ("*" and
// "**") filled in; both "" for the default rule.
func (r *Rule) Pattern() (upstream, repository string) {
	if r.upstream == nil {
		return "", ""
	}
	return r.upstream.pattern, r.repository.pattern
}

// Mode returns what the rule does with a failed requirement. Default enforce.
func (r *Rule) Mode() Mode { return r.mode }

// KeepLastGood reports whether a tag that moves to a failing digest keeps serving the last
// admitted digest. Default false.
func (r *Rule) KeepLastGood() bool { return r.keepLastGood }

// OnError returns what an error while gathering facts means. Default deny.
func (r *Rule) OnError() OnError { return r.onError }

// Requirements returns a copy of the evidence the rule needs, for the verifier to gather.
func (r *Rule) Requirements() Requirements {
	req := Requirements{SignedBy: r.signedBy.clone()}
	for _, a := range r.attestations {
		req.Attestations = append(req.Attestations, AttestationRequirement{
			PredicateType: a.predicateType,
			SignedBy:      a.signedBy.clone(),
		})
	}
	if r.scan != nil {
		s := r.scan.req
		s.SignedBy = s.SignedBy.clone()
		s.Sources = slices.Clone(s.Sources)
		req.Scan = &s
	}
	return req
}

// Evaluate decides on an image from the facts the verifier gathered: the signature, each
// attestation and the scan gate, then the rule's Rego module over the same facts (Input). It is
// a pure function of the rule and f: it reads no clock (f.Now is the time) and does no I/O; a
// module's evaluator is held to the same (package policy/rego disables every builtin that does
// I/O or reads the clock), and bounded in time, an overrun being the rule's onError.
func (r *Rule) Evaluate(f Facts) Decision {
	e := &evaluation{}
	if r.unmatched {
		from := e.mark()
		e.fail("no rule matches this repository and the policy has no default: section")
		e.done(Check{Requirement: "rule"}, from)
		return r.decide(f.Image, e)
	}
	r.checkSignatures(e, f)
	for _, a := range r.attestations {
		from := e.mark()
		a.check(e, f)
		e.done(Check{Requirement: "attestation " + a.predicateType}, from)
	}
	if r.scan != nil {
		r.checkScan(e, f)
	}
	if r.module != nil {
		r.checkModule(e, f)
	}
	return r.decide(f.Image, e)
}

// Module returns the rule's Rego module (rego: or regoFile:), and false when it has none.
func (r *Rule) Module() (Module, bool) {
	if r.module == nil {
		return Module{}, false
	}
	return r.module.Module, true
}

// EvaluateScan decides on an image from its scan facts alone: the rule's scan gate, for a manifest whose
// signatures and attestations were established through the index that lists it (a platform child with reports of
// its own). A rule without a scan gate admits. The rule's Rego module is not run: it decided on the index, with the
// signatures and attestations this manifest has only through it. Like Evaluate it is pure.
func (r *Rule) EvaluateScan(f Facts) Decision {
	e := &evaluation{}
	if r.scan != nil {
		r.checkScan(e, f)
	}
	return r.decide(f.Image, e)
}

// ErrorDecision is the decision when the facts could not be gathered. By default (onError:
// deny) err is a failure, so enforce mode denies; with onError: allow the image is admitted
// and err is a note. Warn and audit modes admit either way, as they do in Evaluate.
func (r *Rule) ErrorDecision(image string, err error) Decision {
	msg := "could not decide: unknown error"
	if err != nil {
		msg = "could not decide: " + oneLine(err.Error())
	}
	if r.onError != OnErrorAllow {
		return r.decide(image, &evaluation{failures: []string{msg}, checks: []Check{{Requirement: "evidence", Detail: msg}}})
	}
	notes := []string{msg, "admitted despite the error (onError: allow)"}
	return Decision{
		Allowed: true,
		Mode:    r.mode,
		Rule:    r.name,
		Notes:   notes,
		Message: fmt.Sprintf("portcullis: %s admitted by rule %q despite an error (onError: allow): %s",
			imageName(image), r.name, msg),
		Checks: []Check{{Requirement: "evidence", Detail: strings.Join(notes, "; ")}},
	}
}

// evaluation accumulates an Evaluate's failures, notes and checks.
type evaluation struct {
	failures []string
	notes    []string
	checks   []Check
}

// mark is where a requirement's failures and notes start, for done.
type mark struct{ failures, notes int }

func (e *evaluation) mark() mark { return mark{len(e.failures), len(e.notes)} }

// done records c as a check whose failures and notes are those added since from: it passed when
// there are no failures, and its Detail joins the failures, or else the notes.
func (e *evaluation) done(c Check, from mark) {
	fails, notes := e.failures[from.failures:], e.notes[from.notes:]
	c.Passed = len(fails) == 0
	if c.Passed {
		c.Detail = strings.Join(notes, "; ")
	} else {
		c.Detail = strings.Join(fails, "; ")
	}
	e.checks = append(e.checks, c)
}

func (e *evaluation) fail(format string, args ...any) {
	e.failures = append(e.failures, oneLine(fmt.Sprintf(format, args...)))
}

func (e *evaluation) note(format string, args ...any) {
	e.notes = append(e.notes, oneLine(fmt.Sprintf(format, args...)))
}

// checkSignatures checks the image signature requirement.
func (r *Rule) checkSignatures(e *evaluation, f Facts) {
	s := r.signedBy
	if s.IsZero() {
		return
	}
	from := e.mark()
	c := Check{Requirement: "signature"}
	defer func() { e.done(c, from) }()
	verified := func(root string) bool { return f.Signatures[root].Verified }
	var ok, why []string
	for _, root := range s.Roots() {
		res := f.Signatures[root]
		if verified(root) {
			ok = append(ok, root)
		} else {
			why = append(why, root+": "+signatureReason(f.Signatures, root))
			res.Reason = signatureReason(f.Signatures, root)
		}
		c.Signatures = append(c.Signatures, RootSignature{Root: root, SignatureResult: res})
	}
	if len(ok) > 0 {
		e.note("signed by %s", strings.Join(ok, ", "))
	}
	switch {
	case s.satisfiedBy(verified):
	case len(s.AllOf) > 0:
		for _, root := range s.AllOf {
			if !verified(root) {
				e.fail("not signed by %s (%s)", root, signatureReason(f.Signatures, root))
			}
		}
	case len(s.AnyOf) == 1:
		e.fail("not signed by %s (%s)", s.AnyOf[0], signatureReason(f.Signatures, s.AnyOf[0]))
	default:
		e.fail("not signed by any of %s (%s)", strings.Join(s.AnyOf, ", "), strings.Join(why, "; "))
	}
}

// signatureReason says why root did not verify the image.
func signatureReason(sigs map[string]SignatureResult, root string) string {
	res, ok := sigs[root]
	switch {
	case !ok:
		return "not checked"
	case res.Reason == "":
		return "not verified"
	}
	return res.Reason
}

// check checks one attestation requirement: some verified attestation of the predicate type,
// signed as required, must meet every condition. When none does, the failures reported are
// those of the first signed candidate.
func (a *attestationRule) check(e *evaluation, f Facts) {
	var typed, signed int
	var firstFailures []string
	for _, att := range f.Attestations {
		if att.PredicateType != a.predicateType {
			continue
		}
		typed++
		by := func(root string) bool { return slices.Contains(att.SignedBy, root) }
		if !a.signedBy.satisfiedBy(by) {
			continue
		}
		signed++
		fails := a.conditionFailures(att)
		if len(fails) == 0 {
			e.note("attestation %s signed by %s", a.predicateType, strings.Join(att.SignedBy, ", "))
			return
		}
		if firstFailures == nil {
			firstFailures = fails
		}
	}
	switch {
	case typed == 0:
		e.fail("attestation %s missing%s", a.predicateType, invalidEvidence(f.InvalidAttestations, " (", ")"))
	case signed == 0:
		e.fail("attestation %s not signed by %s", a.predicateType, a.signedBy)
	default:
		for _, msg := range firstFailures {
			e.fail("attestation %s: %s", a.predicateType, msg)
		}
	}
}

// invalidEvidence quotes the first reason evidence was refused, and counts the others, between
// open and close: " (invalid evidence: attestation artifact sha256-….att has 33 layers, more
// than 32; and 2 more)". It is "" when there are none.
func invalidEvidence(reasons []string, open, close string) string {
	if len(reasons) == 0 {
		return ""
	}
	s := open + "invalid evidence: " + oneLine(reasons[0])
	if n := len(reasons) - 1; n > 0 {
		s += fmt.Sprintf("; and %d more", n)
	}
	return s + close
}

// conditionFailures returns the conditions att's predicate fails.
func (a *attestationRule) conditionFailures(att Attestation) []string {
	if len(a.conditions) == 0 {
		return nil
	}
	pred, err := decodePredicate(att.Predicate)
	if err != nil {
		return []string{"predicate is not valid JSON"}
	}
	var out []string
	for _, c := range a.conditions {
		if msg := c.check(pred); msg != "" {
			out = append(out, msg)
		}
	}
	return out
}

// decide turns an evaluation into a Decision by the rule's mode.
func (r *Rule) decide(image string, e *evaluation) Decision {
	d := Decision{Allowed: true, Mode: r.mode, Rule: r.name, Failures: e.failures, Notes: e.notes, Checks: e.checks}
	img := imageName(image)
	switch {
	case len(e.failures) == 0:
		d.Message = fmt.Sprintf("portcullis: %s admitted by rule %q", img, r.name)
	case r.mode == ModeEnforce:
		d.Allowed = false
		d.Message = fmt.Sprintf("portcullis: %s denied by rule %q: %s", img, r.name, strings.Join(e.failures, "; "))
	default:
		d.Message = fmt.Sprintf("portcullis: %s would be denied by rule %q (%s mode): %s",
			img, r.name, r.mode, strings.Join(e.failures, "; "))
	}
	return d
}

// imageName names the image in a message: in full, digest included, so that a person can paste it into
// `portcullis check` or a crane command.
func imageName(image string) string {
	if image == "" {
		return "image"
	}
	return oneLine(image)
}

// oneLine replaces line breaks, so that messages stay one line (they become headers).
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}
