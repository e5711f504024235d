package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// Reports keeps vulnerability reports and VEX statements bound to image digests in the shared KV: those CI posts
// through the admin API and those scanners return. Every change bumps the digest's facts epoch, which is part of
// the decision cache key, so a new report is looked at on the next pull rather than when the old decision expires.
type Reports struct {
	kv  KV
	ttl time.Duration
	now func() time.Time

	vexMu sync.Mutex // one VEX post at a time in this process (the fleet's: lockVEX)
}

// NewReports returns a report store on kv. Reports are kept for ttl (default 30 days when <= 0).
func NewReports(kv KV, ttl time.Duration) *Reports {
	if ttl <= 0 {
		ttl = 30 * 24 * time.Hour
	}
	return &Reports{kv: kv, ttl: ttl, now: time.Now}
}

// Put stores r as the digest's report from source (ci or scanner).
func (rs *Reports) Put(ctx context.Context, source policy.Source, dgst digest.Digest, r *policy.ScanReport) error {
	r.Source = source
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := rs.kv.Set(ctx, reportKey(source, dgst), b, rs.ttl); err != nil {
		return fmt.Errorf("store report: %w", err)
	}
	return rs.bump(ctx, dgst)
}

// Get returns the digest's report from source; ok is false when there is none.
func (rs *Reports) Get(ctx context.Context, source policy.Source, dgst digest.Digest) (*policy.ScanReport, bool) {
	b, err := rs.kv.Get(ctx, reportKey(source, dgst))
	if err != nil {
		return nil, false
	}
	var r policy.ScanReport
	if json.Unmarshal(b, &r) != nil {
		return nil, false
	}
	return &r, true
}

// vexRecord is the KV value under "vex/<digest>": the statements posted about the image, in the order they were
// posted, each with its timestamp, so that a later statement (posted or attested) withdraws an earlier one when
// policy resolves them. A value in the old form (a map of id -> note) reads as no statements: its waivers are
// dropped, never widened.
type vexRecord struct {
	Statements []policy.VEXStatement `json:"statements"`
}

// VEXChange is what one posted document changed for one image, for the audit log: the vulnerabilities it now
// waives and those whose earlier waiver it withdrew, each as "CVE-2024-1" or "CVE-2024-1 in openssl@3.1.4-r0".
type VEXChange struct {
	Waived    []string `json:"waived"`
	Withdrawn []string `json:"withdrawn"`
}

// PutVEX adds posted VEX statements about the digest to those posted before. Of the statements about the same
// vulnerability and packages, only the latest (by timestamp, then by posting order) is kept: an older one could
// never decide a finding again.
func (rs *Reports) PutVEX(ctx context.Context, dgst digest.Digest, stmts []policy.VEXStatement) (VEXChange, error) {
	unlock, err := rs.lockVEX(ctx, dgst)
	if err != nil {
		return VEXChange{}, err
	}
	defer unlock()
	old := rs.VEX(ctx, dgst)
	all := append(slices.Clone(old), stmts...)
	// latest[k] is the index in all of the statement that decides key k.
	latest := map[string]int{}
	for i, st := range all {
		k := vexKey(st)
		if j, ok := latest[k]; !ok || !st.Time.Before(all[j].Time) {
			latest[k] = i
		}
	}
	var kept []policy.VEXStatement
	var change VEXChange
	for i, st := range all {
		if latest[vexKey(st)] != i {
			continue
		}
		kept = append(kept, st)
		if i < len(old) {
			continue
		}
		switch {
		case st.Waives():
			change.Waived = append(change.Waived, describeVEX(st))
		case withdraws(all, i):
			change.Withdrawn = append(change.Withdrawn, describeVEX(st))
		}
	}
	b, err := json.Marshal(vexRecord{Statements: kept})
	if err != nil {
		return change, err
	}
	if err := rs.kv.Set(ctx, vexStatementsKey(dgst), b, rs.ttl); err != nil {
		return change, fmt.Errorf("store VEX: %w", err)
	}
	return change, rs.bump(ctx, dgst)
}

// vexWait bounds how long a VEX post waits for another post about the same image to be stored.
const vexWait = 5 * time.Second

