package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// testDriver is a storage driver under test; root is its directory for the filesystem driver, "" otherwise.
type testDriver struct {
	name string
	d    storagedriver.StorageDriver
	root string
}

func drivers(t *testing.T) []testDriver {
	t.Helper()
	root := t.TempDir()
	fsd, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": root})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := cache.NewDriver("inmemory", nil)
	if err != nil {
		t.Fatal(err)
	}
	return []testDriver{{"filesystem", fsd, root}, {"inmemory", mem, ""}}
}

func forEachDriver(t *testing.T, fn func(t *testing.T, td testDriver)) {
	for _, td := range drivers(t) {
		t.Run(td.name, func(t *testing.T) { fn(t, td) })
	}
}

// objectPath is where a store on td keeps the object d of size bytes: a local store keeps small ones apart.
func objectPath(td testDriver, d digest.Digest, size int) string {
	enc := d.Encoded()
	if td.root != "" && size <= 64<<10 {
		return "/small/sha256/" + enc[:2] + "/" + enc
	}
	return "/blobs/sha256/" + enc[:2] + "/" + enc + "/data"
}

func newContent(t *testing.T, d storagedriver.StorageDriver, opts ...cache.ContentOption) *cache.Content {
	t.Helper()
	c, err := cache.NewContent(d, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func blob(seed, size int) ([]byte, digest.Digest) {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seed*31 + i*7 + i>>8)
	}
	return b, digest.FromBytes(b)
}

func mustPut(t *testing.T, c *cache.Content, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	if _, err := c.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put(%s): %v", d, err)
	}
	return d
}

func readAll(t *testing.T, c *cache.Content, d digest.Digest, offset int64) []byte {
	t.Helper()
	rc, err := c.Open(context.Background(), d, offset)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", d, offset, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// files lists the regular files a driver holds.
func files(t *testing.T, td testDriver) []string {
	t.Helper()
	var out []string
	if td.root != "" {
		err := filepath.WalkDir(td.root, func(p string, de fs.DirEntry, err error) error {
			if err == nil && de.Type().IsRegular() {
				out = append(out, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	err := td.d.Walk(context.Background(), "/", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			out = append(out, fi.Path())
		}
		return nil
	})
	if err != nil && !errors.As(err, new(storagedriver.PathNotFoundError)) {
		t.Fatal(err)
	}
	return out
}

func TestContentPutStatOpen(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		c := newContent(t, td.d)
		ctx := context.Background()
		data, d := blob(1, 100_000)
		n, err := c.Put(ctx, d, bytes.NewReader(data))
		if err != nil || n != int64(len(data)) {
			t.Fatalf("Put = %d, %v; want %d, nil", n, err, len(data))
		}
		if size, err := c.Stat(ctx, d); err != nil || size != int64(len(data)) {
			t.Fatalf("Stat = %d, %v; want %d", size, err, len(data))
		}
		if got := c.Size(); got != int64(len(data)) {
			t.Errorf("Size() = %d, want %d", got, len(data))
		}
		for _, off := range []int64{0, 1, 4096, 99_999, 100_000} {
			if got := readAll(t, c, d, off); !bytes.Equal(got, data[off:]) {
				t.Errorf("Open at %d: got %d bytes, want the %d from there", off, len(got), len(data[off:]))
			}
		}
		for _, off := range []int64{-1, 100_001} {
			if _, err := c.Open(ctx, d, off); !errors.Is(err, cache.ErrInvalidOffset) {
				t.Errorf("Open at %d: %v; want ErrInvalidOffset", off, err)
			}
		}
		want := []string{filepath.Join(td.root, "/blobs/sha256", d.Encoded()[:2], d.Encoded(), "data")}
		if diff := cmp.Diff(want, files(t, td)); diff != "" {
			t.Errorf("stored files (-want +got):\n%s", diff)
		}

		// Putting it again returns at once without reading.
		if n, err := c.Put(ctx, d, iotestErrReader{}); err != nil || n != 0 {
			t.Errorf("second Put = %d, %v; want 0, nil without reading", n, err)
		}
	})
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestContentMissing(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		c := newContent(t, td.d)
		ctx := context.Background()
		_, d := blob(2, 10)
		if _, err := c.Stat(ctx, d); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Stat: %v; want ErrNotFound", err)
		}
		if _, err := c.Open(ctx, d, 0); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Open: %v; want ErrNotFound", err)
		}
		if _, err := c.Get(ctx, d, 100); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Get: %v; want ErrNotFound", err)
		}
		if err := c.Delete(ctx, d); err != nil {
			t.Errorf("Delete of a missing object: %v", err)
		}
		if _, err := c.Stat(ctx, "sha256:nothex"); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Stat of an invalid digest: %v; want ErrNotFound", err)
		}
	})
}

