package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
)

// newPack opens a pack in dir in front of a fresh in-memory content store.
func newPack(t *testing.T, dir string, opts ...cache.PackOption) (*cache.Pack, *cache.Content) {
	t.Helper()
	mem, err := cache.NewDriver("inmemory", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newContent(t, mem)
	p, err := cache.OpenPack(dir, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, c
}

func packPut(t *testing.T, p *cache.Pack, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	if _, err := p.Put(context.Background(), d, io.MultiReader(bytes.NewReader(data))); err != nil { // size unknown, as a stream's
		t.Fatalf("Put(%s): %v", d, err)
	}
	return d
}

func packGet(t *testing.T, p *cache.Pack, d digest.Digest) ([]byte, error) {
	t.Helper()
	return p.Get(context.Background(), d, 1<<20)
}

// packFiles lists the pack's generation files.
func packFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "pack-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPackSmallAndLarge(t *testing.T) {
	ctx := context.Background()
	p, c := newPack(t, t.TempDir())
	small, large := make([]byte, 700), make([]byte, 64<<10+1)
	small[0], large[0] = 1, 2
	sd, ld := packPut(t, p, small), packPut(t, p, large)

	if _, err := c.Stat(ctx, sd); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("the small object went to the content store too: %v", err)
	}
	if n, err := c.Stat(ctx, ld); err != nil || n != int64(len(large)) {
		t.Errorf("content store Stat of the large object = %d, %v; want it there", n, err)
	}
	for _, o := range []struct {
		d    digest.Digest
		data []byte
	}{{sd, small}, {ld, large}} {
		if n, err := p.Stat(ctx, o.d); err != nil || n != int64(len(o.data)) {
			t.Errorf("Stat(%s) = %d, %v", o.d, n, err)
		}
		if b, err := packGet(t, p, o.d); err != nil || !bytes.Equal(b, o.data) {
			t.Errorf("Get(%s): %d bytes, %v", o.d, len(b), err)
		}
		rc, err := p.Open(ctx, o.d, 5)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(b, o.data[5:]) {
			t.Errorf("Open(%s, 5) read %d bytes, want %d", o.d, len(b), len(o.data)-5)
		}
	}
	if _, err := p.Get(ctx, sd, 10); !errors.Is(err, cache.ErrTooLarge) {
		t.Errorf("Get over max: %v, want ErrTooLarge", err)
	}
	if _, err := p.Open(ctx, sd, 701); !errors.Is(err, cache.ErrInvalidOffset) {
		t.Errorf("Open past the end: %v, want ErrInvalidOffset", err)
	}
	if got, want := p.Size(), int64(len(small)+len(large)); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	// Stored already: Put reads nothing.
	if n, err := p.Put(ctx, sd, iotestErrReader{}); n != 0 || err != nil {
		t.Errorf("Put of a packed object = %d, %v; want 0, nil without reading", n, err)
	}
	// Bytes that do not hash to the digest are refused and leave nothing.
	bad := bytes.Clone(small)
	bad[1]++
	if _, err := p.Put(ctx, digest.FromBytes(append([]byte{9}, bad...)), bytes.NewReader(bad)); !errors.Is(err, cache.ErrDigestMismatch) {
		t.Errorf("Put of mismatched bytes: %v, want ErrDigestMismatch", err)
	}
	if got, want := p.Size(), int64(len(small)+len(large)); got != want {
		t.Errorf("Size after a refused Put = %d, want %d", got, want)
	}
}

