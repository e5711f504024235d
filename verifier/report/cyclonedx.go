package report

import (
	"cmp"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/policy"
)

// cdxBOM is the part of a CycloneDX 1.4-1.6 JSON BOM this package reads.
type cdxBOM struct {
	BOMFormat   string `json:"bomFormat"`
	SpecVersion string `json:"specVersion"`
	Metadata    *struct {
		Timestamp string          `json:"timestamp"`
		Tools     json.RawMessage `json:"tools"`
	} `json:"metadata"`
	Components      []cdxComponent `json:"components"`
	Vulnerabilities []cdxVuln      `json:"vulnerabilities"`
}

type cdxComponent struct {
	BOMRef     string         `json:"bom-ref"`
	Group      string         `json:"group"`
	Name       string         `json:"name"`
	Version    string         `json:"version"`
	PURL       string         `json:"purl"`
	Components []cdxComponent `json:"components"`
}

type cdxTool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type cdxVuln struct {
	ID     string `json:"id"`
	Source *struct {
		Name string `json:"name"`
	} `json:"source"`
	Ratings []struct {
		Source *struct {
			Name string `json:"name"`
		} `json:"source"`
		Score    *float64 `json:"score"`
		Severity string   `json:"severity"`
	} `json:"ratings"`
	Recommendation string `json:"recommendation"`
	Affects        []struct {
		Ref      string `json:"ref"`
		Versions []struct {
			Version string `json:"version"`
			Status  string `json:"status"`
		} `json:"versions"`
	} `json:"affects"`
	Analysis *struct {
		State         string `json:"state"`
		Justification string `json:"justification"`
		Detail        string `json:"detail"`
		FirstIssued   string `json:"firstIssued"`
		LastUpdated   string `json:"lastUpdated"`
	} `json:"analysis"`
}

// upgradeTo finds the fixed version in a recommendation as Trivy writes it:
// "Upgrade libssl3 to version 3.1.4-r5".
var upgradeTo = regexp.MustCompile(`(?i)\bto version\s+(.+?)\s*\.?$`)

// ParseCycloneDX reads the vulnerabilities of a CycloneDX 1.4-1.6 JSON BOM
// (Trivy `-f cyclonedx --scanners vuln`, Grype `-o cyclonedx-json`, or a
// CycloneDX VEX). Each vulnerabilities[].affects[] entry is a finding: the ref
// names a component (bom-ref, possibly a BOM-Link ending in "#bom-ref", or a
// package URL) whose name and version are the package and installed version.
//
// The severity is that of the rating whose source is the vulnerability's own
// source (the vendor, as Trivy prefers), else the NVD rating, else the highest
// rating; a rating without a severity label counts by its score. The fixed
// version is read from the recommendation ("Upgrade x to version y") or an
// affects version with status "unaffected". A vulnerability with an analysis
// is still listed, and its analysis becomes a VEX statement about the packages
// it affects (the whole image when it names none), dated analysis.lastUpdated
// (else firstIssued, else the BOM's timestamp): not_affected and
// false_positive are not_affected, resolved and resolved_with_pedigree fixed,
// exploitable affected, in_triage under_investigation. ScanTime is metadata.timestamp and the scanner is the first
// of metadata.tools (1.4 array or 1.5+ object form); Source is left empty for
// the caller to set.
func ParseCycloneDX(b []byte) (*policy.ScanReport, error) {
	const format = "cyclonedx"
	if err := checkSize(format, b); err != nil {
		return nil, err
	}
	var bom cdxBOM
	if err := json.Unmarshal(b, &bom); err != nil {
		return nil, malformed(format, err)
	}
	if bom.BOMFormat != "CycloneDX" {
		return nil, unsupportedf("cyclonedx: bomFormat %q, want CycloneDX", bom.BOMFormat)
	}
	if !cdxVersionOK(bom.SpecVersion) {
		return nil, unsupportedf("cyclonedx: specVersion %q, want 1.4 or later 1.x", bom.SpecVersion)
	}
	rep := &policy.ScanReport{}
	if md := bom.Metadata; md != nil {
		rep.ScanTime = parseTime(md.Timestamp)
		tool, err := cdxFirstTool(md.Tools)
		if err != nil {
			return nil, malformed(format, err)
		}
		rep.Scanner, rep.ScannerVersion = tool.Name, tool.Version
	}
	comps := map[string]cdxComponent{}
	indexComponents(comps, bom.Components)

	c := newCollector(format)
	for _, v := range bom.Vulnerabilities {
		sev := cdxSeverity(v)
		fixed := ""
		if m := upgradeTo.FindStringSubmatch(v.Recommendation); m != nil {
			fixed = m[1]
		}
		var stmt *policy.VEXStatement
		if a := v.Analysis; a != nil && v.ID != "" && cdxVEXStatus[a.State] != "" {
			stmt = &policy.VEXStatement{IDs: []string{v.ID}, Status: cdxVEXStatus[a.State], Note: note(a.State, a.Justification, a.Detail),
				Time: parseTime(first(a.LastUpdated, a.FirstIssued))}
			if stmt.Time.IsZero() {
				stmt.Time = rep.ScanTime
			}
		}
		if len(v.Affects) == 0 {
			if err := c.add(policy.Finding{ID: v.ID, Severity: sev, FixedVersion: fixed}); err != nil {
				return nil, err
			}
		}
		for _, a := range v.Affects {
			f := policy.Finding{ID: v.ID, Severity: sev, FixedVersion: fixed}
			f.Package, f.InstalledVersion = cdxPackage(comps, a.Ref)
			for _, ver := range a.Versions {
				switch {
				case ver.Status == "affected" && f.InstalledVersion == "":
					f.InstalledVersion = ver.Version
				case ver.Status == "unaffected" && f.FixedVersion == "":
					f.FixedVersion = ver.Version
				}
			}
			if err := c.add(f); err != nil {
				return nil, err
			}
			if pk := (policy.VEXPackage{Name: f.Package, Version: f.InstalledVersion}); stmt != nil && !slices.Contains(stmt.Packages, pk) {
				stmt.Packages = append(stmt.Packages, pk)
			}
		}
		if stmt != nil {
			rep.VEX = append(rep.VEX, *stmt)
		}
	}
	rep.Findings = c.findings
	return rep, nil
}

