package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/opencontainers/go-digest"

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
	resolver := &fakeResolver{images: map[string]admission.Subject{}}
	auditor := admission.NewAuditor(journal, slog.New(slog.NewTextHandler(io.Discard, nil)))
	all := append([]Option{
		WithReports(admission.NewReports(kv, 0)),
		WithLists(lists),
		WithAudit(auditor),
		WithExplain(idleGate{}, resolver),
		WithDecisions(idleGate{}, resolver),
		WithPolicy(idleGate{}, idleGate{}, resolver),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}, opts...)
	a, err := New(auth, all...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// idleGate stands in for the gate and the policy file where only the routes matter (fullAPI): it serves the
// explain, decisions and policy routes, and every answer is an error. newPolicyEnv has the real ones.
type idleGate struct{}

var errIdle = errors.New("idle gate: no policy")

func (idleGate) Explain(context.Context, admission.Subject) (admission.Explanation, error) {
	return admission.Explanation{}, errIdle
}

func (idleGate) Forget(context.Context, digest.Digest) error { return errIdle }

func (idleGate) ForgetRepository(context.Context, string, string) ([]digest.Digest, error) {
	return nil, errIdle
}

func (idleGate) Status() admission.PolicyStatus { return admission.PolicyStatus{} }

func (idleGate) Reload(context.Context, string, string) (admission.PolicyChange, error) {
	return admission.PolicyChange{}, errIdle
}

func (idleGate) Candidate([]byte) (admission.Candidate, error) { return admission.Candidate{}, errIdle }

func (idleGate) Preview(context.Context, admission.Candidate, admission.Manifests, admission.PreviewOptions) (admission.Preview, error) {
	return admission.Preview{}, errIdle
}

var (
	_ Explainer = idleGate{}
	_ Forgetter = idleGate{}
	_ Policies  = idleGate{}
	_ Previewer = idleGate{}
)
