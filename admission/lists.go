package admission

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/imageref"
	"github.com/portcullis/portcullis/policy"
)

// ListKind says what a list entry does: deny beats allow beats policy.
type ListKind string

// The two lists.
const (
	// ListDeny refuses what an entry names, whatever the policy says, cached admissions and blobs included.
	ListDeny ListKind = "deny"
	// ListAllow admits what an entry names without the gates: break-glass, and loud (a Warning header, an audit
	// record and its own metric on every pull through it).
	ListAllow ListKind = "allow"
)

// ListEntry is one allow or deny entry, as stored and as the admin API shows it.
type ListEntry struct {
	ID   string   `json:"id"`
	Kind ListKind `json:"kind"`
	// Match is upstream/repository-glob, optionally :tag or @digest: "docker.io/library/nginx@sha256:…",
	// "ghcr.io/acme/**", "quay.io/team/app:v1". A tag entry matches pulls by that tag; a digest entry matches the
	// digest however it is reached (by tag, by digest, as a child or artifact's anchor) and its blobs.
	Match string `json:"match"`
	// Reason is why, shown in denials, warnings and the audit log.
	Reason string `json:"reason"`
	// Expires is when the entry stops applying; zero never.
	Expires time.Time `json:"expires,omitzero"`
	// Added and By say when and by whom (the admin token's name).
	Added time.Time `json:"added"`
	By    string    `json:"by"`

	m matcher
}

// matcher is a parsed Match.
type matcher struct {
	upstream, repository policy.Pattern
	tag                  string
	digest               digest.Digest
}

// FieldError is a validation error naming the field at fault, for the admin API's 400s.
type FieldError struct {
	Field, Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// NewListEntry validates an entry as posted (match, reason, expires) and returns it ready to store; id, added
// and by are set by the caller's store. An expiry in the past, a bad glob or a bad digest is a *FieldError.
func NewListEntry(kind ListKind, match, reason string, expires, now time.Time) (ListEntry, error) {
	if kind != ListDeny && kind != ListAllow {
		return ListEntry{}, &FieldError{"kind", fmt.Sprintf("must be allow or deny, not %q", kind)}
	}
	m, err := parseMatch(match)
	if err != nil {
		return ListEntry{}, err
	}
	if strings.TrimSpace(reason) == "" {
		return ListEntry{}, &FieldError{"reason", "required: say why, it is shown with every pull it changes"}
	}
	if !expires.IsZero() && !expires.After(now) {
		return ListEntry{}, &FieldError{"expires", fmt.Sprintf("%s is in the past", expires.UTC().Format(time.RFC3339))}
	}
	return ListEntry{Kind: kind, Match: match, Reason: reason, Expires: expires, m: m}, nil
}

// parseMatch reads upstream/repository-glob[:tag|@digest].
func parseMatch(s string) (matcher, error) {
	bad := func(format string, args ...any) (matcher, error) {
		return matcher{}, &FieldError{"match", fmt.Sprintf(format, args...) +
			`; want upstream/repository-glob, optionally :tag or @digest, e.g. "docker.io/library/nginx@sha256:…" or "ghcr.io/acme/**"`}
	}
	if s == "" {
		return bad("required")
	}
	var m matcher
	rest := s
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		d, err := digest.Parse(rest[i+1:])
		if err != nil {
			return bad("bad digest %q: %v", rest[i+1:], err)
		}
		m.digest, rest = d, rest[:i]
	} else if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		tag := rest[i+1:]
		if !imageref.IsTag(tag) {
			return bad("bad tag %q", tag)
		}
		m.tag, rest = tag, rest[:i]
	}
	up, repo, ok := strings.Cut(rest, "/")
	if !ok || up == "" || repo == "" {
		return bad("%q names no upstream and repository", s)
	}
	var err error
	if m.upstream, err = policy.CompileUpstreamPattern(up); err != nil {
		return bad("upstream: %v", err)
	}
	if m.repository, err = policy.CompileRepositoryPattern(repo); err != nil {
		return bad("repository: %v", err)
	}
	return m, nil
}

// compile parses the entry's Match after it was read back from the store.
func (e *ListEntry) compile() error {
	m, err := parseMatch(e.Match)
	if err != nil {
		return err
	}
	e.m = m
	return nil
}

// active reports whether the entry applies at now.
func (e *ListEntry) active(now time.Time) bool { return e.Expires.IsZero() || now.Before(e.Expires) }

// matches reports whether the entry names a manifest: in upstream/repo, asked for by tag (empty by digest),
// with digest d (empty when unknown, as for a blob's repository-wide check).
func (e *ListEntry) matches(upstream, repo, tag string, d digest.Digest) bool {
	if !e.m.upstream.Match(strings.ToLower(upstream)) || !e.m.repository.Match(repo) {
		return false
	}
	switch {
	case e.m.digest != "":
		return d == e.m.digest
	case e.m.tag != "":
		return tag == e.m.tag
	}
	return true
}

// describe names the entry in messages: `deny-list entry d-3f2a ("ghcr.io/acme/**": CVE-2024-3094 rollout)`.
func (e *ListEntry) describe() string {
	return fmt.Sprintf("%s-list entry %s (%q: %s)", e.Kind, e.ID, e.Match, e.Reason)
}

