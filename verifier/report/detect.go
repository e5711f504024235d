package report

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/portcullis/portcullis/policy"
)

// kind is a report format found by sniff.
type kind string

const (
	kindTrivy     kind = "a Trivy JSON report"
	kindSARIF     kind = "a SARIF log"
	kindCycloneDX kind = "a CycloneDX BOM"
	kindHarbor    kind = "a Harbor vulnerability report"
	kindCosign    kind = "a cosign vulnerability predicate"
	kindOpenVEX   kind = "an OpenVEX document"
)

// parse reads b as k.
func (k kind) parse(b []byte) (*policy.ScanReport, error) {
	switch k {
	case kindTrivy:
		return ParseTrivy(b)
	case kindSARIF:
		return ParseSARIF(b)
	case kindCycloneDX:
		return ParseCycloneDX(b)
	case kindHarbor:
		return ParseHarbor(b)
	case kindCosign:
		return ParseCosignVuln(b)
	}
	return nil, unsupportedf("%s is not a scan report", k)
}

// sniff tells the format of a JSON document by its top-level keys.
func sniff(b []byte) (kind, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return "", unsupportedf("top level is a JSON %s, want an object", typeErr.Value)
		}
		return "", malformed("json", err)
	}
	has := func(k string) bool { _, ok := top[k]; return ok }
	switch {
	case has("bomFormat"):
		return kindCycloneDX, nil
	case has("runs"):
		return kindSARIF, nil
	case has("SchemaVersion") || has("Results") || has("ArtifactName"):
		return kindTrivy, nil
	case has("predicateType") && has("predicate"):
		return kindCosign, nil
	case has("scanner") && (has("metadata") || has("invocation")):
		return kindCosign, nil
	case has("generated_at") || (has("scanner") && has("vulnerabilities")):
		return kindHarbor, nil
	case has("@context") && strings.Contains(string(top["@context"]), "openvex"):
		return kindOpenVEX, nil
	}
	return "", unsupportedf("not a Trivy JSON, SARIF, CycloneDX, Harbor or cosign vulnerability report")
}

// Detect reads a vulnerability report of any format this package knows,
// telling them apart by their top-level keys: Trivy JSON (SchemaVersion,
// Results), SARIF (runs), CycloneDX (bomFormat), a Harbor report
// (generated_at) or a cosign vulnerability predicate or statement. It is for
// reports a CI system posts, so Source is policy.SourceCI whatever the format; an
// OpenVEX document is refused (it is VEX, not a report: use ParseOpenVEX).
func Detect(b []byte) (*policy.ScanReport, error) {
	if err := checkSize("report", b); err != nil {
		return nil, err
	}
	k, err := sniff(b)
	if err != nil {
		return nil, err
	}
	rep, err := k.parse(b)
	if err != nil {
		return nil, err
	}
	rep.Source = policy.SourceCI
	return rep, nil
}
