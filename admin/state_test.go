package admin

import (
	"io"
	"log/slog"
	"testing"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
)

// fullAPI is the admin API with every route it can serve. A new option that serves routes belongs here too, or the
// OpenAPI check cannot see them.
func fullAPI(t *testing.T, auth Authenticator, opts ...Option) *API {
	t.Helper()
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	dir := t.TempDir()
	collections, err := cache.OpenFileCollections(dir)
	if err != nil {
		t.Fatal(err)
	}
	journal, err := cache.OpenFileJournal(dir+"/journal", 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = journal.Close() })
	lists := admission.NewLists(collections, cache.NewLocalBus())
	auditor := admission.NewAuditor(journal, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
