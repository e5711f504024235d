package cachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/cache"
)

// JournalHarness is what RunJournal needs from an implementation.
type JournalHarness struct {
	// New returns an empty Journal keeping maxRecords records a journal (for a shared server, under a fresh key
	// prefix). Required.
	New func(t *testing.T, maxRecords int) cache.Journal
	// Reopen returns a Journal on the same storage as j with the same bound, as a restarted process gets it; it
	// may close j. Required.
	Reopen func(t *testing.T, j cache.Journal) cache.Journal
	// Outages make the storage unreachable, by name; none for embedded stores.
	Outages map[string]Outage
}

// RunJournal runs the Journal conformance suite. Journals that are io.Closers are closed at the end of each
// subtest.
func RunJournal(t *testing.T, h JournalHarness) {
	t.Helper()
	subtests := []struct {
		name string
		max  int
		fn   func(t *testing.T, h JournalHarness, j cache.Journal) cache.Journal
	}{
		{"empty", 100, testJournalEmpty},
		{"newest first", 100, testJournalOrder},
		{"stop early", 100, testJournalStop},
		{"bounded", 10, testJournalBounded},
		{"bound of one", 1, testJournalBoundOne},
		{"names apart", 100, testJournalApart},
		{"records exact", 100, testJournalValues},
		{"bad input", 100, testJournalBadInput},
		{"concurrent", 1000, testJournalConcurrent},
		{"range while appending", 50, testJournalRangeWhileAppending},
		{"restart", 10, testJournalRestart},
	}
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) {
			j := h.New(t, st.max)
			j = st.fn(t, h, j)
			closeIfCloser(t, j)
		})
	}
	for name, out := range h.Outages {
		t.Run("outage "+name, func(t *testing.T) {
			j := h.New(t, 100)
			testJournalOutage(t, j, out)
			closeIfCloser(t, j)
		})
	}
}

func mustAppend(t *testing.T, j cache.Journal, name string, rec []byte) {
	t.Helper()
	if err := j.Append(context.Background(), name, rec); err != nil {
		t.Fatalf("Append(%s): %v", name, err)
	}
}

// records returns every record of name, newest first.
func records(t *testing.T, j cache.Journal, name string) []string {
	t.Helper()
	var out []string
	err := j.Range(context.Background(), name, func(rec []byte) bool {
		out = append(out, string(rec))
		return true
	})
	if err != nil {
		t.Fatalf("Range(%s): %v", name, err)
	}
	return out
}

func wantRecords(t *testing.T, j cache.Journal, name string, want []string) {
	t.Helper()
	if diff := cmp.Diff(want, records(t, j, name)); diff != "" {
		t.Fatalf("Range(%s) (-want +got):\n%s", name, diff)
	}
}

// seq is "r0".."r<n-1>"; newestFirst reverses a slice of them.
func seq(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "r"+strconv.Itoa(i))
	}
	return out
}

