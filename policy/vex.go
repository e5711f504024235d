package policy

import (
	"strings"
	"time"
)

// VEX statuses (OpenVEX's; a CycloneDX analysis state maps to one of them).
const (
	VEXNotAffected        = "not_affected"
	VEXFixed              = "fixed"
	VEXAffected           = "affected"
	VEXUnderInvestigation = "under_investigation"
)

// VEXStatement is one VEX statement about one image: a vulnerability's status in it, or in some of its packages.
//
// Statements are resolved per finding: of the statements that cover a finding, the latest by Time wins (among
// equal times, the later in ScanReport.VEX), and the finding does not count only when that one says not_affected
// or fixed. So a later affected or under_investigation statement withdraws an earlier waiver, and a waiver for
// one package never reaches the same vulnerability in another.
type VEXStatement struct {
	// IDs names the vulnerability: its name, its @id and aliases. A finding is covered when its ID is one of them,
	// ignoring case.
	IDs []string
	// Packages narrows the statement to findings in these packages (an OpenVEX statement's subcomponents, a
	// CycloneDX vulnerability's affects). Empty means the whole image.
	Packages []VEXPackage `json:",omitempty"`
	// Status is not_affected, fixed, affected or under_investigation.
	Status string
	// Note says why, for a person: "not_affected (vulnerable_code_not_in_execute_path): <impact statement>".
	Note string `json:",omitempty"`
	// Time is when the statement was made; the zero time (unknown) loses to every dated statement.
	Time time.Time
}

// VEXPackage names one package a VEX statement is about.
type VEXPackage struct {
	// Name is the package name as scanners report it: "openssl", "golang.org/x/crypto", "org.yaml:snakeyaml".
	Name string
	// Version, when set, narrows the statement to findings whose installed version is this one ("v1.2.3" and
	// "1.2.3" are the same version). Empty means every version.
	Version string `json:",omitempty"`
}

// Waives reports whether the statement says the image is not affected: status not_affected or fixed.
func (s VEXStatement) Waives() bool { return s.Status == VEXNotAffected || s.Status == VEXFixed }

// Covers reports whether the statement is about the finding: it names the finding's vulnerability and, when it
// lists packages, the finding's package (and version, when the package gives one).
func (s VEXStatement) Covers(f Finding) bool {
	named := false
	for _, id := range s.IDs {
		if strings.EqualFold(strings.TrimSpace(id), f.ID) {
			named = true
			break
		}
	}
	if !named {
		return false
	}
	if len(s.Packages) == 0 {
		return true
	}
	for _, p := range s.Packages {
		if p.covers(f) {
			return true
		}
	}
	return false
}

func (p VEXPackage) covers(f Finding) bool {
	if !strings.EqualFold(strings.TrimSpace(p.Name), f.Package) {
		return false
	}
	v := strings.TrimSpace(p.Version)
	return v == "" || trimV(v) == trimV(f.InstalledVersion)
}

// trimV drops the "v" Go and some other ecosystems put before a version number.
func trimV(v string) string {
	if len(v) > 1 && (v[0] == 'v' || v[0] == 'V') && v[1] >= '0' && v[1] <= '9' {
		return v[1:]
	}
	return v
}

// vexIndex finds the statements that may cover a finding without looking at every statement.
type vexIndex struct {
	stmts []VEXStatement
	byID  map[string][]int // upper-case id -> indexes into stmts, ascending
}

func newVEXIndex(stmts []VEXStatement) vexIndex {
	x := vexIndex{stmts: stmts, byID: map[string][]int{}}
	for i, s := range stmts {
		for _, id := range s.IDs {
			k := strings.ToUpper(strings.TrimSpace(id))
			if l := x.byID[k]; k != "" && (len(l) == 0 || l[len(l)-1] != i) {
				x.byID[k] = append(l, i)
			}
		}
	}
	return x
}

// resolve returns the statement that decides the finding (the latest that covers it; among equal times the later
// in the list) and whether another covering statement waived it; ok is false when no statement covers it.
func (x vexIndex) resolve(f Finding) (latest VEXStatement, waivedElsewhere, ok bool) {
	best := -1
	covering := x.byID[strings.ToUpper(strings.TrimSpace(f.ID))]
	for _, i := range covering {
		if x.stmts[i].Covers(f) && (best < 0 || !x.stmts[i].Time.Before(x.stmts[best].Time)) {
			best = i
		}
	}
	if best < 0 {
		return VEXStatement{}, false, false
	}
	for _, i := range covering {
		if i != best && x.stmts[i].Waives() && x.stmts[i].Covers(f) {
			waivedElsewhere = true
		}
	}
	return x.stmts[best], waivedElsewhere, true
}
