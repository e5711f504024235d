package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admin"
	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// TestSoak drives mixed traffic through one Portcullis (policy gate with a real cosign key, allow/deny lists behind
// the admin API, a reloadable policy file) in front of CNCF Distribution for PORTCULLIS_SOAK_DURATION (default 30s;
// `make soak` runs 5 minutes): many images by tag and by digest, an index and its children, cold (images pushed
// while it runs) and warm, some denied by the trust gate and some by the deny list, full and Range blob reads and
// HEADs, while the deny list churns through the admin API, the policy file is reloaded, and the upstream fails on
// purpose for the faulty/ repositories (503s, blobs reset halfway, blobs with a flipped byte). Every body is checked
// against its digest (a Range against the blob's bytes). It fails on a single wrong byte, on any 5xx or unexpected
// answer for an image whose upstream was not failing on purpose, and when goroutines do not come back down after
// the traffic stops. PORTCULLIS_SOAK_REPORT names a file to write the report to.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: runs for PORTCULLIS_SOAK_DURATION (default 30s)")
	}
	dur := 30 * time.Second
	if s := os.Getenv("PORTCULLIS_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("PORTCULLIS_SOAK_DURATION=%q: %v", s, err)
		}
		dur = d
	}
	s := newSoak(t)
	r := s.run(t, dur)
	t.Logf("soak report:\n%s", r)
	if path := os.Getenv("PORTCULLIS_SOAK_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(r.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	if r.WrongBytes != 0 {
		t.Errorf("%d responses with wrong bytes", r.WrongBytes)
	}
	if r.ReloadRefusals != 0 {
		t.Errorf("%d blobs refused after a policy reload that admits their image too", r.ReloadRefusals)
	}
	if r.Portcullis5xx != 0 || r.Unexpected != 0 {
		t.Errorf("%d 5xx and %d other unexpected answers for images whose upstream was not failing on purpose: %v",
			r.Portcullis5xx, r.Unexpected, r.Errors)
	}
	if r.Denied == 0 || r.OK == 0 || r.FaultsInjected == 0 || r.PolicyReloads == 0 || r.ListChanges == 0 {
		t.Errorf("the soak did not exercise everything: %d served, %d denied, %d faults injected, %d policy reloads, %d list changes",
			r.OK, r.Denied, r.FaultsInjected, r.PolicyReloads, r.ListChanges)
	}
	if r.GoroutinesEnd > r.GoroutinesStart+25 {
		t.Errorf("goroutines: %d before the traffic, %d after it stopped", r.GoroutinesStart, r.GoroutinesEnd)
	}
	// Generous, so that only a gross leak fails the 30-second run: the live heap over the last window may not exceed
	// the first window's by more than half plus 32 MiB. The 5-minute run (`make soak`) shows how flat it is.
	if r.LiveLast > r.LiveFirst*3/2+32<<20 {
		t.Errorf("live heap grew from %d MiB (first window) to %d MiB (last window)", r.LiveFirst>>20, r.LiveLast>>20)
	}
}

// soakImage is one image (or index) the soak pulls, with what Portcullis must answer for it.
type soakImage struct {
	repo, tag string
	digest    digest.Digest
	want      int  // 200 or 403
	faulty    bool // its upstream fails on purpose: failures count as injected
	blobs     []digest.Digest
	children  []*soakImage // an index's platform images
}

// soak is the system under test and what the traffic knows about it.
type soak struct {
	e      *env
	admin  *httptest.Server
	faults *soakFaults
	dir    string // the policy file's directory
	host   string // the upstream's name, as list entries say it

	// reloads goes up by one as a policy reload starts and again as it ends.
	reloads atomic.Int64

	mu     sync.Mutex
	images []*soakImage
	fresh  []*soakImage // pushed while the soak runs; the oldest retire
	bytes  map[digest.Digest][]byte
	pushed int
}

const soakPolicy = `trust:
  release: {key: release.pub}
rules:
  - name: signed
    match: {repository: "signed/**"}
    mode: enforce
    signedBy: {anyOf: [release]}
%s
default:
  mode: enforce
`

