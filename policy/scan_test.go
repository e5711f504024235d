package policy

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// scanDoc's rules differ only in their scan gate; they are matched by repository name.
const scanPolicy = `
trust:
  scanner: {key: keys/scanner.pub}
scanners:
  trivy: {url: http://trivy:8080}
allowlist:
  - {id: CVE-2024-0003, until: 2026-12-31, reason: "global, in force"}
  - {id: CVE-2024-0004, until: 2026-01-01, reason: "global, expired"}
rules:
  - name: medium
    match: {repository: medium}
    scan:
      maxSeverity: medium
      maxAge: 7d
      signedBy: {anyOf: [scanner]}
      allow:
        - {id: CVE-2024-0001, until: 2026-06-01, reason: "in force until the end of today"}
        - {id: CVE-2024-0002, until: "2026-06-01T11:59:59Z", reason: "expired a second ago"}
  - name: unfixed
    match: {repository: unfixed}
    scan: {maxSeverity: low, ignoreUnfixed: true}
  - name: none
    match: {repository: none}
    scan: {maxSeverity: none, sources: [ci]}
  - name: missing-allow
    match: {repository: missing-allow}
    scan: {maxSeverity: high, onMissing: allow}
  - name: wait
    match: {repository: wait}
    scan: {maxSeverity: high, onMissing: scan-and-wait, scanner: trivy, waitTimeout: 30s}
`

func report(source Source, age time.Duration, findings ...Finding) *ScanReport {
	return &ScanReport{
		Source: source, Scanner: "Trivy", ScannerVersion: "0.58.1",
		ScanTime: testNow.Add(-age), DBTime: testNow.Add(-age - time.Hour),
		Findings: findings,
	}
}

// vexStmt is a VEX statement made day days after the epoch.
func vexStmt(id, status string, day int, pkgs ...VEXPackage) VEXStatement {
	return VEXStatement{IDs: []string{id}, Status: status, Packages: pkgs, Time: time.Unix(int64(day)*86400, 0).UTC()}
}

func withVEX(r *ScanReport, stmts ...VEXStatement) *ScanReport {
	r.VEX = stmts
	return r
}

func finding(id string, sev Severity, pkg, fixed string) Finding {
	return Finding{ID: id, Severity: sev, Package: pkg, InstalledVersion: "1.0", FixedVersion: fixed}
}

