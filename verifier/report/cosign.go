package report

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// CosignVulnPredicateType is the predicate type of cosign's vulnerability scan
// attestation (`cosign attest --type vuln`, `trivy -f cosign-vuln`).
const CosignVulnPredicateType = "https://cosign.sigstore.dev/attestation/vuln/v1"

// cosignVuln is cosign's CosignVulnPredicate
// (pkg/cosign/attestation/attestation.go; specs/COSIGN_VULN_ATTESTATION_SPEC.md).
type cosignVuln struct {
	Scanner *struct {
		URI     string `json:"uri"`
		Version string `json:"version"`
		DB      struct {
			URI     string `json:"uri"`
			Version string `json:"version"`
		} `json:"db"`
		Result json.RawMessage `json:"result"`
	} `json:"scanner"`
	Metadata struct {
		ScanStartedOn  string `json:"scanStartedOn"`
		ScanFinishedOn string `json:"scanFinishedOn"`
	} `json:"metadata"`
}

// dbStamp finds a yyyymmddhh stamp in a database version like "v1-2021080612".
var dbStamp = regexp.MustCompile(`(?:^|\D)(\d{10})(?:\D|$)`)

// ParseCosignVuln reads the predicate of a cosign vulnerability attestation
// (https://cosign.sigstore.dev/attestation/vuln/v1): scanner.result holds a
// Trivy JSON, SARIF, CycloneDX or Harbor report, which is detected and parsed.
// A whole in-toto statement is accepted too; its predicate is read.
//
// ScanTime is metadata.scanFinishedOn (else scanStartedOn, else the inner
// report's). ScannerVersion is scanner.version when set; the scanner name is the
// inner report's, else the name in scanner.uri
// ("pkg:github/aquasecurity/trivy@…" gives "trivy"). DBTime is scanner.db.version
// when it is an RFC 3339 time or carries a yyyymmddhh stamp (Trivy DB's
// "v1-2021080612"). Source is policy.SourceAttestation: the caller has verified the
// attestation's signature before handing over its predicate.
func ParseCosignVuln(predicate []byte) (*policy.ScanReport, error) {
	const format = "cosign-vuln"
	if err := checkSize(format, predicate); err != nil {
		return nil, err
	}
	var stmt struct {
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(predicate, &stmt); err != nil {
		return nil, malformed(format, err)
	}
	if stmt.PredicateType != "" {
		if stmt.PredicateType != CosignVulnPredicateType {
			return nil, unsupportedf("cosign-vuln: predicateType %q, want %s", stmt.PredicateType, CosignVulnPredicateType)
		}
		predicate = stmt.Predicate
	}
	var p cosignVuln
	if err := json.Unmarshal(predicate, &p); err != nil {
		return nil, malformed(format, err)
	}
	if p.Scanner == nil || len(p.Scanner.Result) == 0 || strings.TrimSpace(string(p.Scanner.Result)) == "null" {
		return nil, malformedf(format, "no scanner.result")
	}
	kind, err := sniff(p.Scanner.Result)
	if err != nil {
		return nil, fmt.Errorf("cosign-vuln: scanner.result: %w", err)
	}
	var rep *policy.ScanReport
	switch kind {
	case kindTrivy, kindSARIF, kindCycloneDX, kindHarbor:
		rep, err = kind.parse(p.Scanner.Result)
	default:
		err = unsupportedf("cosign-vuln: scanner.result is %s, want a Trivy, SARIF, CycloneDX or Harbor report", kind)
	}
	if err != nil {
		return nil, err
	}
	rep.Source = policy.SourceAttestation
	if t := parseTime(first(p.Metadata.ScanFinishedOn, p.Metadata.ScanStartedOn)); !t.IsZero() {
		rep.ScanTime = t
	}
	if v := strings.TrimSpace(p.Scanner.Version); v != "" {
		rep.ScannerVersion = v
	}
	if rep.Scanner == "" {
		if pu, ok := parsePURL(p.Scanner.URI); ok {
			rep.Scanner = pu.Name
		}
	}
	if t := dbTime(p.Scanner.DB.Version); !t.IsZero() {
		rep.DBTime = t
	}
	return rep, nil
}

// dbTime reads a vulnerability database version as a time, or zero.
func dbTime(v string) time.Time {
	if t := parseTime(v); !t.IsZero() {
		return t
	}
	if m := dbStamp.FindStringSubmatch(v); m != nil {
		if t, err := time.Parse("2006010215", m[1]); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