func newestFirst(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func appendAll(t *testing.T, j cache.Journal, name string, recs []string) {
	t.Helper()
	for _, r := range recs {
		mustAppend(t, j, name, []byte(r))
	}
}

func testJournalEmpty(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	err := j.Range(context.Background(), "audit", func([]byte) bool {
		t.Error("fn called on an empty journal")
		return true
	})
	if err != nil {
		t.Fatalf("Range of an empty journal: %v", err)
	}
	return j
}

func testJournalOrder(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	appendAll(t, j, "audit", seq(0, 20))
	wantRecords(t, j, "audit", newestFirst(seq(0, 20)))
	return j
}

func testJournalStop(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	appendAll(t, j, "audit", seq(0, 600)) // more than a page of the Redis implementation
	var got []string
	err := j.Range(context.Background(), "audit", func(rec []byte) bool {
		got = append(got, string(rec))
		return len(got) < 3
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"r599", "r598", "r597"}, got); diff != "" {
		t.Errorf("Range stopped by fn (-want +got):\n%s", diff)
	}
	return j
}

func testJournalBounded(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	appendAll(t, j, "audit", seq(0, 35))
	wantRecords(t, j, "audit", newestFirst(seq(25, 35)))
	appendAll(t, j, "audit", seq(35, 40))
	wantRecords(t, j, "audit", newestFirst(seq(30, 40)))
	return j
}

func testJournalBoundOne(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	appendAll(t, j, "audit", seq(0, 5))
	wantRecords(t, j, "audit", []string{"r4"})
	return j
}

func testJournalApart(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	mustAppend(t, j, "audit", []byte("a1"))
	mustAppend(t, j, "other", []byte("o1"))
	mustAppend(t, j, "audit", []byte("a2"))
	wantRecords(t, j, "audit", []string{"a2", "a1"})
	wantRecords(t, j, "other", []string{"o1"})
	return j
}

func testJournalValues(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	vals := recordValues()
	var names []string
	for name, v := range vals {
		names = append(names, name)
		mustAppend(t, j, "values", v)
	}
	var got [][]byte
	if err := j.Range(context.Background(), "values", func(rec []byte) bool {
		got = append(got, rec)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(names) {
		t.Fatalf("%d records; want %d", len(got), len(names))
	}
	for i, name := range names {
		want, rec := vals[name], got[len(got)-1-i]
		if !bytes.Equal(rec, want) || rec == nil {
			t.Errorf("%s: got %q (len %d), want %q (len %d)", name, trunc(rec), len(rec), trunc(want), len(want))
		}
	}
	// The records are the caller's: change every one Range returned (map order
	// puts any value, the empty one included, first) and read them again.
	for _, rec := range got {
		for i := range rec {
			rec[i] ^= 0xff
		}
	}
	var again [][]byte
	_ = j.Range(context.Background(), "values", func(rec []byte) bool { again = append(again, rec); return true })
	for i, name := range names {
		if i >= len(again) || !bytes.Equal(again[len(again)-1-i], vals[name]) {
			t.Errorf("%s: changing the records Range returned changed the journal", name)
		}
	}
	return j
}

func testJournalBadInput(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	ctx := context.Background()
	for _, name := range []string{"", "Audit", "../x", "a/b", ".x", strings.Repeat("a", 65)} {
		if err := j.Append(ctx, name, []byte("x")); err == nil || errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("Append(%q) = %v; want a plain error", name, err)
		}
		if err := j.Range(ctx, name, func([]byte) bool { return true }); err == nil {
			t.Errorf("Range(%q) succeeded; want an error", name)
		}
	}
	if err := j.Append(ctx, "audit", make([]byte, cache.MaxRecordSize+1)); err == nil || errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("Append of an oversized record = %v; want a plain error", err)
	}
	wantRecords(t, j, "audit", nil)
	return j
}

func testJournalConcurrent(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	const workers, rounds = 10, 40
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if err := j.Append(ctx, "audit", fmt.Appendf(nil, "w%d-%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := records(t, j, "audit")
	if len(got) != workers*rounds {
		t.Fatalf("%d records; want %d", len(got), workers*rounds)
	}
	// Each worker's records come newest first, each once.
	last := map[string]int{}
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r] {
			t.Errorf("%s twice", r)
		}
		seen[r] = true
		w, i, _ := strings.Cut(r, "-")
		n, _ := strconv.Atoi(i)
		if prev, ok := last[w]; ok && n >= prev {
			t.Errorf("%s after %s-%d: not newest first", r, w, prev)
		}
		last[w] = n
	}
	return j
}

func testJournalRangeWhileAppending(t *testing.T, _ JournalHarness, j cache.Journal) cache.Journal {
	ctx := context.Background()
	appendAll(t, j, "audit", seq(0, 50))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 50; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := j.Append(ctx, "audit", []byte("r"+strconv.Itoa(i))); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 20 {
		var got []int
		err := j.Range(ctx, "audit", func(rec []byte) bool {
			n, _ := strconv.Atoi(strings.TrimPrefix(string(rec), "r"))
			got = append(got, n)
			return true
		})
		if err != nil {
			t.Error(err)
			break
		}
		if len(got) > 50 {
			t.Errorf("Range gave %d records; the bound is 50", len(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i] >= got[i-1] {
				t.Errorf("Range while appending: r%d after r%d (a record twice, or out of order)", got[i], got[i-1])
				break
			}
		}
	}
	close(stop)
	wg.Wait()
	return j
}

func testJournalRestart(t *testing.T, h JournalHarness, j cache.Journal) cache.Journal {
	appendAll(t, j, "audit", seq(0, 25))
	mustAppend(t, j, "other", []byte("o"))
	j = h.Reopen(t, j)
	wantRecords(t, j, "audit", newestFirst(seq(15, 25)))
	wantRecords(t, j, "other", []string{"o"})
	appendAll(t, j, "audit", seq(25, 28))
	wantRecords(t, j, "audit", newestFirst(seq(18, 28)))
	j = h.Reopen(t, j)
	wantRecords(t, j, "audit", newestFirst(seq(18, 28)))
	return j
}

func testJournalOutage(t *testing.T, j cache.Journal, out Outage) {
	ctx := context.Background()
	mustAppend(t, j, "audit", []byte("before"))
	restore := out(t)
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	took, err := timed(func() error { return j.Append(ctx, "other", []byte("during")) })
	wantUnavailable(t, "Append", took, err)
	took, err = timed(func() error { return j.Range(ctx, "audit", func([]byte) bool { return true }) })
	wantUnavailable(t, "Range", took, err)
	restore()
	restored = true
	took = eventually(t, "Append after the outage", func() error { return j.Append(ctx, "audit", []byte("after")) })
	t.Logf("working again %v after the backend came back", took.Round(10e6))
	wantRecords(t, j, "audit", []string{"after", "before"})
}
