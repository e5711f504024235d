package cache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

const segmentExt = ".jsonl"

// FileJournal is [Journal] in files under one directory, for a single replica. Each journal is a directory
// <dir>/<name>/ of append-only JSON Lines segments (one {"r"|"b":...} line a record, see file.go) named by a
// sequence number. Append writes one line and fsyncs it, so it costs one small write, however long the journal;
// when the newest segment holds an eighth of the bound a new one starts, and the oldest segments are removed once
// the newer ones hold the bound. A crash can tear only the last line of the newest segment: opening drops it
// (truncating the file to the last whole line), so kill -9 at any moment loses at most the record being appended.
// Open loads an index of 16 bytes a record, not the records: Range reads them from the files. It is safe for
// concurrent use; two processes must not share the directory.
type FileJournal struct {
	dir    string
	max    int
	segMax int

	mu     sync.Mutex
	logs   map[string]*fileLog
	closed bool
}

var _ Journal = (*FileJournal)(nil)

// fileLog is one journal: its segments, oldest first; the last one takes appends.
type fileLog struct {
	dir string

	mu     sync.Mutex
	segs   []*segment
	total  int      // records in segs
	active *os.File // the last segment, opened for appending; nil until the first append after open
}

type segment struct {
	seq   uint64
	path  string
	lines []span // whole, readable lines in file order
	size  int64  // the end of the last whole line: where the next append goes
}

// span locates one record's line (without its newline) in a segment file.
type span struct {
	off int64
	n   int
}

