package cache

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"
)

// DefaultPackMaxSize is the default of WithPackMaxSize.
const DefaultPackMaxSize = 64 << 20

// Pack keeps small objects (up to 64 KiB: the signature layers, referrer manifests and bundles a decision reads) in
// append-only files of a local directory, in front of a Content that keeps everything larger: storing one is a
// single write to an open file, where a file of its own cost a file creation (on ext4 here, 70 us of kernel CPU,
// a fifth of a new image's decision). It is a cache, per process: the directory is locked by the Pack that opened it.
//
// The objects live in two generations of files (pack-<seq>): new objects go into the newer one; when it holds half
// the budget, the older one is removed and a new one started, and an object read from the older one is written
// again into the newer one, so what is used survives. Nothing is fsynced: every record is checked against its
// digest when the directory is opened (a torn tail is cut off, a bad record skipped) and whenever it is read.
type Pack struct {
	dir  string
	next *Content
	max  int64
	lock *os.File // flocked while open

	mu     sync.RWMutex
	index  map[digest.Digest]packLoc
	cur    *packFile
	prev   *packFile // nil until the first rotation
	size   int64     // bytes of the indexed objects
	closed bool
}

// packFile is one generation.
type packFile struct {
	f    *os.File
	seq  uint64
	size int64 // where the next record goes
}

// packLoc is where an object's bytes are.
type packLoc struct {
	file *packFile
	off  int64
	n    int64
}

// PackOption configures a Pack.
type PackOption func(*Pack)

// WithPackMaxSize bounds the bytes the pack files hold (both generations together). Default: DefaultPackMaxSize.
func WithPackMaxSize(n int64) PackOption {
	return func(p *Pack) { p.max = n }
}

// ErrPackInUse is returned (wrapped) by OpenPack when another process has the directory open.
var ErrPackInUse = errors.New("cache: pack in use by another process")

// OpenPack opens (creating it if needed) the pack directory dir in front of next, and learns the objects its files
// hold. It fails when another process has the directory open.
func OpenPack(dir string, next *Content, opts ...PackOption) (*Pack, error) {
	if next == nil {
		return nil, errors.New("cache: pack: nil content store")
	}
	p := &Pack{dir: dir, next: next, max: DefaultPackMaxSize, index: map[digest.Digest]packLoc{}}
	for _, o := range opts {
		o(p)
	}
	if p.max < 2*int64(smallObject+packHeader+len(digest.SHA512.FromString(""))) {
		return nil, fmt.Errorf("cache: pack: max size %d is too small", p.max)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cache: pack: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cache: pack: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrPackInUse, dir)
		}
		return nil, fmt.Errorf("cache: pack %s: %w", dir, err)
	}
	p.lock = lock
	if err := p.load(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// load opens the newest two generations (removing older ones) and indexes their objects, the newer last.
func (p *Pack) load() error {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("cache: pack: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		if s, ok := strings.CutPrefix(e.Name(), "pack-"); ok {
			if n, err := strconv.ParseUint(s, 10, 64); err == nil {
				seqs = append(seqs, n)
			}
		}
	}
	slices.Sort(seqs)
	for len(seqs) > 2 {
		if err := os.Remove(p.path(seqs[0])); err != nil {
			return fmt.Errorf("cache: pack: %w", err)
		}
		seqs = seqs[1:]
	}
	if len(seqs) == 0 {
		seqs = []uint64{1}
	}
	for _, seq := range seqs {
		pf, err := p.openFile(seq)
		if err != nil {
			return err
		}
		p.prev, p.cur = p.cur, pf
		if err := p.scan(pf); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pack) path(seq uint64) string { return filepath.Join(p.dir, fmt.Sprintf("pack-%020d", seq)) }

func (p *Pack) openFile(seq uint64) (*packFile, error) {
	f, err := os.OpenFile(p.path(seq), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cache: pack: %w", err)
	}
	return &packFile{f: f, seq: seq}, nil
}

// A record is packMagic, the data's length (uint32, big-endian), the digest's length (uint16), the digest, the data.
const (
	packMagic  = "pcp1"
	packHeader = len(packMagic) + 4 + 2
)

// scan indexes pf's records whose bytes hash to their digest and cuts the file after the last whole record. A read
// error other than the file's end is returned: it cuts nothing.
func (p *Pack) scan(pf *packFile) error {
	r := bufio.NewReaderSize(pf.f, 256<<10)
	var off int64
	hdr := make([]byte, packHeader)
	readFull := func(b []byte) (whole bool, err error) {
		_, err = io.ReadFull(r, b)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil // torn: the file ends inside the record
		}
		if err != nil {
			return false, fmt.Errorf("cache: pack: read %s: %w", pf.f.Name(), err)
		}
		return true, nil
	}
	for {
		if whole, err := readFull(hdr); !whole {
			if err != nil {
				return err
			}
			break
		}
		n, dl := int64(binary.BigEndian.Uint32(hdr[4:])), int(binary.BigEndian.Uint16(hdr[8:]))
		if string(hdr[:4]) != packMagic || n > smallObject || dl > 200 {
			break // not a record: torn, or never written
		}
		rest := make([]byte, int64(dl)+n)
		if whole, err := readFull(rest); !whole {
			if err != nil {
				return err
			}
			break
		}
		dgst := digest.Digest(rest[:dl])
		if dgst.Validate() == nil && dgst.Algorithm().FromBytes(rest[dl:]) == dgst {
			p.indexLocked(dgst, packLoc{file: pf, off: off + int64(packHeader+dl), n: n})
		}
		off += int64(packHeader+dl) + n
	}
	pf.size = off
	if err := pf.f.Truncate(off); err != nil {
		return fmt.Errorf("cache: pack: %w", err)
	}
	return nil
}

