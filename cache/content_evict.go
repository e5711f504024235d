package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// Load walks the driver to learn the objects it holds, with their modification times as initial last
// access, so the budget holds across restarts. It removes temporary uploads older than an hour (left by
// a crash; a small object's are beside it) and then evicts down to the budget. Objects already tracked keep what this process knows.
func (c *Content) Load(ctx context.Context) error {
	type found struct {
		dgst  digest.Digest
		size  int64
		mod   time.Time
		small bool
	}
	var (
		objects []found
		stale   []string
		now     = c.now()
	)
	walk := func(root string, parse func(string) (digest.Digest, bool), small bool) error {
		err := c.driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
			if fi.IsDir() {
				return nil
			}
			if d, ok := parse(fi.Path()); ok {
				objects = append(objects, found{dgst: d, size: fi.Size(), mod: fi.ModTime(), small: small})
			} else if isSmallUpload(fi.Path()) && now.Sub(fi.ModTime()) > staleUpload {
				stale = append(stale, fi.Path())
			}
			return nil
		})
		if err != nil && !isPathNotFound(err) {
			return fmt.Errorf("cache: load %s: %w", root, err)
		}
		return nil
	}
	if err := walk(blobsRoot, parseBlobPath, false); err != nil {
		return err
	}
	if c.root != "" {
		if err := walk(smallRoot, parseSmallPath, true); err != nil {
			return err
		}
	}
	slices.SortFunc(objects, func(a, b found) int { return a.mod.Compare(b.mod) })

	c.mu.Lock()
	for _, o := range objects {
		if _, ok := c.entries[o.dgst]; ok {
			continue
		}
		e := &entry{dgst: o.dgst, size: o.size, lastAccess: o.mod, small: o.small}
		c.entries[o.dgst] = e
		c.size += e.size
		c.insertByTimeLocked(e)
	}
	c.mu.Unlock()

	err := c.driver.Walk(ctx, uploadsRoot, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && now.Sub(fi.ModTime()) > staleUpload {
			stale = append(stale, fi.Path())
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return fmt.Errorf("cache: load %s: %w", uploadsRoot, err)
	}
	errs := make([]error, 0, len(stale)+1)
	for _, p := range stale {
		errs = append(errs, c.removeUpload(ctx, p))
	}
	errs = append(errs, c.evict(ctx))
	return errors.Join(errs...)
}

// evict deletes least recently used objects until the tracked size fits the budget, skipping objects
// that are open for reading. With no budget it does nothing.
func (c *Content) evict(ctx context.Context) error {
	if c.maxSize <= 0 {
		return nil
	}
	c.mu.Lock()
	var victims []*entry
	for el := c.lru.Front(); el != nil && c.size > c.maxSize; {
		next := el.Next()
		if e := el.Value.(*entry); e.refs == 0 {
			c.unlinkLocked(e)
			e.pending = make(chan struct{}) // Open, Put and Delete wait for the removal to finish
			victims = append(victims, e)
		}
		el = next
	}
	c.mu.Unlock()

	var errs []error
	for _, e := range victims {
		if err := c.remove(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