// cdxVEXStatus maps a CycloneDX analysis state to the VEX status it amounts to.
var cdxVEXStatus = map[string]string{
	"not_affected":           policy.VEXNotAffected,
	"false_positive":         policy.VEXNotAffected,
	"resolved":               policy.VEXFixed,
	"resolved_with_pedigree": policy.VEXFixed,
	"exploitable":            policy.VEXAffected,
	"in_triage":              policy.VEXUnderInvestigation,
}

// cdxVersionOK accepts spec versions 1.4 and later 1.x: vulnerabilities came
// in 1.4.
func cdxVersionOK(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	if !ok || major != "1" {
		return false
	}
	n, err := strconv.Atoi(minor)
	return err == nil && n >= 4
}

// cdxFirstTool reads metadata.tools: an array of tools (1.4) or an object
// with components and services (1.5 and later).
func cdxFirstTool(raw json.RawMessage) (cdxTool, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "" || s == "null":
		return cdxTool{}, nil
	case strings.HasPrefix(s, "["):
		var tools []cdxTool
		if err := json.Unmarshal(raw, &tools); err != nil {
			return cdxTool{}, err
		}
		if len(tools) > 0 {
			return tools[0], nil
		}
	default:
		var tools struct {
			Components []cdxTool `json:"components"`
			Services   []cdxTool `json:"services"`
		}
		if err := json.Unmarshal(raw, &tools); err != nil {
			return cdxTool{}, err
		}
		if len(tools.Components) > 0 {
			return tools.Components[0], nil
		}
		if len(tools.Services) > 0 {
			return tools.Services[0], nil
		}
	}
	return cdxTool{}, nil
}

// indexComponents maps bom-ref to component, nested components included.
func indexComponents(m map[string]cdxComponent, list []cdxComponent) {
	for _, c := range list {
		if c.BOMRef != "" {
			if _, dup := m[c.BOMRef]; !dup {
				m[c.BOMRef] = c
			}
		}
		indexComponents(m, c.Components)
	}
}

// cdxPackage names the package an affects ref points at.
func cdxPackage(comps map[string]cdxComponent, ref string) (name, version string) {
	if i := strings.LastIndex(ref, "#"); i >= 0 && strings.HasPrefix(ref, "urn:cdx:") {
		ref = unescape(ref[i+1:])
	}
	if c, ok := comps[ref]; ok {
		p, isPURL := parsePURL(c.PURL)
		name, version = c.Name, c.Version
		switch {
		case isPURL && c.Group != "":
			p.Namespace, p.Name = c.Group, c.Name
			name = p.fullName()
		case c.Group != "":
			name = c.Group + "/" + c.Name
		case name == "" && isPURL:
			name = p.fullName()
		}
		if version == "" && isPURL {
			version = p.Version
		}
		return name, version
	}
	if p, ok := parsePURL(ref); ok {
		return p.fullName(), p.Version
	}
	return ref, ""
}

// cdxSeverity picks a vulnerability's severity from its ratings.
func cdxSeverity(v cdxVuln) policy.Severity {
	own := ""
	if v.Source != nil {
		own = v.Source.Name
	}
	var bySource, nvd, highest policy.Severity
	for _, r := range v.Ratings {
		s := severity(r.Severity)
		if s == policy.SeverityUnknown && r.Score != nil {
			s = scoreSeverity(*r.Score)
		}
		if s == policy.SeverityUnknown && !isSeverity(r.Severity) {
			continue
		}
		src := ""
		if r.Source != nil {
			src = r.Source.Name
		}
		if bySource == "" && own != "" && strings.EqualFold(src, own) {
			bySource = s
		}
		if nvd == "" && strings.EqualFold(src, "nvd") {
			nvd = s
		}
		if highest == "" || s.Compare(highest) > 0 {
			highest = s
		}
	}
	return cmp.Or(bySource, nvd, highest, policy.SeverityUnknown)
}

// note formats a VEX status with its justification and detail.
func note(status, justification, detail string) string {
	s := status
	if justification != "" {
		s += " (" + justification + ")"
	}
	if detail != "" {
		s += ": " + detail
	}
	return s
}
