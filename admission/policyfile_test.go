package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// replica is one gate enforcing its own copy of a policy file, as one Portcullis replica does.
type replica struct {
	dir     string
	file    *PolicyFile
	gate    *Gate
	ev      *signedEvidence
	metrics *Metrics
	audit   *memJournal
	log     *syncBuffer
	builds  atomic.Int32
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	signedPolicy   = "trust:\n  release: {key: keys/release.pub}\ndefault:\n  signedBy: {anyOf: [release]}\n"
	unsignedPolicy = "default: {mode: audit}\n"
	releaseKey     = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhx6b6jesHDE23RvuCj2KJGFCYULN\nfPwcJ7QtLe6+O518kNdlSwQ0SOiEyC92X+85leiQY3o9rCHvC6Og3qWokg==\n-----END PUBLIC KEY-----\n"
)

// newReplica writes doc (and the release key it may name, keys/release.pub) to a directory of its own and runs a
// gate on it; bus may be nil.
func newReplica(t *testing.T, doc string, bus Bus) *replica {
	t.Helper()
	r := &replica{dir: t.TempDir(), audit: &memJournal{}, log: &syncBuffer{}, metrics: NewMetrics(nil)}
	if err := os.MkdirAll(filepath.Join(r.dir, "keys"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "keys", "release.pub"), []byte(releaseKey), 0o600); err != nil {
		t.Fatal(err)
	}
	r.write(t, doc)
	pol, err := policy.Load(r.path())
	if err != nil {
		t.Fatal(err)
	}
	kv := cache.NewMemory()
	t.Cleanup(func() { _ = kv.Close() })
	r.ev = &signedEvidence{signed: map[digest.Digest]bool{}, calls: map[digest.Digest]int{}}
	log := slog.New(slog.NewTextHandler(r.log, nil))
	r.gate, err = NewGate(pol, r.ev, kv, WithLogger(log), WithMetrics(r.metrics), WithAudit(NewAuditor(r.audit, log)))
	if err != nil {
		t.Fatal(err)
	}
	build := func(pol *policy.Policy) (Evidence, error) {
		r.builds.Add(1)
		if _, ok := pol.TrustRoots()["broken"]; ok {
			return nil, errors.New("trust root broken: the verifier cannot use it")
		}
		return r.ev, nil
	}
	if r.file, err = NewPolicyFile(r.path(), r.gate, build, bus); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *replica) path() string { return filepath.Join(r.dir, "policy.yaml") }

func (r *replica) write(t *testing.T, doc string) {
	t.Helper()
	if err := os.WriteFile(r.path(), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (r *replica) allows(t *testing.T, s Subject) bool {
	t.Helper()
	v, err := r.gate.Admit(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return v.Allowed
}

// hashOf is the hash of doc, with the release key it may name.
func hashOf(t *testing.T, doc string) string {
	t.Helper()
	p, err := policy.Parse([]byte(doc), "p.yaml", func(string) ([]byte, error) { return []byte(releaseKey), nil })
	if err != nil {
		t.Fatal(err)
	}
	return p.Hash()
}

// A reload puts the file's policy in force at once, with an audit record of the old and new hash, and announces
// it; an invalid file is refused with its file:line and changes nothing; an unchanged file announces nothing.
func TestPolicyFileReload(t *testing.T) {
	bus := &memBus{}
	var notices []policyNotice
	bus.Subscribe(policyTopic, func(b []byte) {
		var n policyNotice
		_ = json.Unmarshal(b, &n)
		notices = append(notices, n)
	})
	r := newReplica(t, signedPolicy, bus)
	ctx := context.Background()
	img := image(t, "v1", digest.FromString("a"))
	if r.allows(t, img) {
		t.Fatal("an unsigned image was admitted under the signing policy")
	}
	old := r.gate.Policy().Hash()

	r.write(t, unsignedPolicy)
	ch, err := r.file.Reload(ctx, "alice", "roll back the signing requirement")
	if err != nil {
		t.Fatal(err)
	}
	if ch.Old != old || ch.New != hashOf(t, unsignedPolicy) || !ch.Changed() || r.gate.Policy().Hash() != ch.New {
		t.Fatalf("reload %+v, policy in force %s", ch, r.gate.Policy().Hash())
	}
	if !r.allows(t, img) {
		t.Error("the reloaded policy is not the one deciding")
	}
	recs, _ := NewAuditor(r.audit, slog.Default()).Query(ctx, AuditQuery{Kind: AuditChange})
	if len(recs) != 1 || recs[0].Action != "policy.reload" || recs[0].Actor != "alice" || recs[0].Detail["old"] != old ||
		recs[0].Detail["new"] != ch.New || recs[0].Reason != "roll back the signing requirement" {
		t.Errorf("audit records %+v", recs)
	}
	if len(notices) != 1 || notices[0].Hash != ch.New || notices[0].By != "alice" {
		t.Errorf("notices %+v", notices)
	}
	st := r.file.Status()
	if st.File != r.path() || st.Hash != ch.New || !st.HasDefault || st.Loaded.IsZero() {
		t.Errorf("status %+v", st)
	}

	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"a YAML error", "default:\n  signedBy: {anyOf: [release]\n", []string{"policy.yaml:1", "invalid YAML"}},
		{"a bad value", "default:\n  mode: sometimes\n", []string{"policy.yaml:2", "mode"}},
		{"an unknown root", "default:\n  signedBy: {anyOf: [nobody]}\n", []string{"policy.yaml:2", "nobody"}},
		{"a key file missing", "trust:\n  release: {key: keys/missing.pub}\ndefault: {}\n", []string{"policy.yaml:2", "missing.pub"}},
		{"a root the verifier refuses", "trust:\n  broken: {key: keys/release.pub}\ndefault: {}\n", []string{"broken", "cannot use it"}},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(r.metrics.policyReloads.WithLabelValues("error"))
			r.write(t, tc.doc)
			got, err := r.file.Reload(ctx, "bob", "")
			if err == nil {
				t.Fatal("an invalid policy was loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if r.gate.Policy().Hash() != ch.New || got.Changed() || !r.allows(t, img) {
				t.Errorf("the running policy changed: %s", r.gate.Policy().Hash())
			}
			if n := testutil.ToFloat64(r.metrics.policyReloads.WithLabelValues("error")) - before; n != 1 {
				t.Errorf("counted %v errors", n)
			}
			if !strings.Contains(r.log.String(), "policy reload refused") {
				t.Error("the refusal is not logged")
			}
		})
	}
	t.Run("unchanged", func(t *testing.T) {
		r.write(t, "# the same policy, written another way\ndefault:\n  mode: audit\n")
		n := len(notices)
		builds := r.builds.Load()
		got, err := r.file.Reload(ctx, "carol", "")
		if err != nil || got.Changed() || len(notices) != n || r.builds.Load() != builds {
			t.Errorf("unchanged reload %+v %v: %d notices, %d builds", got, err, len(notices)-n, r.builds.Load()-builds)
		}
	})
}

