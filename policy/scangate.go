package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// topFindings is how many findings a scan failure names.
const topFindings = 3

// checkScan checks the scan gate: a report from an accepted source, young enough, with no
// counted finding above the maximum severity. A finding does not count when the latest VEX
// statement that covers it (its vulnerability, and its package when the statement names
// packages) says not_affected or fixed, when an allowlist entry (the rule's or the policy's)
// that has not expired names it, or when ignoreUnfixed is set and it has no fix.
func (r *Rule) checkScan(e *evaluation, f Facts) {
	req := r.scan.req
	rep := f.Scan
	from := e.mark()
	sc := &ScanCheck{MaxSeverity: req.MaxSeverity, MaxAge: req.MaxAge}
	defer func() { e.done(Check{Requirement: "scan", Scan: sc}, from) }()
	if rep == nil {
		missing := "scan: no scan report"
		var why []string
		if f.ScanError != "" {
			why = append(why, f.ScanError)
		}
		if slices.Contains(req.Sources, SourceAttestation) {
			// A vulnerability attestation may have been among the evidence refused.
			if s := invalidEvidence(f.InvalidAttestations, "", ""); s != "" {
				why = append(why, s)
			}
		}
		if len(why) > 0 {
			missing += " (" + strings.Join(why, "; ") + ")"
		}
		if req.OnMissing == OnMissingAllow {
			e.note("%s; admitted (onMissing: allow)", missing)
			return
		}
		e.fail("%s", missing)
		return
	}
	summary := *rep
	summary.Findings, summary.VEX = nil, nil
	sc.Report, sc.BySeverity = &summary, map[Severity]int{}
	if !slices.Contains(req.Sources, rep.Source) {
		want := make([]string, len(req.Sources))
		for i, s := range req.Sources {
			want[i] = string(s)
		}
		e.fail("scan: report from source %q does not count (want %s)", rep.Source, strings.Join(want, ", "))
		return
	}
	if req.MaxAge > 0 {
		switch age := f.Now.Sub(rep.ScanTime); {
		case rep.ScanTime.IsZero():
			e.fail("scan: report has no scan time, max age %s", formatLimit(req.MaxAge))
		case age > req.MaxAge:
			e.fail("scan: report is %s old, max %s", formatAge(age), formatLimit(req.MaxAge))
		}
	}

	max := req.MaxSeverity.rank()
	vex := newVEXIndex(rep.VEX)
	var counted, waived, withdrawn []Finding
	var withdrawnBy []string
	seen := map[[3]string]bool{}
	expiredNoted := map[string]bool{}
	for _, fd := range rep.Findings {
		key := [3]string{fd.ID, fd.Package, fd.InstalledVersion}
		if seen[key] {
			continue // the same vulnerability in the same package, reported twice
		}
		seen[key] = true
		sc.BySeverity[fd.Severity.normalize()]++
		if fd.Severity.rank() <= max {
			continue
		}
		if st, waivedElsewhere, ok := vex.resolve(fd); ok && st.Waives() {
			waived = append(waived, fd)
			sc.Waived = append(sc.Waived, Waiver{Finding: fd, By: "vex", Detail: describeStatement(st)})
			continue
		} else if ok && waivedElsewhere {
			withdrawn = append(withdrawn, fd)
			withdrawnBy = append(withdrawnBy, st.Status)
		}
		if entry, ok := r.allowlisted(e, f, fd.ID, expiredNoted); ok {
			sc.Waived = append(sc.Waived, Waiver{Finding: fd, By: "allowlist", Detail: entry.describe()})
			continue
		}
		if req.IgnoreUnfixed && fd.FixedVersion == "" {
			sc.Waived = append(sc.Waived, Waiver{Finding: fd, By: "unfixed", Detail: "no fixed version (ignoreUnfixed)"})
			continue
		}
		counted = append(counted, fd)
	}
	sc.Counted = counted
	if n := len(waived); n > 0 {
		e.note("scan: %d %s not affected per VEX (%s)", n, plural(n, "finding", "findings"), describeVEX(waived, nil))
	}
	if n := len(withdrawn); n > 0 {
		e.note("scan: VEX waiver withdrawn by a later statement for %d %s (%s)", n, plural(n, "finding", "findings"), describeVEX(withdrawn, withdrawnBy))
	}
	if len(counted) == 0 {
		e.note("scan: no findings above %s (%s)", req.MaxSeverity, describeReport(rep))
		return
	}
	e.fail("scan: %s above %s (%s)", countBySeverity(counted), req.MaxSeverity, describeTop(counted))
}

