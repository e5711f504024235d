package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/strictyaml"
	"github.com/portcullis/portcullis/policy"
)

// evaluation is a rule's evaluation as `portcullis check` and the admin verbs (explain, policy preview) print it,
// in the same words: check makes it from the gate's admission.Evaluation, the admin verbs decode it from the admin
// API's answer, whose decisions have this shape (docs/admin-api.openapi.yaml, schemas Decision and Evaluation).
type evaluation struct {
	Allowed      bool          `json:"allowed"`
	Rule         string        `json:"rule"`
	Mode         string        `json:"mode"`
	Message      string        `json:"message"`
	Failures     []string      `json:"failures"`
	Notes        []string      `json:"notes"`
	Requirements []requirement `json:"requirements"`
	// Error is why the evidence could not be gathered (the rule's onError decided); InvalidEvidence why
	// attestation evidence was refused unread.
	Error           string   `json:"error"`
	InvalidEvidence []string `json:"invalidEvidence"`
}

// requirement is one requirement of the rule and how the image fared: policy.Check.
type requirement struct {
	Requirement string          `json:"requirement"`
	Passed      bool            `json:"passed"`
	Detail      string          `json:"detail"`
	Signatures  []rootSignature `json:"signatures"`
	Scan        *scanEvidence   `json:"scan"`
}

type rootSignature struct {
	Root     string `json:"root"`
	Verified bool   `json:"verified"`
	Format   string `json:"format"`
	Reason   string `json:"reason"`
}

type scanEvidence struct {
	MaxSeverity  string         `json:"maxSeverity"`
	MaxAge       string         `json:"maxAge"`
	Report       *scanReport    `json:"report"`
	BySeverity   map[string]int `json:"bySeverity"`
	Counted      []finding      `json:"counted"`
	CountedTotal int            `json:"countedTotal"`
	Waived       []finding      `json:"waived"`
	WaivedTotal  int            `json:"waivedTotal"`
}

type scanReport struct {
	Source         string    `json:"source"`
	Scanner        string    `json:"scanner"`
	ScannerVersion string    `json:"scannerVersion"`
	ScanTime       time.Time `json:"scanTime"`
}

type finding struct {
	ID               string `json:"id"`
	Severity         string `json:"severity"`
	Package          string `json:"package"`
	InstalledVersion string `json:"installedVersion"`
	FixedVersion     string `json:"fixedVersion"`
	WaivedBy         string `json:"waivedBy"`
	Detail           string `json:"detail"`
}

// evaluationOf is the gate's evaluation as printEvaluation prints it.
func evaluationOf(e *admission.Evaluation) evaluation {
	d := e.Decision
	ev := evaluation{Allowed: d.Allowed, Rule: d.Rule, Mode: string(d.Mode), Message: d.Message, Failures: d.Failures, Notes: d.Notes,
		InvalidEvidence: e.Facts.InvalidAttestations}
	if e.Err != nil {
		ev.Error = e.Err.Error()
	}
	for _, c := range d.Checks {
		r := requirement{Requirement: c.Requirement, Passed: c.Passed, Detail: c.Detail}
		for _, s := range c.Signatures {
			r.Signatures = append(r.Signatures, rootSignature{Root: s.Root, Verified: s.Verified, Format: s.Format, Reason: s.Reason})
		}
		if sc := c.Scan; sc != nil {
			se := &scanEvidence{MaxSeverity: string(sc.MaxSeverity), BySeverity: map[string]int{}, CountedTotal: len(sc.Counted), WaivedTotal: len(sc.Waived)}
			if sc.MaxAge > 0 {
				se.MaxAge = strictyaml.FormatDuration(sc.MaxAge)
			}
			if rep := sc.Report; rep != nil {
				se.Report = &scanReport{Source: string(rep.Source), Scanner: rep.Scanner, ScannerVersion: rep.ScannerVersion, ScanTime: rep.ScanTime}
			}
			for sev, n := range sc.BySeverity {
				se.BySeverity[string(sev)] = n
			}
			for _, f := range sc.Counted {
				se.Counted = append(se.Counted, findingOf(f))
			}
			for _, w := range sc.Waived {
				f := findingOf(w.Finding)
				f.WaivedBy, f.Detail = w.By, w.Detail
				se.Waived = append(se.Waived, f)
			}
			r.Scan = se
		}
		ev.Requirements = append(ev.Requirements, r)
	}
	return ev
}

func findingOf(f policy.Finding) finding {
	return finding{ID: f.ID, Severity: string(f.Severity), Package: f.Package, InstalledVersion: f.InstalledVersion, FixedVersion: f.FixedVersion}
}

// verdictWord is a decision in one word: ALLOWED, DENIED, or ALLOWED with the mode that let a failure through.
func verdictWord(allowed bool, mode string, failed bool) string {
	switch {
	case !allowed:
		return "DENIED"
	case failed && mode != "" && mode != string(policy.ModeEnforce):
		return "ALLOWED (" + mode + " mode: would be denied)"
	}
	return "ALLOWED"
}

