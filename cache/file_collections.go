package cache

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// collectionHeader is the first line of a collection file; it names the format so a later one can be told apart.
const collectionHeader = `{"format":"portcullis-collection-v1"}`

const collectionExt = ".jsonl"

// FileCollections is [Collections] in files under one directory, for a single replica: one file a collection,
// <dir>/<name>.jsonl (a header line, then one {"id":...,"r"|"b":...} line a record, see file.go), rewritten
// atomically on every change (temporary file, fsync, rename, fsync of the directory), so that kill -9 at any moment
// leaves the old collection or the new one, never a mix. Everything is read at open and held in memory:
// collections are small. It is safe for concurrent use; two processes must not share the directory.
type FileCollections struct {
	dir string

	mu   sync.Mutex
	cols map[string]map[string][]byte // never modified in place: a change builds a new map
}

var _ Collections = (*FileCollections)(nil)

// OpenFileCollections loads every collection under dir, creating dir if needed, and removes temporary files a
// crash left behind. A collection file it cannot read is an error: starting with a list missing would be worse
// than not starting (a deny list read as empty admits what it denies).
func OpenFileCollections(dir string) (*FileCollections, error) {
	if err := mkdirDurable(dir); err != nil {
		return nil, fmt.Errorf("cache: collections dir: %w", err)
	}
	if err := removeTemps(dir); err != nil {
		return nil, fmt.Errorf("cache: collections dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: collections dir: %w", err)
	}
	c := &FileCollections{dir: dir, cols: map[string]map[string][]byte{}}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), collectionExt)
		if !ok || !e.Type().IsRegular() || checkName("collection", name) != nil {
			continue // not ours
		}
		recs, err := readCollection(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		c.cols[name] = recs
	}
	return c, nil
}

func readCollection(path string) (map[string][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cache: collection: %w", err)
	}
	recs := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 4*MaxRecordSize)
	n := 0
	for sc.Scan() {
		n++
		if n == 1 {
			if sc.Text() != collectionHeader {
				return nil, fmt.Errorf("cache: collection %s: line 1: not a collection file (want %s)", path, collectionHeader)
			}
			continue
		}
		id, rec, err := decodeLine(sc.Bytes())
		if err == nil {
			err = checkID(id)
		}
		if err != nil {
			return nil, fmt.Errorf("cache: collection %s: line %d: %w", path, n, err)
		}
		recs[id] = rec
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cache: collection %s: %w", path, err)
	}
	if n == 0 || !bytes.HasSuffix(data, []byte("\n")) {
		// Files are replaced whole, so this is not a torn write of ours: something else changed the file.
		return nil, fmt.Errorf("cache: collection %s: truncated", path)
	}
	return recs, nil
}

// Dir returns the directory the collections live in.
func (c *FileCollections) Dir() string { return c.dir }

// Put implements Collections: the collection's file is rewritten before Put returns.
func (c *FileCollections) Put(ctx context.Context, collection, id string, val []byte) error {
	if err := checkRecord(collection, id, val); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := maps.Clone(c.cols[collection])
	if next == nil {
		next = map[string][]byte{}
	}
	next[id] = bytes.Clone(val)
	return c.writeLocked(collection, next)
}

// Delete implements Collections.
func (c *FileCollections) Delete(ctx context.Context, collection, id string) error {
	if err := checkRecord(collection, id, nil); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cols[collection][id]; !ok {
		return fmt.Errorf("%w: %s/%q", ErrNotFound, collection, id)
	}
	next := maps.Clone(c.cols[collection])
	delete(next, id)
	return c.writeLocked(collection, next)
}

// All implements Collections from memory; it does not read the disk.
func (c *FileCollections) All(_ context.Context, collection string) (map[string][]byte, error) {
	if err := checkName("collection", collection); err != nil {
		return nil, err
	}
	c.mu.Lock()
	cur := c.cols[collection]
	c.mu.Unlock()
	out := make(map[string][]byte, len(cur))
	for id, v := range cur {
		out[id] = bytes.Clone(v)
	}
	return out, nil
}

// writeLocked makes recs the collection's content, on disk first: memory changes only when the file did.
func (c *FileCollections) writeLocked(collection string, recs map[string][]byte) error {
	buf := append([]byte(collectionHeader), '\n')
	for _, id := range slices.Sorted(maps.Keys(recs)) { // sorted: the same content is the same file
		buf = encodeLine(buf, id, recs[id])
	}
	if err := writeFileAtomic(c.dir, collection+collectionExt, buf); err != nil {
		return fmt.Errorf("cache: collection %s: %w", collection, err)
	}
	c.cols[collection] = recs
	return nil
}

// checkRecord checks the arguments of a Collections Put.
func checkRecord(collection, id string, val []byte) error {
	if err := checkName("collection", collection); err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	return checkSize("record", val)
}
