package integration

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
)

// faultSwitch puts a fault in front of the upstream while it is on; off, requests pass untouched.
type faultSwitch struct {
	f atomic.Pointer[func(w http.ResponseWriter, r *http.Request, next http.Handler)]
}

func (s *faultSwitch) set(f func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	s.f.Store(&f)
}
func (s *faultSwitch) off() { s.f.Store(nil) }

func (s *faultSwitch) middleware(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.f.Load(); f != nil {
			(*f)(w, r, h)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// onGET applies f to GETs whose path contains sub; the rest pass.
func onGET(sub string, f func(w http.ResponseWriter, r *http.Request, next http.Handler)) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, sub) {
			f(w, r, next)
			return
		}
		next.ServeHTTP(w, r)
	}
}

// rewrite serves what the upstream would, passed through edit (status, headers and body).
func rewrite(edit func(h http.Header, body []byte) []byte) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := edit(rec.Header(), rec.Body.Bytes())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		if w.Header().Get("Content-Length") != "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}
}

// cutAfter sends the real headers (with Content-Length declared) and the first n bytes of the real body, then
// drops the connection: with reset, as a TCP reset (SO_LINGER 0), else as a plain close.
func cutAfter(n int, declared func(real int) int, reset bool) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n")
		buf.WriteString("Content-Length: " + strconv.Itoa(declared(len(body))) + "\r\n\r\n")
		buf.Write(body[:min(n, len(body))])
		buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0)
		}
	}
}

// stallAfter sends the real headers and the first n bytes, then nothing until the client goes away (at most
// two minutes); n < 0 stalls before the headers.
func stallAfter(n int) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		wait := func() {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Minute):
			}
		}
		if n < 0 {
			wait()
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:n])
		http.NewResponseController(w).Flush()
		wait()
	}
}

// spoolFiles lists what the download spool holds.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// eventually polls cond for up to 10s (generous: the machine is shared).
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestHostileUpstreamManifests: manifests that are too big, mislabelled or not what their digest says are
// refused with a clear error, by tag and by digest; nothing is stored, and once the upstream behaves the same
// request succeeds.
func TestHostileUpstreamManifests(t *testing.T) {
	var sw faultSwitch
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(sw.middleware)), withClient(upstream.WithRetries(0, time.Millisecond)))
	big := bytes.Repeat([]byte(" "), 5<<20)
	for _, tc := range []struct {
		name     string
		fault    func(http.ResponseWriter, *http.Request, http.Handler)
		status   int
		wantBody string
	}{
		{"over the size cap, with a Content-Length", onGET("/manifests/", rewrite(func(_ http.Header, b []byte) []byte { return append(b, big...) })),
			http.StatusBadGateway, "over the size limit"},
		{"over the size cap, chunked", onGET("/manifests/", func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			for range 5 {
				_, _ = w.Write(big[:1<<20])
				http.NewResponseController(w).Flush()
			}
		}), http.StatusBadGateway, "over the size limit"},
		{"Content-Type of an index on an image manifest", onGET("/manifests/", rewrite(func(h http.Header, b []byte) []byte {
			h.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			return b
		})), http.StatusBadGateway, "contradicts its bytes"},
		{"Content-Type text/html", onGET("/manifests/", rewrite(func(h http.Header, b []byte) []byte {
			h.Set("Content-Type", "text/html; charset=utf-8")
			return b
		})), http.StatusBadGateway, "contradicts its bytes"},
		{"bytes that do not match the digest", onGET("/manifests/", rewrite(func(_ http.Header, b []byte) []byte {
			return append(b, '\n')
		})), http.StatusBadGateway, "does not match its digest"},
	} {
		for _, by := range []string{"tag", "digest"} {
			t.Run(tc.name+", by "+by, func(t *testing.T) {
				repo := "hostile/m" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
				img := e.up.PushRandomImage(t, repo+":v1", 1, 512)
				md, _ := img.Digest()
				raw, _ := img.RawManifest()
				ref := "v1"
				if by == "digest" {
					ref = md.String()
				}
				sw.set(tc.fault)
				resp, body := e.get(t, http.MethodGet, "/v2/"+repo+"/manifests/"+ref)
				sw.off()
				if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.wantBody) {
					t.Errorf("status %d %s; want %d naming %q", resp.StatusCode, body, tc.status, tc.wantBody)
				}
				if _, err := e.content.Stat(context.Background(), digest.Digest(md.String())); err == nil {
					t.Error("the refused manifest was stored")
				}
				resp, body = e.get(t, http.MethodGet, "/v2/"+repo+"/manifests/"+ref)
				if resp.StatusCode != http.StatusOK || !bytes.Equal(body, raw) {
					t.Errorf("once the upstream behaves: status %d, %d bytes; want the manifest", resp.StatusCode, len(body))
				}
			})
		}
	}
}

