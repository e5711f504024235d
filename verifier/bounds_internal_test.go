package verifier

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestFetchBlob: a blob is read at most to the size its descriptor names,
// refused unread when the registry announces another size, and refused when
// its bytes are other than the descriptor's, whether or not the registry
// says how long it is.
func TestFetchBlob(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("x"), 1000)
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /v2/a/blobs/<digest>?n=<bytes to send>&chunked=1
		if !strings.HasPrefix(r.URL.Path, "/v2/a/blobs/") {
			http.NotFound(w, r)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		body := bytes.Repeat([]byte("x"), n)
		if r.URL.Query().Get("flip") != "" {
			body[0] = 'y'
		}
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		} else {
			w.(http.Flusher).Flush() // or the server sets the length of a small body itself
		}
		m, _ := w.Write(body)
		sent.Add(int64(m))
	}))
	t.Cleanup(srv.Close)
	v, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := blobKey{digest: digest.FromBytes(content), size: int64(len(content))}
	tests := []struct {
		name    string
		key     blobKey
		query   string
		want    string // in the error; "" for the content
		maxRead int    // bytes the verifier may take
	}{
		{name: "as described", key: good, query: "n=1000"},
		{name: "as described, chunked", key: good, query: "n=1000&chunked=1"},
		{name: "announced larger", key: good, query: "n=1000000", want: "the registry sends 1000000 bytes"},
		{name: "larger, chunked", key: good, query: "n=1000000&chunked=1", want: "1001 bytes read", maxRead: 1001},
		{name: "shorter", key: good, query: "n=10&chunked=1", want: "10 bytes read"},
		{name: "other bytes", key: good, query: "n=1000&flip=1", want: "the content is sha256:"},
		{name: "missing", key: good, query: "n=0&missing=1", want: "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := Target{Registry: strings.TrimPrefix(srv.URL, "http://"), Insecure: true, Repository: "a", Digest: good.digest}
			if strings.Contains(tt.query, "missing") {
				target.Repository = "b"
			}
			read := new(atomic.Int64)
			target.Transport = countingTransport{next: http.DefaultTransport, n: read, query: tt.query}
			src, err := v.source(target)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fetchBlob(t.Context(), src, target.Repository, tt.key)
			switch {
			case tt.want == "" && (err != nil || !bytes.Equal(got, content)):
				t.Errorf("fetchBlob = %d bytes, %v; want the content", len(got), err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("fetchBlob = %d bytes, %v; want an error with %q", len(got), err, tt.want)
			}
			if max := max(tt.maxRead, 1000); read.Load() > int64(max) {
				t.Errorf("read %d bytes, want at most %d", read.Load(), max)
			}
		})
	}
}

// countingTransport adds a query to every request and counts the response
// body bytes read.
type countingTransport struct {
	next  http.RoundTripper
	n     *atomic.Int64
	query string
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.RawQuery = c.query
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		resp.Body = &countedBody{ReadCloser: resp.Body, n: c.n}
	}
	return resp, err
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func TestBytesString(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{1 << 20: "1 MiB", 16 << 20: "16 MiB", 64 << 10: "64 KiB", 1500: "1500 bytes", 0: "0 bytes"} {
		if got := bytesString(n); got != want {
			t.Errorf("bytesString(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestBudget: what one kind of evidence takes is counted; what does not fit
// is refused with a reason and counts nothing; concurrent takes never go past
// the limit.
func TestBudget(t *testing.T) {
	t.Parallel()
	b := newBudget("attestations", 1000)
	steps := []struct {
		n        int64
		what     string
		refused  string
		wantUsed int64
	}{
		{n: 600, what: "a layer", wantUsed: 600},
		{n: 500, what: "a bundle", refused: "attestations of this image need more than 1000 bytes of evidence: a bundle, after 600 bytes read", wantUsed: 600},
		{n: 400, what: "an index", wantUsed: 1000},
		{n: 0, what: "nothing", wantUsed: 1000},
		{n: 1, what: "a byte", refused: "attestations of this image need more than 1000 bytes of evidence: a byte, after 1000 bytes read", wantUsed: 1000},
	}
	for _, s := range steps {
		err := b.take(s.n, s.what)
		switch {
		case s.refused == "" && err != nil:
			t.Errorf("take(%d): %v", s.n, err)
		case s.refused != "" && (err == nil || err.Error() != s.refused || !isBudget(err)):
			t.Errorf("take(%d) = %v, want %q", s.n, err, s.refused)
		}
		if used := b.used.Load(); used != s.wantUsed {
			t.Errorf("after take(%d): %d used, want %d", s.n, used, s.wantUsed)
		}
	}

	c := newBudget("signatures", 1000)
	var wg sync.WaitGroup
	var took atomic.Int64
	for i := range 64 {
		wg.Go(func() {
			if c.take(30, fmt.Sprint(i)) == nil {
				took.Add(30)
			}
		})
	}
	wg.Wait()
	if took.Load() != 990 || c.used.Load() != 990 {
		t.Errorf("concurrent takes: %d taken, %d used; want 990", took.Load(), c.used.Load())
	}
}