// gapMemBus is a memBus that can say notices were lost.
type gapMemBus struct {
	memBus
	mu   sync.Mutex
	gaps []func()
}

func (b *gapMemBus) SubscribeGaps(topic string, fn func([]byte), gap func()) func() {
	b.mu.Lock()
	b.gaps = append(b.gaps, gap)
	b.mu.Unlock()
	return b.Subscribe(topic, fn)
}

func (b *gapMemBus) lose() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.gaps {
		g()
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A reload on one replica reaches the others: each reloads its own file, tries again while its file lags, and
// reloads when the bus says it may have missed a notice.
func TestPolicyReloadReachesEveryReplica(t *testing.T) {
	bus := &gapMemBus{}
	first, second := newReplica(t, signedPolicy, bus), newReplica(t, signedPolicy, bus)
	second.file.retryEvery = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range []*replica{first, second} {
		wg.Go(func() { r.file.Run(ctx) })
	}
	defer wg.Wait()
	defer cancel()
	// Run subscribes in its goroutine; wait until both listen.
	eventually(t, "both replicas subscribe", func() bool {
		bus.memBus.mu.Lock()
		defer bus.memBus.mu.Unlock()
		return len(bus.memBus.subs[policyTopic]) == 2
	})
	want := hashOf(t, unsignedPolicy)

	t.Run("the other replica reloads its own file", func(t *testing.T) {
		first.write(t, unsignedPolicy)
		second.write(t, unsignedPolicy)
		if _, err := first.file.Reload(ctx, "alice", ""); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the second replica runs the new policy", func() bool { return second.gate.Policy().Hash() == want })
		recs, _ := NewAuditor(second.audit, slog.Default()).Query(ctx, AuditQuery{Kind: AuditChange})
		if len(recs) != 0 {
			t.Errorf("the replica that followed wrote audit records: %+v", recs)
		}
	})
	t.Run("a replica whose file lags tries again", func(t *testing.T) {
		first.write(t, signedPolicy)
		if _, err := first.file.Reload(ctx, "alice", ""); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the lagging replica says so", func() bool {
			return strings.Contains(second.log.String(), "does not give yet")
		})
		if second.gate.Policy().Hash() != want {
			t.Fatal("the lagging replica changed policy without its file changing")
		}
		second.write(t, signedPolicy) // the ConfigMap arrives
		eventually(t, "the lagging replica catches up", func() bool { return second.gate.Policy().Hash() == hashOf(t, signedPolicy) })
	})
	t.Run("a replica that may have missed a notice reloads", func(t *testing.T) {
		second.write(t, unsignedPolicy)
		bus.lose()
		eventually(t, "the replica reloads after a gap", func() bool { return second.gate.Policy().Hash() == want })
	})
}

// A candidate is compiled relative to the policy's directory and may read files from under it only.
func TestCandidate(t *testing.T) {
	r := newReplica(t, signedPolicy, nil)
	secret := filepath.Join(t.TempDir(), "secret.pub")
	if err := os.WriteFile(secret, []byte(releaseKey), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, doc string
		want      []string // "" entries: valid
	}{
		{name: "a key under the policy's directory", doc: "trust:\n  release: {key: keys/release.pub}\ndefault:\n  signedBy: {anyOf: [release]}\n"},
		{name: "an absolute path", doc: "trust:\n  release: {key: " + secret + "}\ndefault: {}\n", want: []string{"candidate.yaml:2", "relative to the policy's directory"}},
		{name: "a path out of the directory", doc: "trust:\n  release: {key: ../" + filepath.Base(filepath.Dir(secret)) + "/secret.pub}\ndefault: {}\n", want: []string{"candidate.yaml:2", "escapes"}},
		{name: "a line error", doc: "default:\n  mode: sometimes\n", want: []string{"candidate.yaml:2", "mode"}},
		{name: "a root the verifier refuses", doc: "trust:\n  broken: {key: keys/release.pub}\ndefault: {}\n", want: []string{"candidate.yaml", "cannot use it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := r.file.Candidate([]byte(tc.doc))
			if len(tc.want) == 0 {
				if err != nil || c.Policy == nil || c.Evidence == nil {
					t.Fatalf("candidate %+v: %v", c, err)
				}
				if c.Policy.Hash() == r.gate.Policy().Hash() {
					return
				}
				if r.gate.Policy() == c.Policy {
					t.Error("the candidate was put in force")
				}
				return
			}
			if err == nil {
				t.Fatal("an invalid candidate compiled")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