// TestHostileUpstreamBlobs: a blob cut off, reset, stalled, or with a Content-Length that lies gives the client an
// error, never the blob in full and clean; the spool and the store keep nothing; every client of the shared
// download sees the error, and the next request downloads afresh and gets the blob.
func TestHostileUpstreamBlobs(t *testing.T) {
	var sw faultSwitch
	spool := t.TempDir()
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(sw.middleware)),
		withClient(upstream.WithRetries(0, time.Millisecond), upstream.WithTimeout(time.Second), upstream.WithBodyIdleTimeout(time.Second)),
		withProxy(proxy.WithSpoolDir(spool)))
	const size = 256 << 10
	same := func(n int) int { return n }
	for _, tc := range []struct {
		name  string
		fault func(http.ResponseWriter, *http.Request, http.Handler)
		// shared: the fault lasts long enough (a stall) for the second client to join the first one's download.
		shared bool
	}{
		{"cut off halfway", cutAfter(size/2, same, false), false},
		{"reset halfway", cutAfter(size/2, same, true), false},
		{"Content-Length longer than the body", cutAfter(1<<30, func(n int) int { return n + 100 }, false), false},
		{"Content-Length shorter than the body", rewriteLength(-100), false},
		{"first byte never comes", stallAfter(-1), true},
		{"body stalls halfway", stallAfter(size / 2), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "hostile/b" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
			img := e.up.PushRandomImage(t, repo+":v1", 1, size)
			ls, _ := img.Layers()
			ld, _ := ls[0].Digest()
			rc, _ := ls[0].Compressed()
			want, _ := io.ReadAll(rc)
			path := "/v2/" + repo + "/blobs/" + ld.String()
			e.up.Hits().Reset()

			sw.set(onGET("/blobs/", tc.fault))
			// Two clients on one shared download: both must see the failure, within the timeouts (1s here; the
			// stalls last two minutes).
			start := time.Now()
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Get(e.srv.URL + path)
					if err != nil {
						return // cut before the headers: an error
					}
					got, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if rerr == nil && resp.StatusCode == http.StatusOK {
						t.Errorf("client %d: status 200 and a clean end after %d bytes (want %d): a broken blob served as whole", i, len(got), len(want))
					}
					if resp.StatusCode == http.StatusOK && !bytes.Equal(got, want[:min(len(got), len(want))]) {
						t.Errorf("client %d: bytes that are not the blob's", i)
					}
				}()
				time.Sleep(50 * time.Millisecond)
			}
			wg.Wait()
			sw.off()
			if el := time.Since(start); el > 30*time.Second {
				t.Errorf("the clients got their error after %v; the upstream timeouts are 1s", el)
			}
			if _, err := e.content.Stat(context.Background(), digest.Digest(ld.String())); err == nil {
				t.Error("the broken blob was stored")
			}
			if !eventually(func() bool { return len(spoolFiles(t, spool)) == 0 }) {
				t.Errorf("the spool keeps %v", spoolFiles(t, spool))
			}
			failed := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob)
			if tc.shared && failed != 1 {
				t.Errorf("two clients made %d upstream blob GETs, want 1 shared download", failed)
			}

			resp, got := e.get(t, http.MethodGet, path)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
				t.Errorf("once the upstream behaves: status %d, %d bytes; want the blob", resp.StatusCode, len(got))
			}
			if n := e.up.Hits().Count(http.MethodGet, registrytest.KindBlob); n != failed+1 {
				t.Errorf("%d upstream blob GETs in all, want %d: the next request must download afresh", n, failed+1)
			}
			if !eventually(func() bool {
				_, err := e.content.Stat(context.Background(), digest.Digest(ld.String()))
				return err == nil
			}) {
				t.Error("the good blob was not stored")
			}
		})
	}
}

// rewriteLength declares a Content-Length off by delta from the real body; the server sends what it declared.
func rewriteLength(delta int) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		n := len(body) + delta
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:min(n, len(body))])
	}
}

// TestUpstream5xxStormServesStale: an upstream that answers everything with 503 opens the circuit breaker; cached
// tags and stored blobs keep serving (stale-if-error), a tag never seen gets 503 with Retry-After at once, and the
// upstream gets no more requests than the breaker's threshold however many pulls come in.
func TestUpstream5xxStormServesStale(t *testing.T) {
	var sw faultSwitch
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(sw.middleware)),
		withProxy(proxy.WithTagTTL(10*time.Millisecond), proxy.WithStaleIfError(true, time.Hour)),
		withClient(upstream.WithRetries(3, time.Millisecond), upstream.WithCircuitBreaker(10, time.Hour)))
	img := e.up.PushRandomImage(t, "storm/app:v1", 1, 4096)
	e.up.PushRandomImage(t, "storm/app:never-pulled", 1, 4096)
	raw, _ := img.RawManifest()
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	if resp, _ := e.get(t, http.MethodGet, "/v2/storm/app/manifests/v1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	}
	if resp, _ := e.get(t, http.MethodGet, "/v2/storm/app/blobs/"+ld.String()); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up blob: %d", resp.StatusCode)
	}

	sw.set(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	e.up.Hits().Reset()
	const pulls = 50
	for i := range pulls {
		time.Sleep(15 * time.Millisecond) // past the tag TTL: every pull asks the upstream (or the breaker)
		resp, body := e.get(t, http.MethodGet, "/v2/storm/app/manifests/v1")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, raw) {
			t.Fatalf("pull %d in the storm: status %d; want the stale manifest", i, resp.StatusCode)
		}
		if resp, _ := e.get(t, http.MethodGet, "/v2/storm/app/blobs/"+ld.String()); resp.StatusCode != http.StatusOK {
			t.Fatalf("pull %d in the storm: blob status %d", i, resp.StatusCode)
		}
	}
	start := time.Now()
	resp, body := e.get(t, http.MethodGet, "/v2/storm/app/manifests/never-pulled")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "circuit open") {
		t.Errorf("a tag never seen, in the storm: status %d %s; want 503 with Retry-After naming the open circuit", resp.StatusCode, body)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("the refusal took %v; an open breaker answers at once", el)
	}
	if n := e.up.Hits().Total(); n > 10 {
		t.Errorf("%d pulls in a 5xx storm sent %d requests upstream, want at most the breaker's threshold (10)", pulls, n)
	}
}
