package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/cache"
)

// CollectionsHarness is what RunCollections needs from an implementation.
type CollectionsHarness struct {
	// New returns an empty Collections (for a shared server, under a fresh key prefix). Required.
	New func(t *testing.T) cache.Collections
	// Reopen returns a Collections on the same storage as c, as a restarted process gets it; it may close c.
	// Required.
	Reopen func(t *testing.T, c cache.Collections) cache.Collections
	// Outages make the storage unreachable, by name; none for embedded stores.
	Outages map[string]Outage
}

// RunCollections runs the Collections conformance suite. Stores that are io.Closers are closed at the end of
// each subtest.
func RunCollections(t *testing.T, h CollectionsHarness) {
	t.Helper()
	subtests := []struct {
		name string
		fn   func(t *testing.T, h CollectionsHarness, c cache.Collections) cache.Collections
	}{
		{"empty", testCollEmpty},
		{"put all", testCollPutAll},
		{"overwrite", testCollOverwrite},
		{"delete", testCollDelete},
		{"delete missing", testCollDeleteMissing},
		{"collections apart", testCollApart},
		{"values exact", testCollValues},
		{"odd ids", testCollOddIDs},
		{"bad input", testCollBadInput},
		{"copies", testCollCopies},
		{"concurrent", testCollConcurrent},
		{"restart", testCollRestart},
	}
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) {
			c := h.New(t)
			c = st.fn(t, h, c)
			closeIfCloser(t, c)
		})
	}
	for name, out := range h.Outages {
		t.Run("outage "+name, func(t *testing.T) {
			c := h.New(t)
			testCollOutage(t, c, out)
			closeIfCloser(t, c)
		})
	}
}

