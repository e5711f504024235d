package cache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// stored lists which of ds a Content holds, by name.
func stored(t *testing.T, c *cache.Content, names map[digest.Digest]string, ds ...digest.Digest) []string {
	t.Helper()
	var out []string
	for _, d := range ds {
		_, err := c.Stat(context.Background(), d)
		switch {
		case err == nil:
			out = append(out, names[d])
		case !errors.Is(err, cache.ErrNotFound):
			t.Fatalf("Stat(%s): %v", names[d], err)
		}
	}
	return out
}

func TestContentEvictsLeastRecentlyUsed(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		clock := newFakeClock()
		c := newContent(t, td.d, cache.WithMaxSize(300), cache.WithContentClock(clock.Now))
		names := map[digest.Digest]string{}
		put := func(name string, seed int) digest.Digest {
			clock.Advance(time.Second)
			data, _ := blob(seed, 100)
			d := mustPut(t, c, data)
			names[d] = name
			return d
		}
		a, b, cc := put("a", 1), put("b", 2), put("c", 3)

		clock.Advance(time.Second)
		readAll(t, c, a, 0) // a is now more recent than b and c
		d := put("d", 4)
		if diff := cmp.Diff([]string{"a", "c", "d"}, stored(t, c, names, a, b, cc, d)); diff != "" {
			t.Errorf("after d (-want +got):\n%s", diff)
		}

		clock.Advance(time.Second)
		if n, err := c.Put(context.Background(), cc, iotestErrReader{}); err != nil || n != 0 { // Put touches too
			t.Fatalf("re-Put c = %d, %v", n, err)
		}
		e := put("e", 5)
		if diff := cmp.Diff([]string{"c", "d", "e"}, stored(t, c, names, a, b, cc, d, e)); diff != "" {
			t.Errorf("after e (-want +got):\n%s", diff)
		}
		if got := c.Size(); got != 300 {
			t.Errorf("Size() = %d, want 300", got)
		}
		if got := len(files(t, td)); got != 3 {
			t.Errorf("%d files in the driver, want 3", got)
		}
	})
}

func TestContentNeverEvictsOpenObjects(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		clock := newFakeClock()
		c := newContent(t, td.d, cache.WithMaxSize(250), cache.WithContentClock(clock.Now))
		ctx := context.Background()
		dataA, _ := blob(1, 100)
		a := mustPut(t, c, dataA)
		rc, err := c.Open(ctx, a, 0)
		if err != nil {
			t.Fatal(err)
		}
		names := map[digest.Digest]string{a: "a"}
		for i, name := range []string{"b", "c", "d"} {
			clock.Advance(time.Second)
			data, _ := blob(i+2, 100)
			names[mustPut(t, c, data)] = name
		}
		if _, err := c.Stat(ctx, a); err != nil {
			t.Fatalf("the open object was evicted: %v", err)
		}
		if got := c.Size(); got > 250 {
			t.Errorf("Size() = %d over the budget", got)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, dataA) {
			t.Fatalf("reading the open object: %d bytes, %v", len(got), err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
		_ = rc.Close() // a second Close must not release twice

		clock.Advance(time.Second)
		data, _ := blob(9, 100)
		e := mustPut(t, c, data)
		names[e] = "e"
		if _, err := c.Stat(ctx, a); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("a, closed and least recently used, was not evicted: %v", err)
		}
		if _, err := c.Stat(ctx, e); err != nil {
			t.Errorf("e: %v", err)
		}
	})
}

// TestContentOpenDuringEviction races readers against Puts that keep evicting: every Open either fails
// with ErrNotFound or reads the whole, correct object.
func TestContentOpenDuringEviction(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		c := newContent(t, td.d, cache.WithMaxSize(3*4096))
		ctx := context.Background()
		const objects = 12
		datas := make([][]byte, objects)
		ds := make([]digest.Digest, objects)
		for i := range objects {
			datas[i], ds[i] = blob(i, 4096)
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var mu sync.Mutex
		var opened, missed int
		for r := range 4 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(r), 1))
				for {
					select {
					case <-stop:
						return
					default:
					}
					i := rng.IntN(objects)
					rc, err := c.Open(ctx, ds[i], 0)
					if errors.Is(err, cache.ErrNotFound) {
						mu.Lock()
						missed++
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Errorf("Open: %v", err)
						return
					}
					got, err := io.ReadAll(rc)
					rc.Close()
					if err != nil || !bytes.Equal(got, datas[i]) {
						t.Errorf("object %d read %d bytes, %v; want it whole", i, len(got), err)
						return
					}
					mu.Lock()
					opened++
					mu.Unlock()
				}
			})
		}
		for round := range 8 {
			for i := range objects {
				if _, err := c.Put(ctx, ds[i], bytes.NewReader(datas[i])); err != nil {
					t.Fatalf("round %d Put %d: %v", round, i, err)
				}
			}
		}
		close(stop)
		wg.Wait()
		t.Logf("%d reads, %d misses", opened, missed)

		if err := c.Load(ctx); err != nil { // nothing open now: everything settles within budget
			t.Fatal(err)
		}
		if got := c.Size(); got > 3*4096 {
			t.Errorf("Size() = %d over the budget", got)
		}
		var onDisk int64
		for _, d := range ds {
			if size, err := c.Stat(ctx, d); err == nil {
				onDisk += size
			}
		}
		if onDisk != c.Size() {
			t.Errorf("driver holds %d bytes, Size() says %d", onDisk, c.Size())
		}
	})
}

