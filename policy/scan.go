package policy

import (
	"fmt"
	"strings"
	"time"
)

// defaultWaitTimeout bounds scan-and-wait when the policy does not say.
const defaultWaitTimeout = 2 * time.Minute

// scanRule is a compiled scan gate.
type scanRule struct {
	req   ScanRequirement
	allow []allowEntry // the rule's own entries; the policy-wide ones are on the Rule
}

// allowEntry is one compiled CVE allowlist entry.
type allowEntry struct {
	id      string
	until   string    // as written, for messages; "" = no expiry
	expires time.Time // last instant the entry applies; zero = no expiry
	reason  string
}

// appliesAt reports whether the entry has not expired at now.
func (e allowEntry) appliesAt(now time.Time) bool {
	return e.expires.IsZero() || !now.After(e.expires)
}

// scan compiles a scan gate; ruleSigners is the fallback signedBy.
func (c *compiler) scan(path string, sd *scanDoc, ruleSigners Signers) *scanRule {
	s := &scanRule{req: ScanRequirement{
		IgnoreUnfixed: sd.IgnoreUnfixed,
		SignedBy:      ruleSigners,
		OnMissing:     OnMissingDeny,
		WaitTimeout:   defaultWaitTimeout,
		Scanner:       sd.Scanner,
	}}
	switch sev := Severity(sd.MaxSeverity); sev {
	case "":
		c.p.add(join(path, "maxSeverity"), "required: none, low, medium, high or critical (findings above it deny)")
	case SeverityNone, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
		s.req.MaxSeverity = sev
	default:
		c.p.add(join(path, "maxSeverity"), "must be none, low, medium, high or critical, not %q", sd.MaxSeverity)
	}
	if sd.MaxAge != "" {
		s.req.MaxAge, _ = c.duration(join(path, "maxAge"), sd.MaxAge)
	}
	if sd.SignedBy != nil {
		s.req.SignedBy = c.signers(join(path, "signedBy"), sd.SignedBy)
		c.cosignOnly(join(path, "signedBy"), s.req.SignedBy, "vulnerability attestations")
	}
	s.req.Sources = c.sources(path, sd.Sources, !s.req.SignedBy.IsZero())

	switch m := OnMissing(sd.OnMissing); m {
	case "":
	case OnMissingDeny, OnMissingAllow, OnMissingScanAndWait:
		s.req.OnMissing = m
	default:
		c.p.add(join(path, "onMissing"), "must be deny, allow or scan-and-wait, not %q", sd.OnMissing)
	}
	if sd.WaitTimeout != "" {
		if d, ok := c.duration(join(path, "waitTimeout"), sd.WaitTimeout); ok {
			switch {
			case s.req.OnMissing != OnMissingScanAndWait:
				c.p.add(join(path, "waitTimeout"), "applies to onMissing: scan-and-wait only")
			case d == 0:
				c.p.add(join(path, "waitTimeout"), "must be positive")
			}
			s.req.WaitTimeout = d
		}
	}
	if sd.Scanner != "" {
		if _, ok := c.doc.Scanners[sd.Scanner]; !ok {
			c.p.add(join(path, "scanner"), "unknown scanner %q (%s)", sd.Scanner, known("scanners", sortedKeys(c.doc.Scanners)))
		}
	}
	if s.req.OnMissing == OnMissingScanAndWait {
		if sd.Scanner == "" {
			c.p.add(join(path, "onMissing"), "scan-and-wait needs scan.scanner")
		}
		if !containsSource(s.req.Sources, SourceScanner) {
			c.p.add(join(path, "sources"), "scan-and-wait needs the scanner source")
		}
	}
	s.allow = c.allowlist(join(path, "allow"), sd.Allow)
	return s
}

// sources compiles the list of report sources that count; by default every source, less
// attestation when there is no signer whose vulnerability attestations could count.
func (c *compiler) sources(path string, list []string, haveSigners bool) []Source {
	if list == nil {
		if haveSigners {
			return allSources
		}
		return []Source{SourceScanner, SourceCI}
	}
	if len(list) == 0 {
		c.p.add(join(path, "sources"), "must list at least one of attestation, scanner and ci")
	}
	var out []Source
	for i, s := range list {
		ip := fmt.Sprintf("%s.sources[%d]", path, i)
		switch src := Source(s); {
		case src != SourceAttestation && src != SourceScanner && src != SourceCI:
			c.p.add(ip, "must be attestation, scanner or ci, not %q", s)
		case containsSource(out, src):
			c.p.add(ip, "%q listed twice", s)
		case src == SourceAttestation && !haveSigners:
			c.p.add(ip, "attestation needs scan.signedBy (or the rule's signedBy) to say whose reports count")
		default:
			out = append(out, src)
		}
	}
	return out
}

func containsSource(list []Source, s Source) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// allowlist compiles CVE allowlist entries.
func (c *compiler) allowlist(path string, list []*allowDoc) []allowEntry {
	var out []allowEntry
	for i, ad := range list {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if ad == nil {
			c.p.add(ip, "empty entry: give id, until and reason")
			continue
		}
		e := allowEntry{id: strings.TrimSpace(ad.ID), until: strings.TrimSpace(ad.Until), reason: strings.TrimSpace(ad.Reason)}
		if e.id == "" {
			c.p.add(join(ip, "id"), "required")
		} else if strings.ContainsAny(e.id, " \t\n") {
			c.p.add(join(ip, "id"), "bad id %q", ad.ID)
		}
		if e.until != "" {
			t, err := parseUntil(e.until)
			if err != nil {
				c.p.add(join(ip, "until"), "%v", err)
			}
			e.expires = t
		}
		if e.reason == "" {
			c.p.add(join(ip, "reason"), "required: say why this vulnerability is accepted")
		}
		out = append(out, e)
	}
	return out
}