// allowlisted returns the allowlist entry in force at f.Now that names id, if any, and notes
// each expired entry that names it (once per id).
func (r *Rule) allowlisted(e *evaluation, f Facts, id string, expiredNoted map[string]bool) (allowEntry, bool) {
	var expired []allowEntry
	for _, list := range [][]allowEntry{r.scan.allow, r.global} {
		for _, entry := range list {
			if !strings.EqualFold(entry.id, id) {
				continue
			}
			if entry.appliesAt(f.Now) {
				return entry, true
			}
			expired = append(expired, entry)
		}
	}
	if !expiredNoted[id] {
		expiredNoted[id] = true
		for _, entry := range expired {
			e.note("allowlist entry %s expired %s", entry.id, entry.until)
		}
	}
	return allowEntry{}, false
}

// describe names an allowlist entry for a waiver: "allowlist entry CVE-2024-1 until 2026-12-31:
// not reachable".
func (a allowEntry) describe() string {
	s := "allowlist entry " + a.id
	if a.until != "" {
		s += " until " + a.until
	}
	return s + ": " + a.reason
}

// describeStatement names the VEX statement that waived a finding: "not_affected
// (2026-05-01T00:00:00Z): vulnerable code not in execute path".
func describeStatement(st VEXStatement) string {
	s := st.Status
	if !st.Time.IsZero() {
		s += " (" + st.Time.UTC().Format(time.RFC3339) + ")"
	}
	if st.Note != "" {
		s += ": " + oneLine(st.Note)
	}
	return s
}

// countBySeverity formats counts, highest severity first: "2 critical, 1 high".
func countBySeverity(fs []Finding) string {
	var parts []string
	for _, sev := range severities {
		n := 0
		for _, fd := range fs {
			if fd.Severity.normalize() == sev {
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, sev))
		}
	}
	return strings.Join(parts, ", ")
}

// describeTop names the highest findings, highest severity first, then by id:
// "CVE-2024-1 openssl (fixed in 3.0.2); CVE-2024-2 zlib (no fix); +4 more".
func describeTop(fs []Finding) string {
	fs = slices.Clone(fs)
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if c := b.Severity.Compare(a.Severity); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return cmp.Compare(a.Package, b.Package)
	})
	var parts []string
	for _, fd := range fs[:min(len(fs), topFindings)] {
		fix := "no fix"
		if fd.FixedVersion != "" {
			fix = "fixed in " + fd.FixedVersion
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", fd.ID, fd.Package, fix))
	}
	if n := len(fs) - topFindings; n > 0 {
		parts = append(parts, fmt.Sprintf("+%d more", n))
	}
	return strings.Join(parts, "; ")
}

// describeVEX names the first findings a VEX note is about, each with the status that decided it when given:
// "CVE-2024-1 openssl; CVE-2024-2 zlib (affected); +3 more".
func describeVEX(fs []Finding, status []string) string {
	var parts []string
	for i, fd := range fs[:min(len(fs), topFindings)] {
		s := strings.TrimSpace(fd.ID + " " + fd.Package)
		if i < len(status) {
			s += " (" + status[i] + ")"
		}
		parts = append(parts, s)
	}
	if n := len(fs) - topFindings; n > 0 {
		parts = append(parts, fmt.Sprintf("+%d more", n))
	}
	return strings.Join(parts, "; ")
}

// describeReport names a report for notes: "Trivy 0.58.1, source scanner".
func describeReport(rep *ScanReport) string {
	tool := strings.TrimSpace(rep.Scanner + " " + rep.ScannerVersion)
	if tool == "" {
		tool = "unknown scanner"
	}
	return tool + ", source " + string(rep.Source)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