func newSoak(t *testing.T) *soak {
	t.Helper()
	key := cosignKey(t)
	files := map[string][]byte{"release.pub": key.pubPEM(t)}
	doc := fmt.Sprintf(soakPolicy, "")
	faults := &soakFaults{rng: rand.New(rand.NewPCG(1, 2))}
	state := &memState{}
	lists := admission.NewLists(state, state)
	e := newEnv(t, withUpstream(registrytest.WithStorageDir(t.TempDir()), registrytest.WithMiddleware(faults.wrap)),
		withPolicy(doc, files, admission.WithLists(lists)))
	t.Cleanup(func() { _ = e.gate.Close() })
	dir := t.TempDir()
	for name, b := range map[string][]byte{"release.pub": files["release.pub"], "policy.yaml": []byte(doc)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	client, err := upstream.New(e.up.Host(), e.up.URL(), upstream.WithAllowPrivateAddresses(true))
	if err != nil {
		t.Fatal(err)
	}
	build := func(pol *policy.Policy) (admission.Evidence, error) {
		v, err := verifier.New(pol.TrustRoots())
		if err != nil {
			return nil, err
		}
		return admission.NewEvidence(v, map[string]admission.Endpoint{e.up.Host(): client}, nil)
	}
	pf, err := admission.NewPolicyFile(filepath.Join(dir, "policy.yaml"), e.gate, build, nil)
	if err != nil {
		t.Fatal(err)
	}
	api, err := admin.New(admin.StaticToken("secret"), admin.WithLogger(testLogger(t)), admin.WithLists(lists),
		admin.WithPolicy(pf, e.gate, testResolver{name: e.up.Host(), client: client}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	s := &soak{e: e, admin: srv, faults: faults, dir: dir, host: e.up.Host(), bytes: map[digest.Digest][]byte{}}

	for i := range 8 {
		for _, tag := range []string{"v1", "v2"} {
			s.add(t, s.push(t, fmt.Sprintf("plain/app%d:%s", i, tag), 3, int64(16<<10)<<(i%4), 200, false, true))
		}
	}
	s.add(t, s.push(t, "big/app:v1", 1, 4<<20, 200, false, true))
	for i := range 3 {
		s.add(t, s.push(t, fmt.Sprintf("faulty/app%d:v1", i), 2, 256<<10, 200, true, true))
	}
	signed := s.push(t, "signed/app:v1", 2, 32<<10, 200, false, true)
	cosigntest.Sign(t, cosigntest.Binary(t), e.up.Ref("signed/app@"+signed.digest.String()), key.priv)
	s.add(t, signed)
	s.add(t, s.push(t, "signed/unsigned:v1", 2, 32<<10, 403, false, true))
	s.add(t, s.push(t, "blocked/app:v1", 2, 32<<10, 403, false, true))
	s.add(t, s.pushIndex(t, "index/app:v1"))
	if code := s.adminCall(t, http.MethodPost, "/admin/v1/deny", fmt.Sprintf(`{"match":%q,"reason":"soak: always denied"}`, s.host+"/blocked/**"), nil); code != http.StatusCreated {
		t.Fatalf("deny blocked/**: %d", code)
	}
	return s
}

// push pushes a random image to the upstream and returns what the soak knows about it; keep says whether to keep its
// blobs' bytes (for Range checks).
func (s *soak) push(t testing.TB, repoTag string, layers int, size int64, want int, faulty, keep bool) *soakImage {
	t.Helper()
	img := s.e.up.PushRandomImage(t, repoTag, layers, size)
	return s.record(t, repoTag, img, want, faulty, keep)
}

func (s *soak) record(t testing.TB, repoTag string, img v1.Image, want int, faulty, keep bool) *soakImage {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(repoTag, ":")
	im := &soakImage{repo: repo, tag: tag, digest: digest.Digest(d.String()), want: want, faulty: faulty}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	im.blobs = append(im.blobs, digest.FromBytes(cfg))
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		ld, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		im.blobs = append(im.blobs, digest.Digest(ld.String()))
		if keep {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			s.bytes[im.blobs[len(im.blobs)-1]] = b
			s.mu.Unlock()
		}
	}
	return im
}

func (s *soak) pushIndex(t testing.TB, repoTag string) *soakImage {
	t.Helper()
	idx := s.e.up.PushRandomIndex(t, repoTag, registrytest.Platforms()...)
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(repoTag, ":")
	im := &soakImage{repo: repo, tag: tag, digest: digest.Digest(d.String()), want: 200}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, desc := range m.Manifests {
		child, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		c := s.record(t, repo+":"+tag, child, 200, false, false)
		c.tag = "" // by digest only
		im.children = append(im.children, c)
	}
	return im
}

func (s *soak) add(t testing.TB, im *soakImage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images = append(s.images, im)
}

// pick returns a random image: one time in four one pushed during the soak (a cold pull), else one of the fixed set.
func (s *soak) pick(rng *rand.Rand) *soakImage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.fresh) > 0 && rng.IntN(4) == 0 {
		return s.fresh[rng.IntN(len(s.fresh))]
	}
	return s.images[rng.IntN(len(s.images))]
}

func (s *soak) blobBytes(d digest.Digest) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes[d]
}

// adminCall sends an admin request with the write token and decodes the answer into out when not nil.
func (s *soak) adminCall(t testing.TB, method, path, body string, out any) int {
	req, err := http.NewRequest(method, s.admin.URL+path, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// soakFaults fails GETs of the faulty/ repositories on purpose: of every 100, 10 answer 503, 10 blob bodies stop
// halfway with a reset, and 10 blob bodies arrive whole with one byte flipped.
type soakFaults struct {
	mu       sync.Mutex
	rng      *rand.Rand
	injected atomic.Int64
}

func (f *soakFaults) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v2/faulty/") {
			next.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		n := f.rng.IntN(100)
		f.mu.Unlock()
		blob := strings.Contains(r.URL.Path, "/blobs/")
		switch {
		case n < 10:
			f.injected.Add(1)
			http.Error(w, "injected", http.StatusServiceUnavailable)
		case n < 20 && blob:
			f.injected.Add(1)
			_, b := headersOf(next, w, r)
			_, _ = w.Write(b[:len(b)/2])
			panic(http.ErrAbortHandler) // the connection is reset mid-body
		case n < 30 && blob:
			f.injected.Add(1)
			code, b := headersOf(next, w, r)
			if len(b) > 0 && code == http.StatusOK {
				b[len(b)/2] ^= 0xff
			}
			_, _ = w.Write(b)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// headersOf has next answer r aside, sends its status and headers on w, and returns the status and a copy of the
// body, for the caller to send (or not) as it likes.
func headersOf(next http.Handler, w http.ResponseWriter, r *http.Request) (int, []byte) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	return rec.Code, bytes.Clone(rec.Body.Bytes())
}