// What a crash can leave (a torn last record, a record whose bytes never reached the disk) is found when the pack is
// opened again: the torn tail is cut off and the bad record skipped; a record spoilt after opening is found when read.
func TestPackCrashAndCorruption(t *testing.T) {
	dir := t.TempDir()
	p, _ := newPack(t, dir)
	a, b, c := []byte("first object"), []byte("second object"), []byte("third object")
	da, db, dc := packPut(t, p, a), packPut(t, p, b), packPut(t, p, c)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	files := packFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("pack files: %q, want one", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	whole := len(raw)
	// b's bytes zeroed (not on disk), and half a record after c.
	i := bytes.Index(raw, b)
	copy(raw[i:], make([]byte, len(b)))
	raw = append(raw, raw[:20]...)
	if err := os.WriteFile(files[0], raw, 0o640); err != nil {
		t.Fatal(err)
	}

	p, _ = newPack(t, dir)
	if got, err := packGet(t, p, da); err != nil || !bytes.Equal(got, a) {
		t.Errorf("record before the bad one: %q, %v", got, err)
	}
	if got, err := packGet(t, p, dc); err != nil || !bytes.Equal(got, c) {
		t.Errorf("record after the bad one: %q, %v", got, err)
	}
	if _, err := packGet(t, p, db); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("bad record: %v, want ErrNotFound (skipped)", err)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Size() != int64(whole) {
		t.Errorf("pack file after open: %v, %v; want the torn tail cut (%d bytes)", fi.Size(), err, whole)
	}
	// Stored again after the cut, it reads back after another open.
	packPut(t, p, b)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, _ = newPack(t, dir)
	if got, err := packGet(t, p, db); err != nil || !bytes.Equal(got, b) {
		t.Errorf("record written after the cut, reopened: %q, %v", got, err)
	}

	// Spoilt while open: the read says so once, then the object is not there.
	raw, _ = os.ReadFile(files[0])
	i = bytes.Index(raw, c)
	raw[i] ^= 0xff
	if err := os.WriteFile(files[0], raw, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := packGet(t, p, dc); !errors.Is(err, cache.ErrDigestMismatch) {
		t.Errorf("spoilt record: %v, want ErrDigestMismatch", err)
	}
	if _, err := p.Stat(context.Background(), dc); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("spoilt record after its read: %v, want ErrNotFound", err)
	}
}

// The pack holds two generations within its budget: the oldest objects go when a third starts, except those read
// since (written again into the newer generation).
func TestPackGenerations(t *testing.T) {
	dir := t.TempDir()
	const max = 160 << 10 // the least: two generations of 80 KiB
	p, _ := newPack(t, dir, cache.WithPackMaxSize(max))
	obj := func(i int) []byte {
		b := make([]byte, 10<<10)
		b[0], b[1] = byte(i), byte(i>>8)
		return b
	}
	var ds []digest.Digest
	for i := range 7 { // the first generation: 7 of ~10 KiB
		ds = append(ds, packPut(t, p, obj(i)))
	}
	for i := 7; i < 14; i++ { // the second
		ds = append(ds, packPut(t, p, obj(i)))
	}
	if _, err := packGet(t, p, ds[0]); err != nil { // read from the older generation: kept
		t.Fatal(err)
	}
	for i := 14; i < 21; i++ { // the third: the first goes
		ds = append(ds, packPut(t, p, obj(i)))
	}
	if _, err := packGet(t, p, ds[0]); err != nil {
		t.Errorf("an object read from the older generation was dropped: %v", err)
	}
	if _, err := packGet(t, p, ds[1]); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("an unread object of the oldest generation: %v, want ErrNotFound", err)
	}
	if _, err := packGet(t, p, ds[20]); err != nil {
		t.Errorf("the newest object: %v", err)
	}
	if n := len(packFiles(t, dir)); n != 2 {
		t.Errorf("%d pack files, want 2", n)
	}
	var onDisk int64
	for _, f := range packFiles(t, dir) {
		fi, _ := os.Stat(f)
		onDisk += fi.Size()
	}
	if onDisk > max {
		t.Errorf("pack files hold %d bytes, budget %d", onDisk, max)
	}
	// The same after opening again.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p, _ = newPack(t, dir, cache.WithPackMaxSize(max))
	for _, i := range []int{0, 20} {
		if b, err := packGet(t, p, ds[i]); err != nil || !bytes.Equal(b, obj(i)) {
			t.Errorf("object %d after reopening: %v", i, err)
		}
	}
	if _, err := packGet(t, p, ds[1]); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("dropped object after reopening: %v, want ErrNotFound", err)
	}
}

// One process at a time: the directory is locked while a pack is open.
func TestPackLocked(t *testing.T) {
	dir := t.TempDir()
	p, c := newPack(t, dir)
	if _, err := cache.OpenPack(dir, c); !errors.Is(err, cache.ErrPackInUse) {
		t.Fatalf("second OpenPack of one directory: %v, want ErrPackInUse", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := cache.OpenPack(dir, c)
	if err != nil {
		t.Fatalf("OpenPack after Close: %v", err)
	}
	_ = q.Close()
	if _, err := cache.OpenPack(dir, c, cache.WithPackMaxSize(1000)); err == nil {
		t.Error("a budget smaller than two objects was taken")
	}
}
