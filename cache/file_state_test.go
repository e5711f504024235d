package cache_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// journalRecords returns every record of name, newest first.
func journalRecords(t *testing.T, j cache.Journal, name string) []string {
	t.Helper()
	var out []string
	if err := j.Range(context.Background(), name, func(rec []byte) bool {
		out = append(out, string(rec))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func openJournal(t *testing.T, dir string, maxRecords int) *cache.FileJournal {
	t.Helper()
	j, err := cache.OpenFileJournal(dir, maxRecords)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A crash (or power loss) in the middle of an append leaves the last line torn. Opening drops it, and the next
// record does not follow the torn bytes (which would garble it too).
func TestFileJournalTornLastLine(t *testing.T) {
	ctx := context.Background()
	for _, torn := range []string{`{"r":{"who":"al`, `{"b":"AAE`, "\x00\x00\x00\x00", `{"r":1}`} {
		t.Run(fmt.Sprintf("%q", torn), func(t *testing.T) {
			dir := t.TempDir()
			j := openJournal(t, dir, 100)
			for i := range 3 {
				if err := j.Append(ctx, "audit", fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
					t.Fatal(err)
				}
			}
			_ = j.Close()
			segs := segments(t, filepath.Join(dir, "audit"))
			f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteString(torn) // no newline: the write was cut short
			_ = f.Close()

			j = openJournal(t, dir, 100)
			want := []string{`{"n":2}`, `{"n":1}`, `{"n":0}`}
			if got := journalRecords(t, j, "audit"); !equal(got, want) {
				t.Fatalf("after a torn write: %q; want %q", got, want)
			}
			if err := j.Append(ctx, "audit", []byte(`{"n":3}`)); err != nil {
				t.Fatal(err)
			}
			_ = j.Close()
			j = openJournal(t, dir, 100)
			want = append([]string{`{"n":3}`}, want...)
			if got := journalRecords(t, j, "audit"); !equal(got, want) {
				t.Fatalf("the record after a torn one: %q; want %q", got, want)
			}
			data, _ := os.ReadFile(segs[len(segs)-1])
			if strings.Contains(string(data), torn) {
				t.Errorf("the torn bytes are still in the file: %q", data)
			}
		})
	}
}

// A line garbled in the middle of a segment (a disk error; Portcullis never writes one) is skipped, not fatal.
func TestFileJournalGarbledLineSkipped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := openJournal(t, dir, 100)
	for _, r := range []string{"a", "b", "c"} {
		if err := j.Append(ctx, "audit", []byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	_ = j.Close()
	seg := segments(t, filepath.Join(dir, "audit"))[0]
	data, _ := os.ReadFile(seg)
	lines := strings.SplitAfter(string(data), "\n")
	lines[1] = "garbage\n"
	if err := os.WriteFile(seg, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	j = openJournal(t, dir, 100)
	if got, want := journalRecords(t, j, "audit"), []string{"c", "a"}; !equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Old segments are removed as new ones fill: the files stay within the bound plus one segment.
func TestFileJournalCompaction(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const bound = 16 // segments of 2 records
	j := openJournal(t, dir, bound)
	for i := range 101 {
		if err := j.Append(ctx, "audit", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	segs := segments(t, filepath.Join(dir, "audit"))
	lines := 0
	for _, s := range segs {
		data, _ := os.ReadFile(s)
		lines += bytes.Count(data, []byte("\n"))
	}
	if lines > bound+bound/8 || lines < bound {
		t.Errorf("%d records in %d files; want between %d and %d", lines, len(segs), bound, bound+bound/8)
	}
	got := journalRecords(t, j, "audit")
	if len(got) != bound || got[0] != "100" || got[bound-1] != "85" {
		t.Errorf("Range = %q; want 100 down to 85", got)
	}
	// A smaller bound at the next open compacts at once.
	_ = j.Close()
	j = openJournal(t, dir, 4)
	if got := journalRecords(t, j, "audit"); !equal(got, []string{"100", "99", "98", "97"}) {
		t.Errorf("with a bound of 4: %q", got)
	}
	if n := len(segments(t, filepath.Join(dir, "audit"))); n > 3 {
		t.Errorf("%d segments left for a bound of 4", n)
	}
}

// A crash during a rewrite leaves a temporary file behind; opening ignores it and removes it.
func TestFileCollectionsLeftoverTemp(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := openFileCollections(t, dir)
	if err := c.Put(ctx, "deny", "x", []byte("old")); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, ".tmp-deny.jsonl.12345")
	if err := os.WriteFile(leftover, []byte(`{"format":"portcullis-collection-v1"}`+"\n"+`{"id":"x","r":"ne`), 0o600); err != nil {
		t.Fatal(err)
	}
	c = openFileCollections(t, dir)
	all, err := c.All(ctx, "deny")
	if err != nil || string(all["x"]) != "old" || len(all) != 1 {
		t.Errorf("All = %q, %v; want the old record only", all, err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temporary file still there: %v", err)
	}
}

// A collection file that does not load stops the start: a deny list read as empty would admit what it denies.
func TestFileCollectionsDamagedFileFailsOpen(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, content, want string }{
		{"truncated", `{"format":"portcullis-collection-v1"}` + "\n" + `{"id":"x","r":1}`, "truncated"},
		{"garbage line", `{"format":"portcullis-collection-v1"}` + "\n" + "garbage\n", "line 2"},
		{"not ours", "hello\n", "not a collection file"},
		{"empty", "", "truncated"},
		{"no id", `{"format":"portcullis-collection-v1"}` + "\n" + `{"r":1}` + "\n", "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openFileCollections(t, dir)
			if err := c.Put(ctx, "deny", "x", []byte("v")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "deny.jsonl"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := cache.OpenFileCollections(dir)
			if err == nil || !strings.Contains(err.Error(), "deny.jsonl") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenFileCollections = %v; want an error naming deny.jsonl and %q", err, tc.want)
			}
		})
	}
}

// crashDirEnv tells TestFileStateCrashHelper, run as a child process, where to write until it is killed.
const crashDirEnv = "PORTCULLIS_TEST_CRASH_DIR"

// TestFileStateCrashHelper is the child of TestFileStateSurvivesKill9: it appends to a journal and rewrites a
// collection as fast as it can until it is killed. Run alone it does nothing.
func TestFileStateCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("the child of TestFileStateSurvivesKill9")
	}
	ctx := context.Background()
	j, err := cache.OpenFileJournal(filepath.Join(dir, "journal"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.OpenFileCollections(filepath.Join(dir, "collections"))
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	_ = j.Range(ctx, "audit", func(rec []byte) bool { next, _ = strconv.Atoi(string(rec)); next++; return false })
	pad := strings.Repeat("p", 2000) // a collection of ~400 KiB: each rewrite takes a while, so kills land in them
	fmt.Println("writing")
	for i := next; ; i++ {
		if err := j.Append(ctx, "audit", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		// Every record of the collection carries the same generation: a torn or mixed file would show two.
		if err := c.Put(ctx, "deny", fmt.Sprintf("k%03d", i%200), fmt.Appendf(nil, "%d/%s", i, pad)); err != nil {
			t.Fatal(err)
		}
	}
}

// kill -9 at any moment leaves the old or the new state: the journal holds an unbroken run of records, the
// collection loads, and both go on working.
func TestFileStateSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	dir := t.TempDir()
	ctx := context.Background()
	last := -1
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileStateCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		writing := make(chan struct{})
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if sc.Text() == "writing" {
					close(writing)
				}
			}
		}()
		select {
		case <-writing:
		case <-copied:
		case <-time.After(30 * time.Second):
		}
		time.Sleep(time.Duration(50+rand.IntN(300)) * time.Millisecond) // then kill it at some moment
		_ = cmd.Process.Kill()                                          // SIGKILL
		<-copied
		_ = cmd.Wait()
		if !strings.Contains(out.String(), "writing") || strings.Contains(out.String(), "FAIL") {
			t.Fatalf("round %d: the child failed before it was killed:\n%s", round, out.String())
		}

		j, err := cache.OpenFileJournal(filepath.Join(dir, "journal"), 1000)
		if err != nil {
			t.Fatalf("round %d: reopen journal: %v", round, err)
		}
		recs := journalRecords(t, j, "audit")
		_ = j.Close()
		for i := 1; i < len(recs); i++ {
			a, _ := strconv.Atoi(recs[i-1])
			b, _ := strconv.Atoi(recs[i])
			if a != b+1 {
				t.Fatalf("round %d: journal has %s after %s: a record lost or garbled", round, recs[i-1], recs[i])
			}
		}
		if len(recs) == 0 {
			t.Fatalf("round %d: empty journal", round)
		}
		n, _ := strconv.Atoi(recs[0])
		if n < last {
			t.Fatalf("round %d: the newest record %d is older than the last round's %d", round, n, last)
		}
		last = n

		c, err := cache.OpenFileCollections(filepath.Join(dir, "collections"))
		if err != nil {
			t.Fatalf("round %d: reopen collections after kill -9: %v", round, err)
		}
		all, err := c.All(ctx, "deny")
		if err != nil {
			t.Fatal(err)
		}
		for id, v := range all {
			gen, _, _ := strings.Cut(string(v), "/")
			g, err := strconv.Atoi(gen)
			if err != nil || g%200 != mustAtoi(strings.TrimPrefix(id, "k")) || g > n {
				t.Fatalf("round %d: record %s = %.20q...: not one the child wrote before its last journal record %d", round, id, v, n)
			}
		}
		temps, _ := filepath.Glob(filepath.Join(dir, "collections", ".tmp-*"))
		if len(temps) != 0 {
			t.Errorf("round %d: temporary files left after open: %v", round, temps)
		}
		t.Logf("round %d: %d journal records, newest %d; %d collection records", round, len(recs), n, len(all))
	}
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