func TestContentPutFailuresLeaveNoTrace(t *testing.T) {
	data, d := blob(3, 50_000)
	_, other := blob(4, 10)
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		dgst    digest.Digest
		r       io.Reader
		wantErr error
	}{
		{"digest mismatch", ctx, other, bytes.NewReader(data), cache.ErrDigestMismatch},
		{"truncated", ctx, d, bytes.NewReader(data[:len(data)-1]), cache.ErrDigestMismatch},
		{"reader fails midway", ctx, d, io.MultiReader(bytes.NewReader(data[:1000]), iotestErrReader{}), nil},
		{"cancelled", cancelled, d, bytes.NewReader(data), context.Canceled},
		{"invalid digest", ctx, "sha256:zz", bytes.NewReader(data), nil},
		{"unknown algorithm", ctx, "md5:0123456789abcdef0123456789abcdef", bytes.NewReader(data), nil},
	}
	forEachDriver(t, func(t *testing.T, td testDriver) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newContent(t, td.d)
				_, err := c.Put(tt.ctx, tt.dgst, tt.r)
				if err == nil {
					t.Fatal("Put succeeded")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("Put: %v; want %v", err, tt.wantErr)
				}
				if got := files(t, td); len(got) != 0 {
					t.Errorf("files left behind: %v", got)
				}
				if _, err := c.Stat(ctx, tt.dgst); !errors.Is(err, cache.ErrNotFound) {
					t.Errorf("Stat after failed Put: %v; want ErrNotFound", err)
				}
				if c.Size() != 0 {
					t.Errorf("Size() = %d after failed Put", c.Size())
				}
			})
		}
	})
}

func TestContentConcurrentPutsOfOneDigest(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		c := newContent(t, td.d)
		data, d := blob(5, 1<<20)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = c.Put(context.Background(), d, bytes.NewReader(data))
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Put %d: %v", i, err)
			}
		}
		if got := c.Size(); got != int64(len(data)) {
			t.Errorf("Size() = %d, want %d (counted once)", got, len(data))
		}
		if got := readAll(t, c, d, 0); !bytes.Equal(got, data) {
			t.Error("content differs")
		}
		if got := files(t, td); len(got) != 1 {
			t.Errorf("files = %v, want only the blob", got)
		}
	})
}

func TestContentGet(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		c := newContent(t, td.d)
		ctx := context.Background()
		data, d := blob(6, 1000)
		mustPut(t, c, data)
		got, err := c.Get(ctx, d, 1000)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get = %d bytes, %v", len(got), err)
		}
		if _, err := c.Get(ctx, d, 999); !errors.Is(err, cache.ErrTooLarge) {
			t.Errorf("Get over the limit: %v; want ErrTooLarge", err)
		}

		// Corrupt the stored bytes: Get notices, reports and drops the object.
		if err := td.d.PutContent(ctx, objectPath(td, d, len(data)), bytes.Repeat([]byte("x"), 1000)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, d, 1000); !errors.Is(err, cache.ErrDigestMismatch) {
			t.Errorf("Get of corrupt content: %v; want ErrDigestMismatch", err)
		}
		if _, err := c.Stat(ctx, d); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("corrupt object still there: %v", err)
		}
	})
}

func TestContentDelete(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		c := newContent(t, td.d)
		ctx := context.Background()
		a, _ := blob(7, 10)
		b, _ := blob(8, 20)
		da, db := mustPut(t, c, a), mustPut(t, c, b)
		if err := c.Delete(ctx, da); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Stat(ctx, da); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Stat after Delete: %v", err)
		}
		if got := c.Size(); got != 20 {
			t.Errorf("Size() = %d, want 20", got)
		}
		if _, err := c.Stat(ctx, db); err != nil {
			t.Errorf("the other object: %v", err)
		}
	})
}

func TestContentLearnsObjectsItDidNotWrite(t *testing.T) {
	forEachDriver(t, func(t *testing.T, td testDriver) {
		ctx := context.Background()
		data, d := blob(9, 300)
		mustPut(t, newContent(t, td.d), data) // another replica sharing the driver

		c := newContent(t, td.d)
		if size, err := c.Stat(ctx, d); err != nil || size != 300 {
			t.Fatalf("Stat = %d, %v", size, err)
		}
		if c.Size() != 300 {
			t.Errorf("Size() = %d, want 300", c.Size())
		}
		if n, err := c.Put(ctx, d, iotestErrReader{}); err != nil || n != 0 {
			t.Errorf("Put of content another replica stored = %d, %v", n, err)
		}
	})
}

func TestNewContentOptions(t *testing.T) {
	d, err := cache.NewDriver("inmemory", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.NewContent(nil); err == nil {
		t.Error("NewContent(nil) succeeded")
	}
	if _, err := cache.NewContent(d, cache.WithMaxSize(-1)); err == nil {
		t.Error("negative max size accepted")
	}
	if _, err := cache.NewDriver("no-such-driver", nil); err == nil {
		t.Error("NewDriver of an unknown driver succeeded")
	}
}