func TestContentLoadKeepsBudgetAcrossRestarts(t *testing.T) {
	root := t.TempDir()
	fsd, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": root})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := newContent(t, fsd)
	names := map[digest.Digest]string{}
	base := time.Now().Add(-48 * time.Hour)
	var ds []digest.Digest
	// Modification times make b the least recently used, then c, then a. a is where a store written before small
	// objects were kept apart has it.
	for i, name := range []string{"a", "b", "c"} {
		data, d := blob(i, 100)
		p := filepath.Join(root, "small", "sha256", d.Encoded()[:2], d.Encoded())
		if name == "a" {
			p = filepath.Join(root, "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data")
			if err := fsd.PutContent(ctx, strings.TrimPrefix(p, root), data); err != nil {
				t.Fatal(err)
			}
		} else {
			mustPut(t, first, data)
		}
		names[d], ds = name, append(ds, d)
		mod := base.Add(map[string]time.Duration{"a": 3 * time.Hour, "b": time.Hour, "c": 2 * time.Hour}[name])
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	// Crashed uploads from long ago, and uploads in progress now: a large object's under /uploads, a small
	// object's in the object's own directory.
	objectDir := filepath.Join(root, "small", "sha256", ds[1].Encoded()[:2])
	stale, staleSmall := filepath.Join(root, "uploads", "stale"), filepath.Join(objectDir, ".upload-stale")
	fresh, freshSmall := filepath.Join(root, "uploads", "fresh"), filepath.Join(objectDir, ".upload-fresh")
	if err := os.MkdirAll(filepath.Join(root, "uploads"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stale, staleSmall, fresh, freshSmall} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{stale, staleSmall} {
		if err := os.Chtimes(p, base, base); err != nil {
			t.Fatal(err)
		}
	}

	second := newContent(t, fsd, cache.WithMaxSize(300))
	if err := second.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := second.Size(); got != 300 {
		t.Fatalf("Size() after Load = %d, want 300", got)
	}
	for _, p := range []string{stale, staleSmall} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale upload %s not removed: %v", p, err)
		}
	}
	for _, p := range []string{fresh, freshSmall} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("fresh upload removed: %v", err)
		}
	}
	if err := second.Load(ctx); err != nil || second.Size() != 300 {
		t.Errorf("Load twice: Size() = %d, %v; want 300 (no double counting)", second.Size(), err)
	}

	data, _ := blob(7, 150)
	d := mustPut(t, second, data)
	names[d] = "d"
	if diff := cmp.Diff([]string{"a", "d"}, stored(t, second, names, append(ds, d)...)); diff != "" {
		t.Errorf("after a Put over budget (-want +got):\n%s", diff)
	}

	// A smaller budget on the next start is enforced by Load itself.
	third := newContent(t, fsd, cache.WithMaxSize(150))
	if err := third.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"d"}, stored(t, third, names, append(ds, d)...)); diff != "" {
		t.Errorf("after Load with a smaller budget (-want +got):\n%s", diff)
	}
}

func TestContentLoadEmpty(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		c := newContent(t, td.d, cache.WithMaxSize(10))
		if err := c.Load(context.Background()); err != nil {
			t.Fatalf("Load of an empty driver: %v", err)
		}
		if c.Size() != 0 {
			t.Errorf("Size() = %d", c.Size())
		}
	})
}

// patternReader yields size deterministic bytes without holding them, and samples the heap as it goes.
type patternReader struct {
	block    []byte
	left     int64
	off      int
	since    int64
	peakHeap uint64
}

func newPatternReader(size int64, sample bool) *patternReader {
	block := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(42, 42))
	for i := range block {
		block[i] = byte(rng.Uint32())
	}
	r := &patternReader{block: block, left: size}
	if !sample {
		r.since = -1
	}
	return r
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.block[r.off:])
	if int64(n) > r.left {
		n = int(r.left)
	}
	r.off = (r.off + n) % len(r.block)
	r.left -= int64(n)
	if r.since >= 0 {
		if r.since += int64(n); r.since >= 4<<20 {
			r.since = 0
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			r.peakHeap = max(r.peakHeap, ms.HeapInuse)
		}
	}
	return n, nil
}

func TestContentBigBlobStreams(t *testing.T) {
	const size = 64 << 20
	h := sha256.New()
	if _, err := io.Copy(h, newPatternReader(size, false)); err != nil {
		t.Fatal(err)
	}
	d := digest.NewDigest(digest.SHA256, h)

	c := newContent(t, drivers(t)[0].d) // filesystem: the in-memory driver holds blobs in memory by design
	ctx := context.Background()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	r := newPatternReader(size, true)
	n, err := c.Put(ctx, d, r)
	if err != nil || n != size {
		t.Fatalf("Put = %d, %v", n, err)
	}
	growth := int64(r.peakHeap) - int64(before.HeapInuse)
	t.Logf("peak heap growth while streaming: %d KiB", growth>>10)
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB while streaming a %d MiB blob", growth>>20, size>>20)
	}

	rc, err := c.Open(ctx, d, size-10)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || len(tail) != 10 {
		t.Fatalf("tail read: %d bytes, %v", len(tail), err)
	}
	rc, err = c.Open(ctx, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h.Reset()
	if m, err := io.Copy(h, rc); err != nil || m != size || digest.NewDigest(digest.SHA256, h) != d {
		t.Fatalf("stored blob: %d bytes, %v, digest match %v", m, err, digest.NewDigest(digest.SHA256, h) == d)
	}
}
