package admission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// memCollections and memBus stand in for the cache layer's embedded implementations in unit tests.
type memCollections struct {
	mu   sync.Mutex
	data map[string]map[string][]byte
	down bool
}

func newMemCollections() *memCollections {
	return &memCollections{data: map[string]map[string][]byte{}}
}

func (m *memCollections) Put(_ context.Context, c, id string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return cache.ErrUnavailable
	}
	if m.data[c] == nil {
		m.data[c] = map[string][]byte{}
	}
	m.data[c][id] = v
	return nil
}

func (m *memCollections) Delete(_ context.Context, c, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return cache.ErrUnavailable
	}
	if _, ok := m.data[c][id]; !ok {
		return fmt.Errorf("%w: %s", cache.ErrNotFound, id)
	}
	delete(m.data[c], id)
	return nil
}

func (m *memCollections) All(_ context.Context, c string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, cache.ErrUnavailable
	}
	return maps.Clone(m.data[c]), nil
}

type memBus struct {
	mu   sync.Mutex
	subs map[string][]func([]byte)
}

func (b *memBus) Publish(_ context.Context, topic string, msg []byte) error {
	b.mu.Lock()
	subs := slicesClone(b.subs[topic])
	b.mu.Unlock()
	for _, fn := range subs {
		fn(msg)
	}
	return nil
}

func (b *memBus) Subscribe(topic string, fn func([]byte)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = map[string][]func([]byte){}
	}
	b.subs[topic] = append(b.subs[topic], fn)
	return func() {}
}

// subscribers is how many subscriptions topic has.
func (b *memBus) subscribers(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs[topic])
}

func slicesClone[T any](s []T) []T { return append([]T(nil), s...) }

func TestNewListEntryValidation(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	d := digest.FromString("x")
	for _, tc := range []struct {
		match, reason string
		expires       time.Time
		field, want   string // want "" when valid
	}{
		{match: "docker.io/library/nginx@" + d.String(), reason: "CVE"},
		{match: "ghcr.io/acme/**", reason: "freeze", expires: now.Add(time.Hour)},
		{match: "quay.io/team/app:v1.2", reason: "bad build"},
		{match: "*.example.com/**", reason: "all of it"},
		{match: "registry.local:5000/app:v1", reason: "port and tag"},
		{match: "", reason: "x", field: "match", want: "required"},
		{match: "nginx", reason: "x", field: "match", want: "names no upstream and repository"},
		{match: "docker.io/library/nginx@sha256:zz", reason: "x", field: "match", want: "bad digest"},
		{match: "ghcr.io/acme/***", reason: "x", field: "match", want: "** must be a whole path segment"},
		{match: "ghcr.io/Acme/app", reason: "x", field: "match", want: "lower-case"},
		{match: "ghcr.io/acme/app:bad tag", reason: "x", field: "match", want: "bad tag"},
		{match: "ghcr.io/acme/app", reason: " ", field: "reason", want: "required"},
		{match: "ghcr.io/acme/app", reason: "x", expires: now.Add(-time.Second), field: "expires", want: "in the past"},
	} {
		t.Run(tc.match+"|"+tc.field, func(t *testing.T) {
			_, err := NewListEntry(ListDeny, tc.match, tc.reason, tc.expires, now)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid entry refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Message, tc.want) {
				t.Fatalf("error %v, want field %s with %q", err, tc.field, tc.want)
			}
		})
	}
}

