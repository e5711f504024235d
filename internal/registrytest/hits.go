package registrytest

import (
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Kind is the sort of registry endpoint a request addressed, parsed from its
// /v2/ path.
type Kind string

// The kinds of request Hits tells apart.
const (
	KindPing      Kind = "ping"      // /v2/
	KindManifest  Kind = "manifest"  // /v2/<name>/manifests/<ref>
	KindBlob      Kind = "blob"      // /v2/<name>/blobs/<digest>
	KindTags      Kind = "tags"      // /v2/<name>/tags/list
	KindReferrers Kind = "referrers" // /v2/<name>/referrers/<digest>
	KindOther     Kind = "other"     // uploads, _catalog, anything else
)

// Hits counts the requests a Registry received, by method and kind and by
// exact path. It is safe for concurrent use. Every request that reaches the
// registry's listener counts, including ones answered 401 by the auth gate or
// short-circuited by a middleware; seeding traffic never counts.
type Hits struct {
	mu    sync.Mutex
	kinds map[hitKey]int
	paths map[hitKey]int
	total int
}

// hitKey is a method and either a kind or a path.
type hitKey struct{ method, what string }

func newHits() *Hits {
	return &Hits{kinds: map[hitKey]int{}, paths: map[hitKey]int{}}
}

// Count returns how many method requests of kind the registry received.
// An empty method counts every method.
func (h *Hits) Count(method string, kind Kind) int {
	return h.sum(h.kinds, method, string(kind))
}

// CountPath returns how many method requests for exactly path (no query)
// the registry received. An empty method counts every method.
func (h *Hits) CountPath(method, path string) int {
	return h.sum(h.paths, method, path)
}

// Total returns how many requests the registry received.
func (h *Hits) Total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// Repeated returns the paths (no query) requested more than once since the
// last Reset, whatever the methods, sorted: a client that asks for the same
// thing twice in one operation shows here.
func (h *Hits) Repeated() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	byPath := map[string]int{}
	for k, v := range h.paths {
		byPath[k.what] += v
	}
	var out []string
	for p, n := range byPath {
		if n > 1 {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Reset forgets every request counted so far.
func (h *Hits) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.kinds)
	clear(h.paths)
	h.total = 0
}

func (h *Hits) sum(m map[hitKey]int, method, what string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if method != "" {
		return m[hitKey{method, what}]
	}
	n := 0
	for k, v := range m {
		if k.what == what {
			n += v
		}
	}
	return n
}

func (h *Hits) record(r *http.Request) {
	kind, _ := classify(r.URL.Path)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kinds[hitKey{r.Method, string(kind)}]++
	h.paths[hitKey{r.Method, r.URL.Path}]++
	h.total++
}

// wrap counts every request before handing it to next.
func (h *Hits) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.record(r)
		next.ServeHTTP(w, r)
	})
}

// classify parses a registry path into its kind and repository name (empty
// when the path names none).
func classify(path string) (Kind, string) {
	rest, ok := strings.CutPrefix(path, "/v2")
	if !ok || (rest != "" && rest[0] != '/') {
		return KindOther, ""
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		if path == "/v2" || path == "/v2/" {
			return KindPing, ""
		}
		return KindOther, ""
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	repo := func(end int) string { return strings.Join(segs[:end], "/") }
	switch {
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		return KindOther, repo(n - 2)
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		return KindOther, repo(n - 3)
	case n >= 3 && segs[n-2] == "manifests":
		return KindManifest, repo(n - 2)
	case n >= 3 && segs[n-2] == "blobs":
		return KindBlob, repo(n - 2)
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return KindTags, repo(n - 2)
	case n >= 3 && segs[n-2] == "referrers":
		return KindReferrers, repo(n - 2)
	}
	return KindOther, ""
}
