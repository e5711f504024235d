package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
)

// memCollections, memBus and memJournal stand in for the cache layer's shared state (list collections, change
// notices, the audit journal) until its embedded implementations land; they keep what they are given in memory.
type memCollections struct {
	mu   sync.Mutex
	data map[string]map[string][]byte
}

func (m *memCollections) Put(_ context.Context, c, id string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		m.data = map[string]map[string][]byte{}
	}
	if m.data[c] == nil {
		m.data[c] = map[string][]byte{}
	}
	m.data[c][id] = slices.Clone(v)
	return nil
}

func (m *memCollections) Delete(_ context.Context, c, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[c][id]; !ok {
		return fmt.Errorf("%s/%s: %w", c, id, cache.ErrNotFound)
	}
	delete(m.data[c], id)
	return nil
}

func (m *memCollections) All(_ context.Context, c string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.data[c] {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

type memBus struct{}

func (memBus) Publish(context.Context, string, []byte) error  { return nil }
func (memBus) Subscribe(string, func([]byte)) (cancel func()) { return func() {} }

type memJournal struct {
	mu   sync.Mutex
	recs [][]byte
}

func (j *memJournal) Append(_ context.Context, _ string, rec []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, slices.Clone(rec))
	return nil
}

func (j *memJournal) Range(_ context.Context, _ string, fn func([]byte) bool) error {
	j.mu.Lock()
	recs := slices.Clone(j.recs)
	j.mu.Unlock()
	for i := len(recs) - 1; i >= 0; i-- {
		if !fn(recs[i]) {
			return nil
		}
	}
	return nil
}

// fullAPI is the admin API with every route it can serve. A new option that serves routes belongs here too, or the
// OpenAPI check cannot see them.
func fullAPI(t *testing.T, auth Authenticator, opts ...Option) *API {
	t.Helper()
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	lists := admission.NewLists(&memCollections{}, memBus{})
	auditor := admission.NewAuditor(&memJournal{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	all := append([]Option{
		WithReports(admission.NewReports(kv, 0)),
		WithLists(lists),
		WithAudit(auditor),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}, opts...)
	a, err := New(auth, all...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