func TestListEntryMatches(t *testing.T) {
	d, other := digest.FromString("image"), digest.FromString("other")
	for _, tc := range []struct {
		match     string
		up, repo  string
		tag       string
		dgst      digest.Digest
		wantMatch bool
	}{
		{"docker.io/library/nginx@" + d.String(), "docker.io", "library/nginx", "", d, true},
		{"docker.io/library/nginx@" + d.String(), "docker.io", "library/nginx", "1.27", d, true},
		{"docker.io/library/nginx@" + d.String(), "docker.io", "library/nginx", "", other, false},
		{"docker.io/library/nginx@" + d.String(), "docker.io", "library/redis", "", d, false},
		{"ghcr.io/acme/**", "ghcr.io", "acme/team/app", "", other, true},
		{"ghcr.io/acme/**", "GHCR.io", "acme", "", other, true},
		{"ghcr.io/acme/**", "docker.io", "acme/app", "", other, false},
		{"quay.io/team/app:v1", "quay.io", "team/app", "v1", d, true},
		{"quay.io/team/app:v1", "quay.io", "team/app", "v2", d, false},
		{"quay.io/team/app:v1", "quay.io", "team/app", "", d, false},
		{"*/library/*", "docker.io", "library/alpine", "", d, true},
	} {
		e, err := NewListEntry(ListDeny, tc.match, "r", time.Time{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := e.matches(tc.up, tc.repo, tc.tag, tc.dgst); got != tc.wantMatch {
			t.Errorf("%s matches %s/%s:%s@%s = %v", tc.match, tc.up, tc.repo, tc.tag, tc.dgst, got)
		}
	}
}

// A change on one replica reaches another through the bus at once, and through the store's poll when a notice
// is lost; entries written without the shape of an entry count for nothing.
func TestListsAcrossReplicas(t *testing.T) {
	store, bus := newMemCollections(), &memBus{}
	a, b := NewLists(store, bus), NewLists(store, bus)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx, time.Hour) // notices only
	for start := time.Now(); bus.subscribers(listsTopic) == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("replica b never subscribed")
		}
	}
	d := digest.FromString("bad")
	e, err := a.Add(ctx, ListDeny, "ghcr.io/acme/app@"+d.String(), "CVE-2024-3094", time.Time{}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(e.ID, "deny-") || e.By != "alice" || e.Added.IsZero() {
		t.Errorf("entry %+v", e)
	}
	deadline := time.Now().Add(time.Second)
	for b.match(ListDeny, "ghcr.io", "acme/app", "", d) == nil {
		if time.Now().After(deadline) {
			t.Fatal("replica b did not see the deny within a second")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := a.Remove(ctx, ListDeny, e.ID); err != nil {
		t.Fatal(err)
	}
	for b.match(ListDeny, "ghcr.io", "acme/app", "", d) != nil {
		if time.Now().After(deadline.Add(time.Second)) {
			t.Fatal("replica b still denies after the removal")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := a.Remove(ctx, ListDeny, e.ID); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
	// A record that is not an entry of this list, or sits under another id, counts for nothing.
	_ = store.Put(ctx, "deny", "deny-forged", []byte(`{"id":"deny-other","kind":"deny","match":"ghcr.io/**","reason":"x"}`))
	_ = store.Put(ctx, "deny", "deny-junk", []byte(`not json`))
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if b.match(ListDeny, "ghcr.io", "acme/app", "", d) != nil {
		t.Error("a malformed or moved record took effect")
	}
	// The store down: changes fail, the last lists read stay in force.
	_, _ = a.Add(ctx, ListDeny, "ghcr.io/acme/app@"+d.String(), "again", time.Time{}, "alice")
	store.mu.Lock()
	store.down = true
	store.mu.Unlock()
	if _, err := a.Add(ctx, ListDeny, "ghcr.io/x/y", "z", time.Time{}, "alice"); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("add with the store down: %v", err)
	}
	if err := a.Load(ctx); err == nil {
		t.Error("load with the store down succeeded")
	}
	if a.match(ListDeny, "ghcr.io", "acme/app", "", d) == nil {
		t.Error("the last known deny list was dropped when the store went down")
	}
	if _, err := a.Status(); err == nil {
		t.Error("Status does not report the failed read")
	}
}

func TestListEntryExpiry(t *testing.T) {
	store, bus := newMemCollections(), &memBus{}
	l := NewLists(store, bus)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	if _, err := l.Add(context.Background(), ListAllow, "ghcr.io/acme/**", "incident 42", now.Add(time.Hour), "bob"); err != nil {
		t.Fatal(err)
	}
	if l.match(ListAllow, "ghcr.io", "acme/app", "", "") == nil {
		t.Fatal("allow entry not in force")
	}
	now = now.Add(2 * time.Hour)
	if l.match(ListAllow, "ghcr.io", "acme/app", "", "") != nil {
		t.Error("expired allow entry still in force")
	}
	if n := len(l.Entries(ListAllow)); n != 1 {
		t.Errorf("expired entry not listed (%d): it shows until removed", n)
	}
}

// memJournal is an in-memory Journal for unit tests.
type memJournal struct {
	mu   sync.Mutex
	recs map[string][][]byte
}

func (j *memJournal) Append(_ context.Context, name string, rec []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.recs == nil {
		j.recs = map[string][][]byte{}
	}
	j.recs[name] = append(j.recs[name], rec)
	return nil
}

func (j *memJournal) Range(_ context.Context, name string, fn func([]byte) bool) error {
	j.mu.Lock()
	recs := slicesClone(j.recs[name])
	j.mu.Unlock()
	for i := len(recs) - 1; i >= 0; i-- {
		if !fn(recs[i]) {
			break
		}
	}
	return nil
}

// Deny beats a cached admission and everything granted through it; an allow entry admits an unsigned image
// loudly, and its removal ends that, blobs included; deny beats allow.
func TestListsOverTheGate(t *testing.T) {
	lists := NewLists(newMemCollections(), &memBus{})
	auditor := NewAuditor(&memJournal{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := newGateFixture(t, nil, WithLists(lists), WithAudit(auditor))
	ctx := context.Background()
	layer := digest.FromString("layer")
	signed := image(t, "v1", layer)
	f.ev.signed[signed.Digest] = true
	if v := f.admit(t, signed); !v.Allowed {
		t.Fatal(v.Reason)
	}
	sig := artifact(t, "sha256-"+signed.Digest.Encoded()+".sig", "", "application/vnd.dev.cosign.simplesigning.v1+json")
	if v := f.admit(t, sig); !v.Allowed {
		t.Fatal(v.Reason)
	}

	t.Run("deny beats a cached admission, its blobs and its artifacts", func(t *testing.T) {
		e, err := lists.Add(ctx, ListDeny, "ghcr.io/acme/app@"+signed.Digest.String(), "CVE-2024-3094", time.Time{}, "alice")
		if err != nil {
			t.Fatal(err)
		}
		v := f.admit(t, signed)
		if v.Allowed || !strings.Contains(v.Reason, "denied by deny-list entry "+e.ID) || !strings.Contains(v.Reason, "CVE-2024-3094") {
			t.Fatalf("denied digest: %+v", v)
		}
		if f.blob(t, layer) {
			t.Error("layer of a denied digest served")
		}
		if v := f.admit(t, sig); v.Allowed {
			t.Error("signature of a denied digest admitted")
		}
		if ok, _ := f.g.Admitted(ctx, "ghcr.io", "acme/app", signed.Digest); ok {
			t.Error("Admitted true for a denied digest")
		}
		if _, err := lists.Remove(ctx, ListDeny, e.ID); err != nil {
			t.Fatal(err)
		}
		if v := f.admit(t, signed); !v.Allowed || !f.blob(t, layer) {
			t.Errorf("after the deny was removed: %+v", v)
		}
	})
	t.Run("allow is break-glass: admitted, loud, and withdrawn with the entry", func(t *testing.T) {
		unsigned := index(t, "v2", image(t, "", digest.FromString("child layer")))
		child := image(t, "", digest.FromString("child layer"))
		if v := f.admit(t, unsigned); v.Allowed {
			t.Fatal("unsigned image admitted before any allow entry")
		}
		e, err := lists.Add(ctx, ListAllow, "ghcr.io/acme/app:v2", "incident 42: hotfix unsigned", time.Time{}, "bob")
		if err != nil {
			t.Fatal(err)
		}
		v := f.admit(t, unsigned)
		if !v.Allowed || len(v.Warnings) != 1 || !strings.Contains(v.Warnings[0], "break-glass") || !strings.Contains(v.Warnings[0], e.ID) {
			t.Fatalf("allow-listed image: %+v", v)
		}
		if v := f.admit(t, child); !v.Allowed {
			t.Errorf("child of an allow-listed index: %s", v.Reason)
		}
		if !f.blob(t, digest.FromString("child layer")) {
			t.Error("child's layer refused")
		}
		recs, _ := auditor.Query(ctx, AuditQuery{Kind: AuditBreakGlass})
		if len(recs) == 0 || recs[0].Entry != e.ID {
			t.Errorf("no break-glass audit record: %+v", recs)
		}
		if _, err := lists.Remove(ctx, ListAllow, e.ID); err != nil {
			t.Fatal(err)
		}
		if v := f.admit(t, unsigned); v.Allowed {
			t.Error("still admitted after the allow entry was removed")
		}
		if v := f.admit(t, child); v.Allowed {
			t.Error("child still admitted after the allow entry was removed")
		}
		if f.blob(t, digest.FromString("child layer")) {
			t.Error("child's layer still served after the allow entry was removed")
		}
	})
	t.Run("deny beats allow", func(t *testing.T) {
		_, _ = lists.Add(ctx, ListAllow, "ghcr.io/acme/**", "everything", time.Time{}, "bob")
		_, _ = lists.Add(ctx, ListDeny, "ghcr.io/acme/app", "nothing of app", time.Time{}, "alice")
		if v := f.admit(t, signed); v.Allowed {
			t.Error("allow beat deny")
		}
		recs, _ := auditor.Query(ctx, AuditQuery{Kind: AuditDenial, Image: "acme/app"})
		if len(recs) == 0 {
			t.Error("no denial audit record")
		}
	})
}

// A rule in warn mode serves an image that fails it, and the audit log says what enforcing it would refuse.
func TestWarnModeFailureIsAudited(t *testing.T) {
	auditor := NewAuditor(&memJournal{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := newGateFixtureWith(t, strings.Replace(grantsPolicy, "default:\n", "default:\n  mode: warn\n", 1), nil, WithAudit(auditor))
	unsigned := image(t, "v1", digest.FromString("layer"))
	if v := f.admit(t, unsigned); !v.Allowed {
		t.Fatalf("warn mode refused: %s", v.Reason)
	}
	recs, err := auditor.Query(context.Background(), AuditQuery{Kind: AuditWarning})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || !strings.Contains(recs[0].Reason, "not signed by release") {
		t.Errorf("warning audit records: %+v", recs)
	}
	signed := image(t, "v2", digest.FromString("other layer"))
	f.ev.signed[signed.Digest] = true
	f.admit(t, signed)
	if recs, _ := auditor.Query(context.Background(), AuditQuery{Kind: AuditWarning}); len(recs) != 1 {
		t.Errorf("an image that passes was audited as a warning: %+v", recs)
	}
}