// OpenFileJournal loads every journal under dir (creating dir if needed), dropping a torn last line where a crash
// left one. Each journal keeps its newest maxRecords records (<= 0: the default, 100,000); the files may hold up
// to an eighth more between compactions, but Range never returns more.
func OpenFileJournal(dir string, maxRecords int) (*FileJournal, error) {
	n := journalMax(maxRecords)
	j := &FileJournal{dir: dir, max: n, segMax: max(1, n/8), logs: map[string]*fileLog{}}
	if err := mkdirDurable(dir); err != nil {
		return nil, fmt.Errorf("cache: journal dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: journal dir: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || checkName("journal", e.Name()) != nil {
			continue
		}
		l, err := j.loadLog(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		j.logs[e.Name()] = l
	}
	return j, nil
}

func (j *FileJournal) loadLog(dir string) (*fileLog, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: journal: %w", err)
	}
	l := &fileLog{dir: dir}
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), segmentExt)
		seq, err := strconv.ParseUint(base, 10, 64)
		if !ok || err != nil || !e.Type().IsRegular() {
			continue
		}
		l.segs = append(l.segs, &segment{seq: seq, path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(l.segs, func(a, b *segment) int { return compareUint(a.seq, b.seq) })
	for i, s := range l.segs {
		if err := s.load(i == len(l.segs)-1); err != nil {
			return nil, err
		}
		l.total += len(s.lines)
	}
	if err := l.compact(j.max); err != nil {
		return nil, err
	}
	return l, nil
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// load indexes the segment's whole lines. A line without its newline can only be the last one, torn by a crash;
// in the newest segment, which takes appends, the file is cut back to the last whole line. A line that does not
// decode (it cannot be written so, but a disk can garble it) is skipped.
func (s *segment) load(newest bool) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("cache: journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var off int64
	for {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // line, if any, is torn
		}
		if err != nil {
			return fmt.Errorf("cache: journal %s: %w", s.path, err)
		}
		n := len(line) - 1
		if _, _, derr := decodeLine(line[:n]); derr == nil {
			s.lines = append(s.lines, span{off: off, n: n})
		}
		off += int64(len(line))
		s.size = off
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > s.size && newest {
		if err := os.Truncate(s.path, s.size); err != nil {
			return fmt.Errorf("cache: journal %s: drop torn last line: %w", s.path, err)
		}
	}
	return nil
}

// Append implements Journal: the record is on disk (fsynced) when Append returns.
func (j *FileJournal) Append(ctx context.Context, name string, rec []byte) error {
	if err := checkName("journal", name); err != nil {
		return err
	}
	if err := checkSize("journal record", rec); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l, err := j.log(name, true)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.append(encodeLine(nil, "", rec), j.segMax); err != nil {
		return fmt.Errorf("cache: journal %s: %w", name, err)
	}
	return l.compact(j.max)
}

// log returns the journal name, creating it when create is set; nil when it does not exist.
func (j *FileJournal) log(name string, create bool) (*fileLog, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, errors.New("cache: journal closed")
	}
	l := j.logs[name]
	if l == nil && create {
		dir := filepath.Join(j.dir, name)
		if err := mkdirDurable(dir); err != nil {
			return nil, fmt.Errorf("cache: journal %s: %w", name, err)
		}
		l = &fileLog{dir: dir}
		j.logs[name] = l
	}
	return l, nil
}

func (l *fileLog) append(line []byte, segMax int) error {
	if len(l.segs) == 0 || len(l.segs[len(l.segs)-1].lines) >= segMax {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	s := l.segs[len(l.segs)-1]
	if l.active == nil {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		l.active = f
	}
	if _, err := l.active.Write(line); err != nil {
		l.undo(s)
		return err
	}
	if err := l.active.Sync(); err != nil {
		l.undo(s)
		return err
	}
	s.lines = append(s.lines, span{off: s.size, n: len(line) - 1})
	s.size += int64(len(line))
	l.total++
	return nil
}

// undo cuts a failed append back off the segment, so the next line does not follow a torn one. If even that fails
// the torn line stays, and the next open drops it or skips it.
func (l *fileLog) undo(s *segment) {
	_ = l.active.Truncate(s.size)
	_ = l.active.Close()
	l.active = nil
}

// rotate starts a new segment after the newest.
func (l *fileLog) rotate() error {
	var seq uint64 = 1
	if n := len(l.segs); n > 0 {
		seq = l.segs[n-1].seq + 1
	}
	path := filepath.Join(l.dir, fmt.Sprintf("%020d%s", seq, segmentExt))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if err := syncDir(l.dir); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	if l.active != nil {
		_ = l.active.Close()
	}
	l.active = f
	l.segs = append(l.segs, &segment{seq: seq, path: path})
	return nil
}

// compact removes the oldest segments while the newer ones hold at least maxRecords.
func (l *fileLog) compact(maxRecords int) error {
	removed := false
	for len(l.segs) > 1 && l.total-len(l.segs[0].lines) >= maxRecords {
		if err := os.Remove(l.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cache: journal: compact: %w", err)
		}
		l.total -= len(l.segs[0].lines)
		l.segs = l.segs[1:]
		removed = true
	}
	if removed {
		return syncDir(l.dir)
	}
	return nil
}

// Range implements Journal. It reads the files as they were when it started: appends after that are not seen,
// and compaction does not pull records from under it.
func (j *FileJournal) Range(ctx context.Context, name string, fn func(rec []byte) bool) error {
	if err := checkName("journal", name); err != nil {
		return err
	}
	l, err := j.log(name, false)
	if err != nil || l == nil {
		return err
	}
	type view struct {
		f     *os.File
		lines []span
	}
	// Snapshot under the lock: open files stay readable after compaction removes them, and a segment's lines are
	// only ever appended, so the slice headers taken here keep describing the same records.
	l.mu.Lock()
	views := make([]view, 0, len(l.segs))
	var openErr error
	for i := len(l.segs) - 1; i >= 0; i-- {
		f, err := os.Open(l.segs[i].path)
		if err != nil {
			openErr = err
			break
		}
		views = append(views, view{f: f, lines: l.segs[i].lines})
	}
	l.mu.Unlock()
	defer func() {
		for _, v := range views {
			_ = v.f.Close()
		}
	}()
	if openErr != nil {
		return fmt.Errorf("cache: journal %s: %w", name, openErr)
	}

	left := j.max
	var buf []byte
	for _, v := range views {
		for i := len(v.lines) - 1; i >= 0 && left > 0; i-- {
			if left%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			left--
			sp := v.lines[i]
			buf = slices.Grow(buf[:0], sp.n)[:sp.n]
			if _, err := v.f.ReadAt(buf, sp.off); err != nil {
				return fmt.Errorf("cache: journal %s: %w", name, err)
			}
			_, rec, err := decodeLine(buf)
			if err != nil {
				return fmt.Errorf("cache: journal %s: record changed on disk: %w", name, err)
			}
			if !fn(rec) {
				return nil
			}
		}
	}
	return nil
}

// Close closes the files; the journal is unusable afterwards.
func (j *FileJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	var errs []error
	for _, l := range j.logs {
		l.mu.Lock()
		if l.active != nil {
			errs = append(errs, l.active.Close())
			l.active = nil
		}
		l.mu.Unlock()
	}
	return errors.Join(errs...)
}
