package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
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
	r.Source = string(source)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := rs.kv.Set(ctx, "report/"+string(source)+"/"+dgst.String(), b, rs.ttl); err != nil {
		return fmt.Errorf("store report: %w", err)
	}
	return rs.bump(ctx, dgst)
}

// Get returns the digest's report from source; ok is false when there is none.
func (rs *Reports) Get(ctx context.Context, source policy.Source, dgst digest.Digest) (*policy.ScanReport, bool) {
	b, err := rs.kv.Get(ctx, "report/"+string(source)+"/"+dgst.String())
	if err != nil {
		return nil, false
	}
	var r policy.ScanReport
	if json.Unmarshal(b, &r) != nil {
		return nil, false
	}
	return &r, true
}

// PutVEX merges VEX statuses (vulnerability id -> note) into what is known for the digest.
func (rs *Reports) PutVEX(ctx context.Context, dgst digest.Digest, statuses map[string]string) error {
	all := rs.VEX(ctx, dgst)
	maps.Copy(all, statuses)
	b, _ := json.Marshal(all)
	if err := rs.kv.Set(ctx, "vex/"+dgst.String(), b, rs.ttl); err != nil {
		return fmt.Errorf("store VEX: %w", err)
	}
	return rs.bump(ctx, dgst)
}

// VEX returns the posted VEX statuses for the digest.
func (rs *Reports) VEX(ctx context.Context, dgst digest.Digest) map[string]string {
	out := map[string]string{}
	if b, err := rs.kv.Get(ctx, "vex/"+dgst.String()); err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

// Epoch names the current version of the facts stored for the digest ("0" when nothing was ever posted). The
// error says the shared state could not be read: the caller must then not reuse a decision keyed by an epoch.
func (rs *Reports) Epoch(ctx context.Context, dgst digest.Digest) (string, error) {
	b, err := rs.kv.Get(ctx, "epoch/"+dgst.String())
	switch {
	case err == nil:
		return string(b), nil
	case errors.Is(err, cache.ErrUnavailable) || !errors.Is(err, cache.ErrNotFound):
		return "", err
	}
	return "0", nil
}

func (rs *Reports) bump(ctx context.Context, dgst digest.Digest) error {
	return rs.kv.Set(ctx, "epoch/"+dgst.String(), []byte(strconv.FormatInt(rs.now().UnixNano(), 36)), rs.ttl)
}
