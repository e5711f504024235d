package bench

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// firstBytes records, while armed, when each response's first body bytes were handed to the connection. The herd
// row reads it for the followers' spread as the server made it: the lab's 200 client goroutines share the proxy's
// two cores (a real fleet's nodes do not), so when a client goroutine gets round to reading its first byte says
// as much about the Go scheduler under the clients' own load as about the proxy.
type firstBytes struct {
	mu    sync.Mutex
	armed bool
	at    []time.Time     // first body bytes
	wait  []time.Duration // from the request's arrival to its first body byte
}

// arm clears what was recorded and starts recording; disarm stops and returns the spread from the first response's
// first byte to the last one's.
func (f *firstBytes) arm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.at, f.wait = true, f.at[:0], f.wait[:0]
}

func (f *firstBytes) disarm() (n int, spread time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
	return len(f.at), spanOf(f.at)
}

// spanOf is how long after the earliest of ts the latest came; 0 for none.
func spanOf(ts []time.Time) time.Duration {
	if len(ts) == 0 {
		return 0
	}
	first, last := ts[0], ts[0]
	for _, t := range ts {
		if t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	return last.Sub(first)
}

func (f *firstBytes) record(arrived, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armed {
		f.at = append(f.at, t)
		f.wait = append(f.wait, t.Sub(arrived))
	}
}

// longestWait is the longest any recorded response waited from its request's arrival to its first body byte.
func (f *firstBytes) longestWait() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var longest time.Duration
	for _, w := range f.wait {
		longest = max(longest, w)
	}
	return longest
}

// wrap records the first body write of every blob response of h.
func (f *firstBytes) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			w = &firstByteWriter{ResponseWriter: w, log: f, arrived: time.Now()}
		}
		h.ServeHTTP(w, r)
	})
}

// firstByteWriter keeps the ResponseWriter's ReadFrom (sendfile) and Flush, so that wrapping changes no path.
type firstByteWriter struct {
	http.ResponseWriter
	log     *firstBytes
	arrived time.Time
	done    bool
}

// Write records when the first bytes are offered to the connection: how soon the client takes them is the
// client's and the network's part.
func (w *firstByteWriter) Write(b []byte) (int, error) {
	if !w.done && len(b) > 0 {
		w.done = true
		w.log.record(w.arrived, time.Now())
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom records when it is called: a sendfile cannot say when its first byte left.
func (w *firstByteWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.done {
		w.done = true
		w.log.record(w.arrived, time.Now())
	}
	return io.Copy(w.ResponseWriter, r)
}

func (w *firstByteWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

func (w *firstByteWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