func closeIfCloser(t *testing.T, v any) {
	t.Helper()
	if c, ok := v.(io.Closer); ok {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func mustPut(t *testing.T, c cache.Collections, coll, id string, val []byte) {
	t.Helper()
	if err := c.Put(context.Background(), coll, id, val); err != nil {
		t.Fatalf("Put(%s, %q): %v", coll, id, err)
	}
}

func wantAll(t *testing.T, c cache.Collections, coll string, want map[string][]byte) {
	t.Helper()
	got, err := c.All(context.Background(), coll)
	if err != nil {
		t.Fatalf("All(%s): %v", coll, err)
	}
	if got == nil {
		t.Fatalf("All(%s) = nil map; want an empty one", coll)
	}
	// bytes.Equal, not cmp: cmp walks a large value byte by byte, which the race detector makes slow.
	same := len(got) == len(want)
	for id, w := range want {
		g, ok := got[id]
		same = same && ok && bytes.Equal(g, w) && g != nil
	}
	if !same {
		t.Fatalf("All(%s) = %s; want %s", coll, describe(got), describe(want))
	}
}

// describe prints a collection with long values cut short.
func describe(m map[string][]byte) string {
	var b strings.Builder
	b.WriteString("{")
	for _, id := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%q: %q (len %d), ", id, trunc(m[id]), len(m[id]))
	}
	b.WriteString("}")
	return b.String()
}

func testCollEmpty(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	wantAll(t, c, "allow", map[string][]byte{})
	return c
}

func testCollPutAll(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	mustPut(t, c, "allow", "sha256:aaa", []byte(`{"reason":"ok"}`))
	mustPut(t, c, "allow", "sha256:bbb", []byte("two"))
	wantAll(t, c, "allow", map[string][]byte{"sha256:aaa": []byte(`{"reason":"ok"}`), "sha256:bbb": []byte("two")})
	return c
}

func testCollOverwrite(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	mustPut(t, c, "deny", "x", []byte("one"))
	mustPut(t, c, "deny", "x", []byte("two"))
	wantAll(t, c, "deny", map[string][]byte{"x": []byte("two")})
	return c
}

func testCollDelete(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	mustPut(t, c, "deny", "x", []byte("1"))
	mustPut(t, c, "deny", "y", []byte("2"))
	if err := c.Delete(context.Background(), "deny", "x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAll(t, c, "deny", map[string][]byte{"y": []byte("2")})
	if err := c.Delete(context.Background(), "deny", "y"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAll(t, c, "deny", map[string][]byte{})
	return c
}

func testCollDeleteMissing(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	ctx := context.Background()
	if err := c.Delete(ctx, "deny", "never"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Delete from an unknown collection = %v; want ErrNotFound", err)
	}
	mustPut(t, c, "deny", "x", []byte("1"))
	if err := c.Delete(ctx, "deny", "never"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Delete of an absent id = %v; want ErrNotFound", err)
	}
	if err := c.Delete(ctx, "deny", "x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "deny", "x"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("second Delete = %v; want ErrNotFound", err)
	}
	return c
}

func testCollApart(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	mustPut(t, c, "allow", "same-id", []byte("allowed"))
	mustPut(t, c, "deny", "same-id", []byte("denied"))
	wantAll(t, c, "allow", map[string][]byte{"same-id": []byte("allowed")})
	wantAll(t, c, "deny", map[string][]byte{"same-id": []byte("denied")})
	if err := c.Delete(context.Background(), "allow", "same-id"); err != nil {
		t.Fatal(err)
	}
	wantAll(t, c, "deny", map[string][]byte{"same-id": []byte("denied")})
	return c
}

// recordValues are values whose bytes must come back exactly: the file store writes JSON as it is and anything
// else as base64, so the cases sit on both sides of that line.
func recordValues() map[string][]byte {
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	large := bytes.Repeat([]byte("0123456789abcdef"), (cache.MaxRecordSize-1024)/16)
	return map[string][]byte{
		"compact json":      []byte(`{"digest":"sha256:abc","by":"alice","n":[1,2,3]}`),
		"json with spaces":  []byte(`{ "a" : 1 }`),
		"json with newline": []byte("{\"a\":\n1}"),
		"json html":         []byte(`{"a":"<b>&"}`),
		"json escapes":      []byte(`{"a":"\u00e9\n"}`),
		"json string":       []byte(`"just a string"`),
		"json null":         []byte(`null`),
		"leading space":     []byte(` {"a":1}`),
		"text":              []byte("plain text\nwith lines\r\n"),
		"binary":            bin,
		"empty":             {},
		"large":             large,
	}
}

func testCollValues(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	vals := recordValues()
	for id, v := range vals {
		mustPut(t, c, "values", id, v)
	}
	got, err := c.All(context.Background(), "values")
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range vals {
		if !bytes.Equal(got[id], want) || got[id] == nil {
			t.Errorf("%s: got %q (len %d), want %q (len %d)", id, trunc(got[id]), len(got[id]), trunc(want), len(want))
		}
	}
	return c
}

func testCollOddIDs(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	ids := []string{
		"docker.io/library/alpine@sha256:0123456789abcdef",
		"with spaces\tand tabs",
		"ünïcødé/日本語/🚀",
		"*?[glob]{chars}",
		`"quotes" and \backslashes\`,
		"line\nbreak",
		strings.Repeat("x", 1024),
	}
	want := map[string][]byte{}
	for i, id := range ids {
		v := fmt.Appendf(nil, "v%d", i)
		mustPut(t, c, "odd", id, v)
		want[id] = v
	}
	wantAll(t, c, "odd", want)
	return c
}

func testCollBadInput(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	ctx := context.Background()
	cases := []struct {
		name, coll, id string
		val            []byte
	}{
		{"empty collection", "", "x", nil},
		{"upper case", "Allow", "x", nil},
		{"path", "../etc", "x", nil},
		{"slash", "a/b", "x", nil},
		{"leading dot", ".hidden", "x", nil},
		{"long name", strings.Repeat("a", 65), "x", nil},
		{"empty id", "allow", "", nil},
		{"long id", "allow", strings.Repeat("x", 1025), nil},
		{"invalid utf-8 id", "allow", "\xff\xfe", nil},
		{"value over the limit", "allow", "x", make([]byte, cache.MaxRecordSize+1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Put(ctx, tc.coll, tc.id, tc.val)
			if err == nil || errors.Is(err, cache.ErrUnavailable) || errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Put(%q, %q) = %v; want a plain error", tc.coll, tc.id, err)
			}
			if tc.val == nil {
				if err := c.Delete(ctx, tc.coll, tc.id); err == nil || errors.Is(err, cache.ErrUnavailable) {
					t.Errorf("Delete(%q, %q) = %v; want an error", tc.coll, tc.id, err)
				}
			}
		})
	}
	if _, err := c.All(ctx, "../etc"); err == nil {
		t.Error("All(../etc) succeeded; want an error")
	}
	wantAll(t, c, "allow", map[string][]byte{})
	return c
}

func testCollCopies(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	val := []byte("original")
	mustPut(t, c, "allow", "x", val)
	val[0] = 'X'
	got, err := c.All(context.Background(), "allow")
	if err != nil {
		t.Fatal(err)
	}
	got["x"][0] = 'Y'
	got["added"] = []byte("by the caller")
	wantAll(t, c, "allow", map[string][]byte{"x": []byte("original")})
	return c
}

func testCollConcurrent(t *testing.T, _ CollectionsHarness, c cache.Collections) cache.Collections {
	const workers, rounds = 10, 15
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := c.Put(ctx, "conc", id, []byte(id)); err != nil {
					errs <- err
					return
				}
				if err := c.Put(ctx, "conc", "shared", fmt.Appendf(nil, "w%d", w)); err != nil {
					errs <- err
					return
				}
				all, err := c.All(ctx, "conc")
				if err != nil {
					errs <- err
					return
				}
				if string(all[id]) != id {
					errs <- fmt.Errorf("own record %s = %q right after Put", id, all[id])
				}
				if i%2 == 1 { // delete every other own record
					if err := c.Delete(ctx, "conc", id); err != nil {
						errs <- fmt.Errorf("Delete(%s): %w", id, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, err := c.All(ctx, "conc")
	if err != nil {
		t.Fatal(err)
	}
	for w := range workers {
		for i := range rounds {
			id := fmt.Sprintf("w%d-%d", w, i)
			if _, ok := all[id]; ok != (i%2 == 0) {
				t.Errorf("record %s present = %v after the workers", id, ok)
			}
		}
	}
	if !bytes.HasPrefix(all["shared"], []byte("w")) {
		t.Errorf("shared = %q; want one writer's value", all["shared"])
	}
	if len(all) != workers*(rounds+1)/2+1 {
		t.Errorf("%d records; want %d", len(all), workers*(rounds+1)/2+1)
	}
	return c
}

func testCollRestart(t *testing.T, h CollectionsHarness, c cache.Collections) cache.Collections {
	vals := recordValues()
	for id, v := range vals {
		mustPut(t, c, "allow", id, v)
	}
	mustPut(t, c, "deny", "gone", []byte("soon"))
	mustPut(t, c, "deny", "stays", []byte("yes"))
	if err := c.Delete(context.Background(), "deny", "gone"); err != nil {
		t.Fatal(err)
	}
	c = h.Reopen(t, c)
	wantAll(t, c, "allow", vals)
	wantAll(t, c, "deny", map[string][]byte{"stays": []byte("yes")})
	// And it goes on working.
	mustPut(t, c, "deny", "after", []byte("restart"))
	c = h.Reopen(t, c)
	wantAll(t, c, "deny", map[string][]byte{"stays": []byte("yes"), "after": []byte("restart")})
	return c
}

func testCollOutage(t *testing.T, c cache.Collections, out Outage) {
	ctx := context.Background()
	mustPut(t, c, "deny", "before", []byte("the outage"))
	restore := out(t)
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	ops := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { return c.Put(ctx, "deny", "during", []byte("x")) }},
		// A hung server runs what it was sent once it thaws, so nothing here may change what is checked after.
		{"Delete", func() error { return c.Delete(ctx, "deny", "during") }},
		{"All", func() error { _, err := c.All(ctx, "deny"); return err }},
	}
	for _, op := range ops {
		took, err := timed(op.do)
		wantUnavailable(t, op.name, took, err)
	}
	restore()
	restored = true
	took := eventually(t, "Put after the outage", func() error { return c.Put(ctx, "deny", "after", []byte("y")) })
	t.Logf("working again %v after the backend came back", took.Round(10e6))
	got, err := c.All(ctx, "deny")
	if err != nil {
		t.Fatal(err)
	}
	if string(got["before"]) != "the outage" || string(got["after"]) != "y" {
		t.Errorf("after the outage: %q; want the record from before and the one after", got)
	}
}
