package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Input is the document a rule's Rego module reads as `input`: the facts the rule's built-in requirements had
// gathered, and nothing more (a rule with no scan: has no report to show, one with no signedBy: no signatures).
// docs/policy.md describes it field by field; the JSON names are what a module writes.
type Input struct {
	Image InputImage `json:"image"`
	// Signatures lists the image signature result of each trust root the rule's signedBy names, by root name.
	Signatures []InputSignature `json:"signatures"`
	// Attestations lists the verified attestations gathered, in the order found.
	Attestations []InputAttestation `json:"attestations"`
	// Scan is the scan report the scan gate read; nil (absent from the document) when there was none.
	Scan *InputScan `json:"scan,omitempty"`
	// Now is the decision's time, RFC 3339 in UTC: a module reads it rather than the clock (time.now_ns is disabled).
	Now string `json:"now"`
}

// InputImage names the image decided on.
type InputImage struct {
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	// Tag is the tag the deciding pull named; "" for a pull by digest. Decisions are cached by digest, so a tag is
	// context for a message, not something to deny on: another tag of the same digest gets the same decision.
	Tag       string `json:"tag"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
}

// InputSignature is one trust root's result on the image's signatures.
type InputSignature struct {
	Root     string   `json:"root"`
	Verified bool     `json:"verified"`
	Identity Identity `json:"identity"`
}

// Identity is what a trust root vouches for, as the policy defines it: a key's fingerprint, or a keyless root's
// issuer and subject (exact, or as regular expressions). Only the fields that apply are set.
type Identity struct {
	// Key is "sha256:<hex>" over the public key's DER bytes (SubjectPublicKeyInfo), for key roots.
	Key           string `json:"key,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	IssuerRegExp  string `json:"issuerRegExp,omitempty"`
	Subject       string `json:"subject,omitempty"`
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}

// InputAttestation is one verified attestation.
type InputAttestation struct {
	PredicateType string   `json:"predicateType"`
	SignedBy      []string `json:"signedBy"`
	// Predicate is the in-toto statement's predicate, JSON; null when it is not valid JSON.
	Predicate json.RawMessage `json:"predicate"`
}

// InputScan is the scan report the scan gate read.
type InputScan struct {
	Source         Source `json:"source"`
	Scanner        string `json:"scanner"`
	ScannerVersion string `json:"scannerVersion"`
	// ScanTime is when the scan ran, RFC 3339 in UTC; "" when the report does not say.
	ScanTime string `json:"scanTime"`
	// Counts counts the distinct findings that count (not waived) by severity.
	Counts InputCounts `json:"counts"`
	// Findings lists the distinct findings (a vulnerability in a package reported twice appears once), each with
	// whether the scan gate's waivers cover it.
	Findings []InputFinding `json:"findings"`
}

// InputCounts counts findings by severity. A finding of severity "none" is listed but counted nowhere.
type InputCounts struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
	Unknown  int `json:"unknown"`
}

// InputFinding is one vulnerability in one package.
type InputFinding struct {
	ID string `json:"id"`
	// Severity is lower case: critical, high, medium, low, unknown (any other label) or none.
	Severity     Severity `json:"severity"`
	Package      string   `json:"package"`
	Version      string   `json:"version"`
	FixedVersion string   `json:"fixedVersion"`
	// Waived is true when the scan gate would not count the finding whatever its severity: the latest VEX statement
	// covering it says not_affected or fixed, an allowlist entry in force names it, or ignoreUnfixed is set and it
	// has no fix.
	Waived bool `json:"waived"`
}

// ImageRef names the image decided on, field by field, for a module's input.image. The admission gate fills it.
type ImageRef struct {
	Upstream, Repository string
	// Tag is the tag the pull named; "" for a pull by digest.
	Tag       string
	Digest    digest.Digest
	MediaType string
}