// lockVEX makes a post the only one adding to dgst's statements until unlock: in this process, and across the fleet
// when the KV can lease (Redis), so that two posts about one image at once do not both read the old statements
// and the later write drop the earlier's. A post that cannot have the lock within vexWait fails, storing nothing.
func (rs *Reports) lockVEX(ctx context.Context, dgst digest.Digest) (unlock func(), err error) {
	rs.vexMu.Lock()
	release, err := holdLease(ctx, rs.kv, vexLeaseName(dgst), vexWait)
	if err != nil {
		rs.vexMu.Unlock()
		return nil, fmt.Errorf("store VEX of %s: the lease on its statements: %w; post again", dgst, err)
	}
	return func() {
		release()
		rs.vexMu.Unlock()
	}, nil
}

// VEX returns the VEX statements posted for the digest, in the order they were posted.
func (rs *Reports) VEX(ctx context.Context, dgst digest.Digest) []policy.VEXStatement {
	var rec vexRecord
	if b, err := rs.kv.Get(ctx, vexStatementsKey(dgst)); err == nil {
		_ = json.Unmarshal(b, &rec)
	}
	return rec.Statements
}

// withdraws reports whether all[i] comes after a waiver that may cover a finding it covers.
func withdraws(all []policy.VEXStatement, i int) bool {
	st := all[i]
	for j, w := range all {
		earlier := w.Time.Before(st.Time) || (j < i && w.Time.Equal(st.Time))
		if j != i && earlier && w.Waives() && vexOverlap(w, st) {
			return true
		}
	}
	return false
}

// vexKey names what a statement is about: its vulnerability ids and packages, in any order and case.
func vexKey(st policy.VEXStatement) string {
	ids := make([]string, len(st.IDs))
	for i, id := range st.IDs {
		ids[i] = strings.ToUpper(strings.TrimSpace(id))
	}
	pkgs := make([]string, len(st.Packages))
	for i, p := range st.Packages {
		pkgs[i] = strings.ToLower(p.Name) + "@" + p.Version
	}
	slices.Sort(ids)
	slices.Sort(pkgs)
	return strings.Join(slices.Compact(ids), " ") + "|" + strings.Join(slices.Compact(pkgs), " ")
}

// vexOverlap reports whether two statements may cover a common finding: they share a vulnerability id, and a
// package unless one of them is about the whole image.
func vexOverlap(a, b policy.VEXStatement) bool {
	if !slices.ContainsFunc(a.IDs, func(id string) bool {
		return slices.ContainsFunc(b.IDs, func(o string) bool { return strings.EqualFold(id, o) })
	}) {
		return false
	}
	if len(a.Packages) == 0 || len(b.Packages) == 0 {
		return true
	}
	return slices.ContainsFunc(a.Packages, func(p policy.VEXPackage) bool {
		return slices.ContainsFunc(b.Packages, func(o policy.VEXPackage) bool { return strings.EqualFold(p.Name, o.Name) })
	})
}

// describeVEX names a statement's vulnerability and packages: "CVE-2024-1 in openssl@3.1.4-r0, zlib".
func describeVEX(st policy.VEXStatement) string {
	s := ""
	if len(st.IDs) > 0 {
		s = st.IDs[0]
	}
	var pkgs []string
	for _, p := range st.Packages {
		if p.Version != "" {
			pkgs = append(pkgs, p.Name+"@"+p.Version)
		} else {
			pkgs = append(pkgs, p.Name)
		}
	}
	if len(pkgs) > 0 {
		s += " in " + strings.Join(pkgs, ", ")
	}
	return s
}

// Epoch names the current version of the facts stored for the digest ("0" when nothing was ever posted). The
// error says the shared state could not be read: the caller must then not reuse a decision keyed by an epoch.
func (rs *Reports) Epoch(ctx context.Context, dgst digest.Digest) (string, error) {
	b, err := rs.kv.Get(ctx, epochKey(dgst))
	switch {
	case err == nil:
		return string(b), nil
	case errors.Is(err, cache.ErrUnavailable) || !errors.Is(err, cache.ErrNotFound):
		return "", err
	}
	return "0", nil
}

func (rs *Reports) bump(ctx context.Context, dgst digest.Digest) error {
	return rs.kv.Set(ctx, epochKey(dgst), []byte(strconv.FormatInt(rs.now().UnixNano(), 36)), rs.ttl)
}