func TestEvaluateScan(t *testing.T) {
	p := mustParse(t, scanPolicy)
	tests := []struct {
		name  string
		repo  string
		facts Facts
		want  Decision
	}{
		{
			name:  "clean report",
			repo:  "medium",
			facts: Facts{Scan: report("scanner", time.Hour, finding("CVE-1", "medium", "zlib", ""), finding("CVE-2", "low", "zlib", "1.1"))},
			want:  Decision{Allowed: true, Notes: []string{"scan: no findings above medium (Trivy 0.58.1, source scanner)"}},
		},
		{
			name: "findings above the maximum",
			repo: "medium",
			facts: Facts{Scan: report("attestation", time.Hour,
				finding("CVE-2024-9", "high", "curl", "8.0"),
				finding("CVE-2024-1", "critical", "openssl", "3.0.2"),
				finding("CVE-2024-2", "critical", "glibc", ""),
				finding("CVE-2024-5", "medium", "zlib", ""),
				finding("CVE-2024-7", "high", "bash", "5.3"),
				finding("CVE-2024-1", "critical", "openssl", "3.0.2"), // reported twice
			)},
			want: Decision{Failures: []string{
				"scan: 2 critical, 2 high above medium (CVE-2024-1 openssl (fixed in 3.0.2); CVE-2024-2 glibc (no fix); CVE-2024-7 bash (fixed in 5.3); +1 more)",
			}},
		},
		{
			name: "unknown and odd severities rank as unknown",
			repo: "none",
			facts: Facts{Scan: report("ci", time.Hour,
				finding("CVE-3", "UNKNOWN", "a", ""), finding("CVE-4", "negligible", "b", ""), finding("CVE-5", "High", "c", "2"))},
			want: Decision{Failures: []string{
				"scan: 1 high, 2 unknown above none (CVE-5 c (fixed in 2); CVE-3 a (no fix); CVE-4 b (no fix))",
			}},
		},
		{
			name: "allowlists in force and expired",
			repo: "medium",
			facts: Facts{Scan: report("scanner", time.Hour,
				finding("CVE-2024-0001", "critical", "a", "2"), // rule entry, until end of today
				finding("CVE-2024-0002", "critical", "b", "2"), // rule entry, expired a second ago
				finding("cve-2024-0003", "high", "c", "2"),     // global entry in force; ids ignore case
				finding("CVE-2024-0004", "high", "d", "2"),     // global entry, expired
				finding("CVE-2024-0004", "high", "e", "2"),     // same id: one note
			)},
			want: Decision{
				Failures: []string{"scan: 1 critical, 2 high above medium (CVE-2024-0002 b (fixed in 2); CVE-2024-0004 d (fixed in 2); CVE-2024-0004 e (fixed in 2))"},
				Notes: []string{
					"allowlist entry CVE-2024-0002 expired 2026-06-01T11:59:59Z",
					"allowlist entry CVE-2024-0004 expired 2026-01-01",
				},
			},
		},
		{
			name: "VEX not affected",
			repo: "medium",
			facts: Facts{Scan: withVEX(report("ci", time.Hour, finding("CVE-7", "critical", "a", "2"), finding("CVE-8", "high", "b", ""), finding("CVE-9", "high", "c", "")),
				vexStmt("cve-7", VEXNotAffected, 1), vexStmt("CVE-8", VEXFixed, 1))},
			want: Decision{
				Failures: []string{"scan: 1 high above medium (CVE-9 c (no fix))"},
				Notes:    []string{"scan: 2 findings not affected per VEX (CVE-7 a; CVE-8 b)"},
			},
		},
		{
			name: "VEX subcomponents narrow the waiver to their packages",
			repo: "medium",
			facts: Facts{Scan: withVEX(report("ci", time.Hour,
				finding("CVE-7", "critical", "openssl", "2"), // waived: the subcomponent names it, any version
				finding("CVE-7", "critical", "libssl3", "2"), // the same CVE in another package counts
				finding("CVE-8", "high", "zlib", ""),         // waived: name and version match
				finding("CVE-8", "high", "zlib-dev", ""),     // not named
				finding("CVE-9", "high", "curl", ""),         // named, but another version
			),
				vexStmt("CVE-7", VEXNotAffected, 1, VEXPackage{Name: "openssl"}),
				vexStmt("CVE-8", VEXNotAffected, 1, VEXPackage{Name: "zlib", Version: "v1.0"}),
				vexStmt("CVE-9", VEXNotAffected, 1, VEXPackage{Name: "curl", Version: "9.9"}))},
			want: Decision{
				Failures: []string{"scan: 1 critical, 2 high above medium (CVE-7 libssl3 (fixed in 2); CVE-8 zlib-dev (no fix); CVE-9 curl (no fix))"},
				Notes:    []string{"scan: 2 findings not affected per VEX (CVE-7 openssl; CVE-8 zlib)"},
			},
		},
		{
			name: "a later affected statement withdraws the waiver, wherever it sits in the list",
			repo: "medium",
			facts: Facts{Scan: withVEX(report("ci", time.Hour,
				finding("CVE-7", "critical", "openssl", "2"), finding("CVE-8", "high", "zlib", ""), finding("CVE-9", "high", "curl", "")),
				vexStmt("CVE-7", VEXAffected, 2),                                     // withdraws the whole-image waiver below
				vexStmt("CVE-7", VEXNotAffected, 1),                                  // older
				vexStmt("CVE-8", VEXNotAffected, 1),                                  // whole image ...
				vexStmt("CVE-8", VEXUnderInvestigation, 2, VEXPackage{Name: "zlib"}), // ... but zlib is back under investigation
				vexStmt("CVE-9", VEXAffected, 1),                                     // affected, then waived again later
				vexStmt("CVE-9", VEXNotAffected, 3))},
			want: Decision{
				Failures: []string{"scan: 1 critical, 1 high above medium (CVE-7 openssl (fixed in 2); CVE-8 zlib (no fix))"},
				Notes: []string{
					"scan: 1 finding not affected per VEX (CVE-9 curl)",
					"scan: VEX waiver withdrawn by a later statement for 2 findings (CVE-7 openssl (affected); CVE-8 zlib (under_investigation))",
				},
			},
		},
		{
			name: "equal times: the later statement in the list wins",
			repo: "medium",
			facts: Facts{Scan: withVEX(report("ci", time.Hour, finding("CVE-7", "critical", "a", "2"), finding("CVE-8", "critical", "b", "2")),
				vexStmt("CVE-7", VEXNotAffected, 1), vexStmt("CVE-7", VEXAffected, 1),
				vexStmt("CVE-8", VEXAffected, 1), vexStmt("CVE-8", VEXNotAffected, 1))},
			want: Decision{
				Failures: []string{"scan: 1 critical above medium (CVE-7 a (fixed in 2))"},
				Notes: []string{
					"scan: 1 finding not affected per VEX (CVE-8 b)",
					"scan: VEX waiver withdrawn by a later statement for 1 finding (CVE-7 a (affected))",
				},
			},
		},
		{
			name: "ignoreUnfixed",
			repo: "unfixed",
			facts: Facts{Scan: report("scanner", time.Hour,
				finding("CVE-1", "critical", "a", ""), finding("CVE-2", "medium", "b", "1.2"))},
			want: Decision{Failures: []string{"scan: 1 medium above low (CVE-2 b (fixed in 1.2))"}},
		},
		{
			name:  "ignoreUnfixed leaves nothing",
			repo:  "unfixed",
			facts: Facts{Scan: report("scanner", time.Hour, finding("CVE-1", "critical", "a", ""))},
			want:  Decision{Allowed: true, Notes: []string{"scan: no findings above low (Trivy 0.58.1, source scanner)"}},
		},
		{
			name:  "report too old",
			repo:  "medium",
			facts: Facts{Scan: report("scanner", 9*24*time.Hour+time.Hour)},
			want: Decision{
				Failures: []string{"scan: report is 9d old, max 7d"},
				Notes:    []string{"scan: no findings above medium (Trivy 0.58.1, source scanner)"},
			},
		},
		{
			name:  "report just young enough",
			repo:  "medium",
			facts: Facts{Scan: report("scanner", 7*24*time.Hour)},
			want:  Decision{Allowed: true, Notes: []string{"scan: no findings above medium (Trivy 0.58.1, source scanner)"}},
		},
		{
			name:  "report without scan time",
			repo:  "medium",
			facts: Facts{Scan: &ScanReport{Source: "ci"}},
			want: Decision{
				Failures: []string{"scan: report has no scan time, max age 7d"},
				Notes:    []string{"scan: no findings above medium (unknown scanner, source ci)"},
			},
		},
		{
			name:  "no age limit",
			repo:  "none",
			facts: Facts{Scan: report("ci", 400*24*time.Hour)},
			want:  Decision{Allowed: true, Notes: []string{"scan: no findings above none (Trivy 0.58.1, source ci)"}},
		},
		{
			name:  "source not accepted",
			repo:  "none",
			facts: Facts{Scan: report("scanner", time.Hour)},
			want:  Decision{Failures: []string{`scan: report from source "scanner" does not count (want ci)`}},
		},
		{
			name:  "no report denies",
			repo:  "medium",
			facts: Facts{},
			want:  Decision{Failures: []string{"scan: no scan report"}},
		},
		{
			name:  "no report, reason known",
			repo:  "medium",
			facts: Facts{ScanError: "scanner timed out"},
			want:  Decision{Failures: []string{"scan: no scan report (scanner timed out)"}},
		},
		{
			name:  "no report, attestation evidence refused",
			repo:  "medium",
			facts: Facts{InvalidAttestations: []string{"attestation artifact sha256-ab12.att has 33 layers, more than 32", "another"}},
			want:  Decision{Failures: []string{"scan: no scan report (invalid evidence: attestation artifact sha256-ab12.att has 33 layers, more than 32; and 1 more)"}},
		},
		{
			name: "no report, reason known, attestation evidence refused",
			repo: "medium",
			facts: Facts{ScanError: "unreadable vulnerability attestation: EOF",
				InvalidAttestations: []string{"attestation artifact sha256-ab12.att has 33 layers, more than 32"}},
			want: Decision{Failures: []string{"scan: no scan report (unreadable vulnerability attestation: EOF; " +
				"invalid evidence: attestation artifact sha256-ab12.att has 33 layers, more than 32)"}},
		},
		{
			name:  "no report, refused attestation evidence does not count",
			repo:  "wait",
			facts: Facts{ScanError: "scan did not finish within 30s", InvalidAttestations: []string{"attestation artifact sha256-ab12.att has 33 layers, more than 32"}},
			want:  Decision{Failures: []string{"scan: no scan report (scan did not finish within 30s)"}},
		},
		{
			name:  "no report, onMissing allow",
			repo:  "missing-allow",
			facts: Facts{},
			want:  Decision{Allowed: true, Notes: []string{"scan: no scan report; admitted (onMissing: allow)"}},
		},
		{
			name:  "no report, scan-and-wait",
			repo:  "wait",
			facts: Facts{ScanError: "scan did not finish within 30s"},
			want:  Decision{Failures: []string{"scan: no scan report (scan did not finish within 30s)"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.facts.Now = testNow
			tt.facts.Image = testImage
			r := p.Match("ghcr.io", tt.repo)
			got := r.Evaluate(tt.facts)
			checksAgree(t, got)
			tt.want.Mode, tt.want.Rule = ModeEnforce, tt.repo
			got.Message = ""
			if diff := cmp.Diff(tt.want, got, ignoreChecks); diff != "" {
				t.Errorf("Decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScanRequirementsForOrchestrator(t *testing.T) {
	p := mustParse(t, scanPolicy)
	got := p.Match("ghcr.io", "wait").Requirements().Scan
	want := &ScanRequirement{
		MaxSeverity: SeverityHigh, Sources: []Source{SourceScanner, SourceCI},
		OnMissing: OnMissingScanAndWait, WaitTimeout: 30 * time.Second, Scanner: "trivy",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Scan requirement (-want +got):\n%s", diff)
	}
	if s := p.Scanners()[got.Scanner]; s.URL != "http://trivy:8080" || s.Timeout != 5*time.Minute {
		t.Errorf("scanner = %+v", s)
	}
}

func TestDurations(t *testing.T) {
	good := map[string]time.Duration{
		"0": 0, "30s": 30 * time.Second, "5m": 5 * time.Minute, "7d": 7 * 24 * time.Hour,
		"1.5d": 36 * time.Hour, "1d12h": 36 * time.Hour, " 2h ": 2 * time.Hour,
	}
	for in, want := range good {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "-1s", "+1s", "7days", "1d-1h", "d", "99999999999d"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) = %v, want an error", in, got)
		}
	}
	limits := map[time.Duration]string{
		7 * 24 * time.Hour: "7d", 36 * time.Hour: "36h", 90 * time.Minute: "1h30m", 2 * time.Minute: "2m", 1500 * time.Millisecond: "1.5s",
	}
	for in, want := range limits {
		if got := formatLimit(in); got != want {
			t.Errorf("formatLimit(%v) = %q, want %q", in, got, want)
		}
	}
	ages := map[time.Duration]string{
		49 * time.Hour: "2d", 5*time.Hour + 59*time.Minute: "5h", 90 * time.Second: "1m", 5 * time.Second: "5s",
	}
	for in, want := range ages {
		if got := formatAge(in); got != want {
			t.Errorf("formatAge(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestParseUntil(t *testing.T) {
	tests := map[string]time.Time{
		"2026-12-31":                time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		"2026-12-31T10:00:00+02:00": time.Date(2026, 12, 31, 8, 0, 0, 0, time.UTC),
	}
	for in, want := range tests {
		got, err := parseUntil(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"31/12/2026", "2026-13-01", "tomorrow"} {
		if _, err := parseUntil(in); err == nil {
			t.Errorf("parseUntil(%q) succeeded", in)
		}
	}
}