// input builds the module's input from f.
func (r *Rule) input(f Facts) Input {
	in := Input{
		Image: InputImage{Upstream: f.Ref.Upstream, Repository: f.Ref.Repository, Tag: f.Ref.Tag,
			Digest: f.Ref.Digest.String(), MediaType: f.Ref.MediaType},
		Signatures:   []InputSignature{},
		Attestations: []InputAttestation{},
		Now:          f.Now.UTC().Format(time.RFC3339),
	}
	for _, root := range sortedKeys(f.Signatures) {
		in.Signatures = append(in.Signatures, InputSignature{Root: root, Verified: f.Signatures[root].Verified, Identity: r.identities[root]})
	}
	for _, a := range f.Attestations {
		pred := a.Predicate
		if !json.Valid(pred) {
			pred = json.RawMessage("null")
		}
		in.Attestations = append(in.Attestations, InputAttestation{PredicateType: a.PredicateType,
			SignedBy: append([]string{}, a.SignedBy...), Predicate: pred})
	}
	if f.Scan != nil {
		in.Scan = r.inputScan(f.Scan, f.Now)
	}
	return in
}

// inputScan describes rep, deduplicated as the scan gate counts it, with each finding's waiver.
func (r *Rule) inputScan(rep *ScanReport, now time.Time) *InputScan {
	s := &InputScan{Source: rep.Source, Scanner: rep.Scanner, ScannerVersion: rep.ScannerVersion, Findings: []InputFinding{}}
	if !rep.ScanTime.IsZero() {
		s.ScanTime = rep.ScanTime.UTC().Format(time.RFC3339)
	}
	vex := newVEXIndex(rep.VEX)
	seen := map[[3]string]bool{}
	for _, fd := range rep.Findings {
		key := [3]string{fd.ID, fd.Package, fd.InstalledVersion}
		if seen[key] {
			continue
		}
		seen[key] = true
		sev := fd.Severity.normalize()
		waived := r.waived(fd, vex, now)
		s.Findings = append(s.Findings, InputFinding{ID: fd.ID, Severity: sev, Package: fd.Package, Version: fd.InstalledVersion,
			FixedVersion: fd.FixedVersion, Waived: waived})
		if waived {
			continue
		}
		switch sev {
		case SeverityCritical:
			s.Counts.Critical++
		case SeverityHigh:
			s.Counts.High++
		case SeverityMedium:
			s.Counts.Medium++
		case SeverityLow:
			s.Counts.Low++
		case SeverityUnknown:
			s.Counts.Unknown++
		}
	}
	return s
}

// waived reports whether the scan gate's waivers cover fd at now, whatever its severity: the same three the gate
// applies to findings above its maximum (VEX, an allowlist entry in force, ignoreUnfixed).
func (r *Rule) waived(fd Finding, vex vexIndex, now time.Time) bool {
	if st, _, ok := vex.resolve(fd); ok && st.Waives() {
		return true
	}
	lists := [][]allowEntry{r.global}
	if r.scan != nil {
		lists = append(lists, r.scan.allow)
	}
	for _, list := range lists {
		if slices.ContainsFunc(list, func(e allowEntry) bool { return strings.EqualFold(e.id, fd.ID) && e.appliesAt(now) }) {
			return true
		}
	}
	return r.scan != nil && r.scan.req.IgnoreUnfixed && fd.FixedVersion == ""
}

// identities describes each trust root for the modules' input.
func identities(roots map[string]TrustRoot) map[string]Identity {
	out := make(map[string]Identity, len(roots))
	for name, t := range roots {
		var id Identity
		if k := t.Keyless; k != nil {
			id = Identity{Issuer: k.Issuer, IssuerRegExp: k.IssuerRegExp, Subject: k.Subject, SubjectRegExp: k.SubjectRegExp}
		} else if len(t.KeyPEM) > 0 {
			der := t.KeyPEM
			if b, _ := pem.Decode(t.KeyPEM); b != nil {
				der = b.Bytes
			}
			sum := sha256.Sum256(der)
			id.Key = "sha256:" + hex.EncodeToString(sum[:])
		}
		out[name] = id
	}
	return out
}