func (p *Pack) indexLocked(dgst digest.Digest, loc packLoc) {
	if old, ok := p.index[dgst]; ok {
		p.size -= old.n
	}
	p.index[dgst] = loc
	p.size += loc.n
}

// Stat implements admission's ArtifactStore: the object's size, from the pack or the content store.
func (p *Pack) Stat(ctx context.Context, dgst digest.Digest) (int64, error) {
	p.mu.RLock()
	loc, ok := p.index[dgst]
	p.mu.RUnlock()
	if ok {
		return loc.n, nil
	}
	return p.next.Stat(ctx, dgst)
}

// Open reads the object from offset: a packed one is read whole and checked against its digest first.
func (p *Pack) Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	b, ok, err := p.read(dgst)
	if err != nil {
		return nil, err
	}
	if !ok {
		return p.next.Open(ctx, dgst, offset)
	}
	if offset < 0 || offset > int64(len(b)) {
		return nil, fmt.Errorf("%w: %d, size %d of %s", ErrInvalidOffset, offset, len(b), dgst)
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

// Get reads the object whole, checked against its digest; over max bytes it is an error wrapping ErrTooLarge.
func (p *Pack) Get(ctx context.Context, dgst digest.Digest, max int64) ([]byte, error) {
	b, ok, err := p.read(dgst)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return p.next.Get(ctx, dgst, max)
	case int64(len(b)) > max:
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, dgst, len(b), max)
	}
	return b, nil
}

// read returns a packed object's bytes (ok false: not packed). Bytes that do not hash to dgst are dropped from the
// index and reported as ErrDigestMismatch. An object of the older generation is written again into the newer.
func (p *Pack) read(dgst digest.Digest) ([]byte, bool, error) {
	p.mu.RLock()
	loc, ok := p.index[dgst]
	if !ok || p.closed {
		p.mu.RUnlock()
		return nil, false, nil // a closed pack answers from the content store
	}
	b := make([]byte, loc.n)
	_, err := loc.file.f.ReadAt(b, loc.off)
	old := loc.file == p.prev
	p.mu.RUnlock()
	if err == nil && dgst.Algorithm().FromBytes(b) != dgst {
		err = fmt.Errorf("%w: packed %s does not hash to it", ErrDigestMismatch, dgst)
	}
	if err != nil {
		p.mu.Lock()
		if cur, ok := p.index[dgst]; ok && cur == loc {
			delete(p.index, dgst)
			p.size -= loc.n
		}
		p.mu.Unlock()
		return nil, false, fmt.Errorf("cache: pack: read %s: %w", dgst, err)
	}
	if old {
		_ = p.append(dgst, b) // keep what is used; a failure only costs a later fetch
	}
	return b, true, nil
}

// Put stores r as dgst: an object of up to 64 KiB in the pack (checked against dgst first), a larger one in the
// content store. As Content.Put, it returns 0, nil without reading r when the object is packed already.
func (p *Pack) Put(ctx context.Context, dgst digest.Digest, r io.Reader) (int64, error) {
	if err := dgst.Validate(); err != nil {
		return 0, fmt.Errorf("cache: put: %w", err)
	}
	p.mu.RLock()
	_, ok := p.index[dgst]
	p.mu.RUnlock()
	if ok {
		return 0, nil
	}
	head, rest, small, err := smallHead(ctx, r)
	n := int64(len(head))
	switch {
	case err != nil:
		return n, fmt.Errorf("cache: put %s: %w", dgst, err)
	case !small:
		return p.next.Put(ctx, dgst, rest)
	}
	if err := checkPut(dgst, head); err != nil {
		return n, err
	}
	return n, p.append(dgst, head)
}

// append writes one record into the newer generation, starting a new one first when it is full.
func (p *Pack) append(dgst digest.Digest, b []byte) error {
	rec := make([]byte, 0, packHeader+len(dgst)+len(b))
	rec = append(rec, packMagic...)
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(b)))
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(dgst)))
	rec = append(append(rec, dgst...), b...)

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("cache: pack %s: closed", p.dir)
	}
	if loc, ok := p.index[dgst]; ok && loc.file == p.cur {
		return nil
	}
	if p.cur.size+int64(len(rec)) > p.max/2 {
		if err := p.rotateLocked(); err != nil {
			return err
		}
	}
	cur := p.cur
	if _, err := cur.f.WriteAt(rec, cur.size); err != nil {
		_ = cur.f.Truncate(cur.size) // a short write would stop the next open's scan here
		return fmt.Errorf("cache: pack: write %s: %w", dgst, err)
	}
	p.indexLocked(dgst, packLoc{file: cur, off: cur.size + int64(packHeader+len(dgst)), n: int64(len(b))})
	cur.size += int64(len(rec))
	return nil
}

// rotateLocked removes the older generation and its objects and starts a new one.
func (p *Pack) rotateLocked() error {
	next, err := p.openFile(p.cur.seq + 1)
	if err != nil {
		return err
	}
	if old := p.prev; old != nil {
		for d, loc := range p.index {
			if loc.file == old {
				delete(p.index, d)
				p.size -= loc.n
			}
		}
		old.f.Close()
		_ = os.Remove(p.path(old.seq)) // if this fails, the next open removes it
	}
	p.prev, p.cur = p.cur, next
	return nil
}

// Size is the bytes of the packed objects and of the content store's.
func (p *Pack) Size() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.size + p.next.Size()
}

// Close closes the pack's files and unlocks its directory (not the content store).
func (p *Pack) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, pf := range []*packFile{p.prev, p.cur} {
		if pf != nil {
			errs = append(errs, pf.f.Close())
		}
	}
	if p.lock != nil {
		errs = append(errs, p.lock.Close()) // closing the file releases the flock
	}
	return errors.Join(errs...)
}