// ListStore keeps the entries: a durable file in the data dir when embedded, Redis hashes in a fleet
// (cache.Collections), behind an HMAC so that only Portcullis can write an entry that counts.
type ListStore interface {
	Put(ctx context.Context, collection, id string, val []byte) error
	// Delete removes one entry; an absent one is an error wrapping cache.ErrNotFound.
	Delete(ctx context.Context, collection, id string) error
	All(ctx context.Context, collection string) (map[string][]byte, error)
}

// Bus carries change notices to every replica (cache.Bus); a replica hears its own notices too.
type Bus interface {
	Publish(ctx context.Context, topic string, msg []byte) error
	Subscribe(topic string, fn func(msg []byte)) (cancel func())
}

// listsTopic is the Bus topic on which a list change is announced.
const listsTopic = "lists"

// Lists holds the allow and deny lists every replica enforces: in memory, reloaded from the store when any
// replica announces a change on the bus, and at least every second (so a lost notice delays a change by a second
// at most). When the store cannot be read, the last lists read stay in force; changes then fail.
type Lists struct {
	store ListStore
	bus   Bus
	now   func() time.Time

	mu      sync.RWMutex
	entries map[ListKind][]ListEntry
	loaded  time.Time
	err     error

	reload chan struct{}
}

// NewLists returns the lists on store, announcing changes on bus. Call Load once before serving and Run to keep
// them current.
func NewLists(store ListStore, bus Bus) *Lists {
	return &Lists{store: store, bus: bus, now: time.Now, entries: map[ListKind][]ListEntry{}, reload: make(chan struct{}, 1)}
}

// Load reads both lists from the store. On error the lists in memory stay as they were.
func (l *Lists) Load(ctx context.Context) error {
	next := map[ListKind][]ListEntry{}
	for _, kind := range []ListKind{ListDeny, ListAllow} {
		all, err := l.store.All(ctx, string(kind))
		if err != nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return fmt.Errorf("%s list: %w", kind, err)
		}
		for id, b := range all {
			var e ListEntry
			if json.Unmarshal(b, &e) != nil || e.compile() != nil || e.ID != id || e.Kind != kind {
				continue // unreadable or moved: it counts for nothing
			}
			next[kind] = append(next[kind], e)
		}
		slices.SortFunc(next[kind], func(a, b ListEntry) int { return a.Added.Compare(b.Added) })
	}
	l.mu.Lock()
	l.entries, l.loaded, l.err = next, l.now(), nil
	l.mu.Unlock()
	return nil
}

// Run keeps the lists current until ctx ends: on every notice, and every interval (<= 0: one second).
func (l *Lists) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	cancel := l.bus.Subscribe(listsTopic, func([]byte) {
		select {
		case l.reload <- struct{}{}:
		default:
		}
	})
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.reload:
		case <-t.C:
		}
		_ = l.Load(ctx)
	}
}

// Add validates and stores a new entry, announces it to every replica and applies it here at once.
func (l *Lists) Add(ctx context.Context, kind ListKind, match, reason string, expires time.Time, by string) (ListEntry, error) {
	now := l.now()
	e, err := NewListEntry(kind, match, reason, expires, now)
	if err != nil {
		return ListEntry{}, err
	}
	e.ID, e.Added, e.By = newListID(kind), now.UTC(), by
	b, err := json.Marshal(e)
	if err != nil {
		return ListEntry{}, err
	}
	if err := l.store.Put(ctx, string(kind), e.ID, b); err != nil {
		return ListEntry{}, fmt.Errorf("store %s-list entry: %w", kind, err)
	}
	l.changed(ctx)
	return e, nil
}

// Remove deletes an entry, announces it and applies it here at once. An unknown id wraps cache.ErrNotFound.
func (l *Lists) Remove(ctx context.Context, kind ListKind, id string) (ListEntry, error) {
	e, _ := l.find(kind, id)
	if err := l.store.Delete(ctx, string(kind), id); err != nil {
		return ListEntry{}, err
	}
	l.changed(ctx)
	return e, nil
}

// changed applies a change here and tells the other replicas.
func (l *Lists) changed(ctx context.Context) {
	_ = l.Load(ctx)
	_ = l.bus.Publish(ctx, listsTopic, []byte("changed"))
}

// Entries returns the entries of a list, oldest first, expired ones included (they show until removed).
func (l *Lists) Entries(kind ListKind) []ListEntry {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return slices.Clone(l.entries[kind])
}

// Status says when the lists were last read and why the last read failed, if it did.
func (l *Lists) Status() (loaded time.Time, err error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.loaded, l.err
}

func (l *Lists) find(kind ListKind, id string) (ListEntry, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, e := range l.entries[kind] {
		if e.ID == id {
			return e, true
		}
	}
	return ListEntry{}, false
}

// match returns the first active entry of kind that names the manifest, or nil.
func (l *Lists) match(kind ListKind, upstream, repo, tag string, d digest.Digest) *ListEntry {
	if l == nil {
		return nil
	}
	now := l.now()
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i := range l.entries[kind] {
		if e := &l.entries[kind][i]; e.active(now) && e.matches(upstream, repo, tag, d) {
			c := *e
			return &c
		}
	}
	return nil
}

// allowActive reports whether the allow entry id is still there and in force.
func (l *Lists) allowActive(id string) bool {
	if l == nil {
		return false
	}
	e, ok := l.find(ListAllow, id)
	return ok && e.active(l.now())
}

// newListID returns a fresh entry id such as "deny-3f2a9c1e77b0".
func newListID(kind ListKind) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return string(kind) + "-" + hex.EncodeToString(b)
}
