package report

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// sarifLog is the part of a SARIF 2.1.0 log this package reads.
type sarifLog struct {
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool struct {
		Driver struct {
			Name            string      `json:"name"`
			FullName        string      `json:"fullName"`
			Version         string      `json:"version"`
			SemanticVersion string      `json:"semanticVersion"`
			Rules           []sarifRule `json:"rules"`
		} `json:"driver"`
	} `json:"tool"`
	Invocations []struct {
		StartTimeUTC string `json:"startTimeUtc"`
		EndTimeUTC   string `json:"endTimeUtc"`
	} `json:"invocations"`
	Results []sarifResult `json:"results"`
}

type sarifRule struct {
	ID                   string        `json:"id"`
	Help                 *sarifMessage `json:"help"`
	DefaultConfiguration *struct {
		Level string `json:"level"`
	} `json:"defaultConfiguration"`
	Properties map[string]any `json:"properties"`
}

type sarifResult struct {
	RuleID     string         `json:"ruleId"`
	RuleIndex  *int           `json:"ruleIndex"`
	Level      string         `json:"level"`
	Message    sarifMessage   `json:"message"`
	Properties map[string]any `json:"properties"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

// ParseSARIF reads a SARIF 2.1.0 log as Trivy (`-f sarif`) and Grype (`-o
// sarif`) write it; each result of each run is a finding.
//
// The vulnerability id is the "Vulnerability <id>" line of the result message or
// rule help (Grype's rule ids are "<cve>-<package>"), else the rule id. Package,
// installed and fixed version come from the result's properties when a tool puts
// them there, else from the "Package:", "Installed Version:"/"Version:" and
// "Fixed Version:"/"Fix Version:" lines Trivy and Grype write into the message
// and help text. The severity is the scanner's own label when it states one (a
// "Severity:" line, or a severity among the rule's tags), else the rule's
// security-severity CVSS score (>= 9 critical, >= 7 high, >= 4 medium, > 0
// low), else the SARIF level (error high, warning medium, note low). The label
// comes first because Trivy's security-severity is the NVD score even where
// its own verdict (the vendor's severity) differs, and the label is what the
// same scan's JSON report says.
//
// Trivy's misconfiguration, secret and license results (rules tagged so and not
// "vulnerability") are skipped. ScanTime is the first invocation's end (or
// start) time when given; Source is left empty for the caller to set.
func ParseSARIF(b []byte) (*policy.ScanReport, error) {
	const format = "sarif"
	if err := checkSize(format, b); err != nil {
		return nil, err
	}
	var log sarifLog
	if err := json.Unmarshal(b, &log); err != nil {
		return nil, malformed(format, err)
	}
	if log.Version != "2.1.0" {
		return nil, unsupportedf("sarif: version %q, want 2.1.0", log.Version)
	}
	rep := &policy.ScanReport{}
	c := newCollector(format)
	for _, run := range log.Runs {
		d := run.Tool.Driver
		if rep.Scanner == "" {
			rep.Scanner = d.Name
			rep.ScannerVersion = d.Version
			if rep.ScannerVersion == "" {
				rep.ScannerVersion = d.SemanticVersion
			}
		}
		if rep.ScanTime.IsZero() {
			rep.ScanTime = invocationTime(run)
		}
		byID := make(map[string]int, len(d.Rules))
		for i, r := range d.Rules {
			if _, ok := byID[r.ID]; !ok {
				byID[r.ID] = i
			}
		}
		for _, res := range run.Results {
			var rule *sarifRule
			if i := res.RuleIndex; i != nil && *i >= 0 && *i < len(d.Rules) && (res.RuleID == "" || d.Rules[*i].ID == res.RuleID) {
				rule = &d.Rules[*i]
			} else if i, ok := byID[res.RuleID]; ok {
				rule = &d.Rules[i]
			}
			f, ok := sarifFinding(res, rule)
			if !ok {
				continue
			}
			if err := c.add(f); err != nil {
				return nil, err
			}
		}
	}
	rep.Findings = c.findings
	return rep, nil
}

// sarifFinding reads one result; ok is false for results that are not
// vulnerabilities.
func sarifFinding(res sarifResult, rule *sarifRule) (policy.Finding, bool) {
	msg := textFields(res.Message.Text)
	var help map[string]string
	var ruleProps map[string]any
	ruleLevel := ""
	if rule != nil {
		if rule.Help != nil {
			help = textFields(rule.Help.Text)
		}
		ruleProps = rule.Properties
		if rule.DefaultConfiguration != nil {
			ruleLevel = rule.DefaultConfiguration.Level
		}
	}
	tags := stringList(ruleProps["tags"])
	if !hasFold(tags, "vulnerability") && (hasFold(tags, "misconfiguration") || hasFold(tags, "secret") || hasFold(tags, "license")) {
		return policy.Finding{}, false
	}

	f := policy.Finding{
		ID:               first(msg["vulnerability"], help["vulnerability"], res.RuleID),
		Package:          first(prop(res.Properties, "packageName", "package", "pkgName", "PkgName"), msg["package"], help["package"]),
		InstalledVersion: first(prop(res.Properties, "installedVersion", "version", "InstalledVersion"), msg["installed version"], msg["version"], help["installed version"], help["version"]),
		FixedVersion:     first(prop(res.Properties, "fixedVersion", "fixVersion", "fixed_version", "FixedVersion"), msg["fixed version"], msg["fix version"], help["fixed version"], help["fix version"]),
	}
	label := first(prop(res.Properties, "severity"), msg["severity"], help["severity"])
	switch {
	case isSeverity(label):
		f.Severity = severity(label)
	case tagSeverity(tags) != "":
		f.Severity = tagSeverity(tags)
	default:
		if score, ok := number(res.Properties["security-severity"]); ok {
			f.Severity = scoreSeverity(score)
		} else if score, ok := number(ruleProps["security-severity"]); ok {
			f.Severity = scoreSeverity(score)
		} else {
			f.Severity = levelSeverity(first(res.Level, ruleLevel))
		}
	}
	return f, true
}

// textFields reads the "Key: value" lines Trivy and Grype write into SARIF
// messages, with lower-case keys; the line "Vulnerability CVE-…" becomes key
// "vulnerability". The first occurrence of a key wins.
func textFields(text string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		key, val, ok := strings.Cut(line, ":")
		if !ok || strings.ContainsAny(key, "|[]()") {
			if id, ok := strings.CutPrefix(line, "Vulnerability "); ok && !strings.ContainsAny(id, " :") {
				key, val = "vulnerability", id
			} else {
				continue
			}
		}
		key = strings.ToLower(strings.TrimSpace(key))
		if _, dup := m[key]; !dup {
			m[key] = strings.TrimSpace(val)
		}
	}
	return m
}

// invocationTime is when the run's first invocation ended, or started.
func invocationTime(run sarifRun) time.Time {
	for _, inv := range run.Invocations {
		if t := parseTime(inv.EndTimeUTC); !t.IsZero() {
			return t
		}
		if t := parseTime(inv.StartTimeUTC); !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// tagSeverity finds a severity label among a rule's tags (Trivy tags each
// rule "vulnerability", "security", "<SEVERITY>"); "" when none is.
func tagSeverity(tags []string) policy.Severity {
	for _, t := range tags {
		if s := severity(t); s != policy.SeverityUnknown || strings.EqualFold(t, string(policy.SeverityUnknown)) {
			return s
		}
	}
	return ""
}

// levelSeverity maps a SARIF level to a severity.
func levelSeverity(level string) policy.Severity {
	switch level {
	case "error":
		return policy.SeverityHigh
	case "warning":
		return policy.SeverityMedium
	case "note":
		return policy.SeverityLow
	}
	return policy.SeverityUnknown
}

// prop returns the first of keys that props holds as a non-empty string.
func prop(props map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := props[k].(string); ok && strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func hasFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// first returns the first non-empty string.
func first(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}