// verdict is e's decision in one word (verdictWord).
func (e evaluation) verdict() string { return verdictWord(e.Allowed, e.Mode, len(e.Failures) > 0) }

// maxPrintedFindings caps each list of findings printed; the rest are counted.
const maxPrintedFindings = 10

// severityOrder is the order findings are counted in, worst first.
var severityOrder = []string{"critical", "high", "medium", "low", "unknown", "none"}

// printEvaluation writes e's requirements, one a line with [pass] or [FAIL] and the line that decided it, each
// with its evidence under it (every trust root's signature result; the scan report, its findings by severity,
// those that count and those waived and by what), then why evidence could not be gathered or was refused, and the
// notes no requirement's line already says. Every line starts with indent.
func printEvaluation(w io.Writer, indent string, e evaluation) {
	p := func(format string, args ...any) { printLine(w, indent+format, args...) }
	sub := "       " // under a requirement, past its [pass] or [FAIL]
	var said []string
	for _, r := range e.Requirements {
		mark := "[pass]"
		if !r.Passed {
			mark = "[FAIL]"
		}
		line := r.Requirement
		switch {
		case r.Detail == "":
		case strings.HasPrefix(r.Detail, r.Requirement):
			line = r.Detail // "scan: ...", "attestation X signed by ...": it names itself
		default:
			line += ": " + r.Detail
		}
		p("%s %s", mark, line)
		said = append(said, r.Detail)
		for _, s := range r.Signatures {
			if s.Verified {
				p(sub+"signature by %s: verified (%s)", s.Root, dash(s.Format))
			} else {
				p(sub+"signature by %s: not verified (%s)", s.Root, dash(s.Reason))
			}
		}
		if sc := r.Scan; sc != nil {
			printScan(p, sub, sc)
		}
	}
	if len(e.Requirements) == 0 && e.Error == "" {
		p("(the rule requires nothing)")
	}
	if e.Error != "" {
		p("error: %s", e.Error)
	}
	for _, ie := range e.InvalidEvidence {
		p("invalid evidence: %s", ie)
	}
	for _, n := range e.Notes {
		if !slices.ContainsFunc(said, func(d string) bool { return strings.Contains(d, n) }) {
			p("note: %s", n)
		}
	}
}

// printScan writes a scan gate's evidence.
func printScan(p func(string, ...any), sub string, sc *scanEvidence) {
	limits := "max severity " + sc.MaxSeverity
	if sc.MaxAge != "" {
		limits += ", max age " + sc.MaxAge
	}
	if rep := sc.Report; rep != nil {
		scanner := strings.TrimSpace(rep.Scanner + " " + rep.ScannerVersion)
		scanned := "scan time unknown"
		if !rep.ScanTime.IsZero() {
			scanned = "scanned " + when(rep.ScanTime)
		}
		p(sub+"report: %s (%s), %s; %s", rep.Source, dash(scanner), scanned, limits)
	} else {
		p(sub+"report: none; %s", limits)
	}
	var counts []string
	for _, sev := range severityOrder {
		if n := sc.BySeverity[sev]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, sev))
		}
	}
	if sc.Report != nil {
		p(sub+"findings: %s", list(counts))
	}
	shown := sc.Counted[:min(len(sc.Counted), maxPrintedFindings)]
	for _, f := range shown {
		p(sub+"counts: %s", describeFinding(f))
	}
	if more := max(sc.CountedTotal, len(sc.Counted)) - len(shown); more > 0 {
		p(sub+"counts: and %d more", more)
	}
	shown = sc.Waived[:min(len(sc.Waived), maxPrintedFindings)]
	for _, f := range shown {
		p(sub+"waived: %s, by %s: %s", describeFinding(f), f.WaivedBy, dash(f.Detail))
	}
	if more := max(sc.WaivedTotal, len(sc.Waived)) - len(shown); more > 0 {
		p(sub+"waived: and %d more", more)
	}
}

// describeFinding is "CVE-2024-1 (critical) in openssl 3.0.1, fixed in 3.0.2".
func describeFinding(f finding) string {
	s := fmt.Sprintf("%s (%s) in %s", f.ID, f.Severity, f.Package)
	if f.InstalledVersion != "" {
		s += " " + f.InstalledVersion
	}
	if f.FixedVersion != "" {
		s += ", fixed in " + f.FixedVersion
	} else {
		s += ", no fix"
	}
	return s
}

// printLine writes one line for a person, formatted and made printable.
func printLine(w io.Writer, format string, args ...any) {
	fmt.Fprintln(w, printable(fmt.Sprintf(format, args...)))
}

// printable escapes, as Go quotes them (\x1b, \u202e), the characters a terminal would act on rather than show:
// control characters and bidirectional overrides. What the human output prints comes partly from the untrusted
// upstream (its error text, a report's package names), and an escape sequence there must not rewrite the
// operator's screen or hide a line.
func printable(s string) string {
	if !strings.ContainsFunc(s, unprintable) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unprintable(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func unprintable(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }
