package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/cache"
)

// A local store writes objects up to 64 KiB apart (no directory of their own), without an fsync, and checks them
// on every read: one torn by a crash (its bytes never reached the disk) reads as a digest mismatch, once, and is
// gone.
func TestContentSmallObjects(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	fsd, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": root})
	if err != nil {
		t.Fatal(err)
	}
	c := newContent(t, fsd)
	small, smallDgst := blob(1, 700)
	large, _ := blob(2, 64<<10+1)
	mustPut(t, c, small)
	mustPut(t, c, large)
	for _, d := range [][]byte{small, large} {
		if got := readAll(t, c, mustPut(t, c, d), 3); !bytes.Equal(got, d[3:]) {
			t.Errorf("read back %d bytes from offset 3, want %d", len(got), len(d)-3)
		}
	}
	// The small object never went through /uploads, and left no temporary file.
	var files []string
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	enc := smallDgst.Encoded()
	want := filepath.Join("small", "sha256", enc[:2], enc)
	if len(files) != 2 || (files[0] != want && files[1] != want) {
		t.Errorf("files in the store: %q, want the two objects' data files only (one of them %s)", files, want)
	}

	// Torn: the rename reached the disk, the bytes did not.
	if err := os.WriteFile(filepath.Join(root, want), make([]byte, len(small)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, smallDgst, 0); !errors.Is(err, cache.ErrDigestMismatch) {
		t.Fatalf("Open of a torn small object: %v, want ErrDigestMismatch", err)
	}
	if _, err := c.Stat(ctx, smallDgst); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Stat after the torn object was read: %v, want ErrNotFound (removed)", err)
	}
	if _, err := os.Stat(filepath.Join(root, want)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("torn object still on disk: %v", err)
	}
	// Stored again, it reads well.
	if got := readAll(t, c, mustPut(t, c, small), 0); !bytes.Equal(got, small) {
		t.Error("small object stored again does not read back")
	}
	// A small Put whose bytes do not hash to the digest leaves nothing.
	other, otherDgst := blob(3, 100)
	other[0]++
	if _, err := c.Put(ctx, otherDgst, io.MultiReader(bytes.NewReader(other))); !errors.Is(err, cache.ErrDigestMismatch) {
		t.Errorf("Put of bytes that do not hash to the digest: %v, want ErrDigestMismatch", err)
	}
	if _, err := c.Stat(ctx, otherDgst); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("a mismatched small Put left an object: %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(root, "small", "sha256", otherDgst.Encoded()[:2], "*")); len(matches) != 0 {
		t.Errorf("a mismatched small Put left files: %q", matches)
	}
}
